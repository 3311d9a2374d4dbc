"""The layering: hwmodel never pulls in torch or pytest, and the plugin imports torch only to capture."""

from __future__ import annotations

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
    """`pytest --help` and runs without the dojo fixture must not pay for importing torch."""
    loaded = modules_after("import pytest_dojo.plugin")
    assert "torch" not in loaded


@pytest.mark.parametrize("path", sorted((ROOT / "hwmodel").rglob("*.py")), ids=lambda p: p.name)
def test_no_hwmodel_module_imports_torch_or_pytest(path: Path) -> None:
    """Also catches imports that the fresh-interpreter test cannot see (lazy, inside functions)."""
    pattern = re.compile(r"^\s*(import|from)\s+(torch|pytest|_pytest|pytest_dojo|suites)\b", re.MULTILINE)
    assert pattern.findall(path.read_text(encoding="utf-8")) == []
