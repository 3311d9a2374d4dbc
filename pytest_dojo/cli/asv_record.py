"""``pytest-dojo asv-record [COMMIT] [ASV_RUN_OPTIONS...]``: record one commit's ASV benchmarks, offline.

COMMIT defaults to HEAD. The project under test is the checkout at ``ASV_DOJO_CHECKOUT`` (default:
the repository root, which must then be at COMMIT); the benchmarks import it from
``ASV_PYTHONPATH``. Runs ``asv run -E existing:<python> --set-commit-hash <sha>`` (without
``--set-commit-hash`` asv saves nothing) under a fixed machine name, through a fixed interpreter
path, so that records from any clone or CI runner land in one history: asv keys results by machine
and environment name, and the environment name of an existing interpreter is its path. Nothing is
built or installed.

Environment:
  ASV_DOJO_MACHINE     machine name in the history (default: dojo-ci)
  ASV_DOJO_PYTHON      interpreter with the project's dependencies (default: .venv/bin/python, else python3)
  ASV_DOJO_ASV_PYTHON  interpreter that runs asv itself (default: ASV_DOJO_PYTHON)
  ASV_DOJO_CHECKOUT    checkout of COMMIT to benchmark (default: the repository root)
  ASV_DOJO_RESULTS     results directory (default: results_dir of asv.conf.json, .asv/results)
  ASV_DOJO_WRAPPER_DIR where the fixed-path interpreter wrapper lives (default: /tmp/pytest-dojo-asv)
Options after COMMIT go to ``asv run`` (e.g. --quick, --bench REGEX, --show-stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pytest_dojo.cli.asv_config import config_copy
from pytest_dojo.cli.common import EXIT_USAGE, add_command, error_line, project_root

NAME = "asv_record"
DEFAULT_MACHINE = "dojo-ci"
DEFAULT_WRAPPER_DIR = "/tmp/pytest-dojo-asv"


class RecordError(Exception):
    """A setting that stops the record: one line, exit status 2."""


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "asv-record",
        run,
        summary="record one commit's ASV benchmarks in the existing environment, under a fixed machine name",
        doc=__doc__,
    )
    parser.add_argument("commit", nargs="?", default="HEAD", help="commit to record (default: HEAD)")
    parser.add_argument("asv_arguments", nargs=argparse.REMAINDER, metavar="ASV_RUN_OPTIONS", help="passed to asv run")


def git(directory: Path, *arguments: str) -> str:
    """``git -C directory ARGUMENTS``'s output; a failure is a :class:`RecordError`."""
    completed = subprocess.run(["git", "-C", str(directory), *arguments], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RecordError(completed.stderr.strip() or f"git {' '.join(arguments)} failed")
    return completed.stdout.strip()


def interpreters(root: Path) -> tuple[str, str]:
    """(the project's interpreter, the one that runs asv), from the environment or the defaults."""
    python = os.environ.get("ASV_DOJO_PYTHON") or ""
    if not python:
        venv = root / ".venv" / "bin" / "python"
        python = str(venv) if os.access(venv, os.X_OK) else (shutil.which("python3") or sys.executable)
    asv_python = os.environ.get("ASV_DOJO_ASV_PYTHON") or python
    check = subprocess.run([asv_python, "-c", "import asv"], capture_output=True, check=False)
    if check.returncode != 0:
        raise RecordError(f"asv is not installed for {asv_python} (pip install -e '.[history]')")
    return python, asv_python


def fixed_path_wrapper(python: str) -> str:
    """A fixed interpreter path that runs ``python``: asv names an existing environment after the
    interpreter's path, and a different name would start a separate history."""
    wrapper_dir = Path(os.environ.get("ASV_DOJO_WRAPPER_DIR") or DEFAULT_WRAPPER_DIR)
    wrapper_dir.mkdir(parents=True, exist_ok=True)
    real = subprocess.run(
        [python, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    wrapper = wrapper_dir / "python"
    temporary = wrapper_dir / "python.tmp"
    temporary.write_text(f'#!/bin/sh\nexec {shlex.quote(real)} "$@"\n', encoding="utf-8")
    temporary.chmod(0o755)
    temporary.replace(wrapper)
    return str(wrapper)


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (``unknown`` where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or "unknown"
    return "unknown"


def register_machine(asv_python: str, machine: str) -> None:
    """The machine description: the graphs are keyed by every field of it, so only fields that change
    what the wall-clock figures mean (architecture, CPU model) are recorded; the rest are fixed."""
    command = [asv_python, "-m", "asv", "machine", "--yes", "--machine", machine, "--os", "Linux"]
    command += ["--arch", platform.machine(), "--cpu", cpu_model(), "--num_cpu", "0", "--ram", "0"]
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)


def checked_commit(root: Path, checkout: Path, commit_ref: str) -> str:
    """The full hash of ``commit_ref``, after checking that ``checkout`` is at it."""
    commit = git(root, "rev-parse", "--verify", f"{commit_ref}^{{commit}}")
    checkout_commit = git(checkout, "rev-parse", "HEAD")
    if checkout_commit != commit:
        raise RecordError(
            f"{checkout} is at {checkout_commit[:8]}, not at {commit[:8]}; set ASV_DOJO_CHECKOUT to a checkout of it"
        )
    paths = ["hwmodel", "pytest_dojo", "dojo_networks", "suites", ":(exclude)suites/benchmarks"]
    if subprocess.run(["git", "-C", str(checkout), "diff", "--quiet", "HEAD", "--", *paths], check=False).returncode:
        error_line(
            NAME,
            f"warning: {checkout} has uncommitted changes in hwmodel/, pytest_dojo/, dojo_networks/ or suites/; "
            f"they are recorded as {commit[:8]}",
        )
    return commit


def run(arguments: argparse.Namespace) -> int:
    root = project_root()
    machine = os.environ.get("ASV_DOJO_MACHINE") or DEFAULT_MACHINE
    try:
        checkout = Path(os.environ.get("ASV_DOJO_CHECKOUT") or root).resolve()
        commit = checked_commit(root, checkout, arguments.commit)
        python, asv_python = interpreters(root)
    except RecordError as error:
        error_line(NAME, error)
        return EXIT_USAGE
    wrapper = fixed_path_wrapper(python)
    register_machine(asv_python, machine)
    subject = git(root, "log", "-1", "--format=%s", commit)[:60]
    error_line(NAME, f"{commit[:8]} ({subject}) from {checkout} on machine {machine}")
    command = [asv_python, "-m", "asv", "run", "-E", f"existing:{wrapper}", "--set-commit-hash", commit]
    command += ["--machine", machine, *arguments.asv_arguments]
    environment = {**os.environ, "ASV_PYTHONPATH": str(checkout)}
    results = os.environ.get("ASV_DOJO_RESULTS")
    if not results:
        return subprocess.run(command, cwd=root, env=environment, check=False).returncode
    overrides = {
        "results_dir": str(Path(results).resolve()),
        "html_dir": str(Path(results).resolve().parent / "html"),
    }
    with config_copy(root / "asv.conf.json", overrides) as config:
        command[4:4] = ["--config", str(config)]
        return subprocess.run(command, cwd=root, env=environment, check=False).returncode
