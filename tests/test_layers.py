"""The layering: hwmodel never pulls in torch or pytest, and the plugin imports torch only to capture."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(completed.stdout.split())


def test_hwmodel_imports_neither_torch_nor_pytest() -> None:
    loaded = modules_after("import hwmodel, hwmodel.step.simulate, hwmodel.spec.presets")
    forbidden = {
        name for name in loaded if name.split(".")[0] in {"torch", "pytest", "_pytest", "pytest_dojo", "suites"}
    }
    assert forbidden == set()


def test_plugin_import_does_not_load_torch() -> None:
    """`pytest --help` and runs without the dojo fixture must pay for neither torch nor the model."""
    loaded = modules_after("import pytest_dojo.plugin")
    assert {"torch", "numpy", "hwmodel", "matplotlib"}.isdisjoint(loaded)


@pytest.mark.parametrize("path", sorted((ROOT / "hwmodel").rglob("*.py")), ids=lambda p: p.name)
def test_no_hwmodel_module_imports_torch_or_pytest(path: Path) -> None:
    """Also catches imports that the fresh-interpreter test cannot see (lazy, inside functions)."""
    pattern = re.compile(r"^\s*(import|from)\s+(torch|pytest|_pytest|pytest_dojo|suites)\b", re.MULTILINE)
    assert pattern.findall(path.read_text(encoding="utf-8")) == []


PACKAGES = ("hwmodel", "pytest_dojo", "dojo_networks", "dojo_validation")
PROJECT_MODULES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
    for package in PACKAGES
    for path in sorted((ROOT / package).rglob("*.py"))
}
HWMODEL_MODULES = {name: path for name, path in PROJECT_MODULES.items() if name.split(".")[0] == "hwmodel"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _imported_modules(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports, at module level or inside functions."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                imported.add(submodule if submodule in PROJECT_MODULES else node.module)
    return {module for module in imported if module in PROJECT_MODULES and module != name}


def test_no_import_cycle_among_project_modules() -> None:
    """No cycle among the modules of every package, counting imports inside functions too."""
    graph = {name: _imported_modules(name, path) for name, path in PROJECT_MODULES.items()}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = " -> ".join((*trail[trail.index(name) :], name))
            pytest.fail(f"import cycle: {cycle}")
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, (*trail, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_no_hwmodel_module_imports_its_own_package_init() -> None:
    """Inside hwmodel, names come from the module that defines them, never from a package ``__init__``."""
    packages = {name for name, path in HWMODEL_MODULES.items() if path.name == "__init__.py"}
    offenders = {
        name: sorted(_imported_modules(name, path) & packages)
        for name, path in HWMODEL_MODULES.items()
        if path.name != "__init__.py" and _imported_modules(name, path) & packages
    }
    assert offenders == {}


@pytest.mark.parametrize("name", sorted(PROJECT_MODULES))
def test_modules_and_functions_stay_small(name: str) -> None:
    text = PROJECT_MODULES[name].read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long_functions = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long_functions == []


def test_no_module_edits_sys_path() -> None:
    """Everything imports through the installed packages; nothing reaches into the tree by path."""
    directories = (*PACKAGES, "tests", "suites", "benchmarks")
    pattern = re.compile(r"sys\.path\.(insert|append|extend)|sys\.path\s*(\+=|=)")
    offenders = [
        str(path.relative_to(ROOT))
        for directory in directories
        for path in sorted((ROOT / directory).rglob("*.py"))
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
