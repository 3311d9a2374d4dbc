"""The results file: every simulated report of a run, as versioned JSON (also the baseline format).

Schema ``pytest-dojo-results`` version 1::

    {"schema": "pytest-dojo-results", "schema_version": 1,
     "commit": "<git sha or null>", "chip": "d1", "mesh": "5x5",
     "machine": {"python": ..., "platform": ..., "cpu_count": ..., "torch": ..., ...},
     "results": [{"nodeid": ..., "network": ..., "ordinal": 0, "verdict": "ok", "messages": [...],
                  "capture_s": 0.01, "report": {<hwmodel.Report.to_dict()>}}, ...],
     "wallclock": [{"nodeid": ..., "network": ..., "batch": 8, "threads": 1,
                    "round_s": [...], "median_samples_per_s": ...}, ...]}

Results are sorted by (node id, network, ordinal), so a run under pytest-xdist writes the same file
as a serial run. ``capture_s`` and the wall-clock entries are measured, not simulated: they vary
from run to run, and a baseline (``--dojo-save-baseline``) leaves ``capture_s`` out. Files are
written atomically (a temporary file, then ``os.replace``); loading parses JSON and runs nothing.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_dojo.errors import DojoError, read_text_file


def file_mode() -> int:
    """What ``open`` would give a new file under the process's umask (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = file_mode()
RESULTS_SCHEMA = "pytest-dojo-results"
RESULTS_SCHEMA_VERSION = 1


class ResultsFileError(DojoError):
    """A results or baseline file that is missing, unreadable, corrupt or of another schema."""


def machine_info() -> dict[str, Any]:
    """The host and library versions (torch's from its metadata: nothing is imported)."""

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": version("torch"),
        "numpy": version("numpy"),
        "pytest_dojo": version("pytest-dojo"),
    }


def git_commit(directory: str | Path) -> str | None:
    """``git rev-parse HEAD`` in ``directory``, or None outside a repository or without git."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = completed.stdout.strip()
    return sha if completed.returncode == 0 and sha else None


def sort_key(entry: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(entry["nodeid"]), str(entry["network"]), int(entry.get("ordinal", 0)))


def build_document(
    *,
    chip: str,
    mesh: str,
    commit: str | None,
    machine: Mapping[str, Any],
    results: Iterable[Mapping[str, Any]],
    wallclock: Iterable[Mapping[str, Any]] = (),
    include_measured: bool = True,
) -> dict[str, Any]:
    """The JSON document of one run; ``include_measured=False`` drops capture times (baselines)."""
    entries = []
    for entry in sorted(results, key=sort_key):
        item = dict(entry)
        if not include_measured:
            item.pop("capture_s", None)
        entries.append(item)
    return {
        "schema": RESULTS_SCHEMA,
        "schema_version": RESULTS_SCHEMA_VERSION,
        "commit": commit,
        "chip": chip,
        "mesh": mesh,
        "machine": dict(machine),
        "results": entries,
        "wallclock": sorted((dict(entry) for entry in wallclock), key=sort_key),
    }


def write_json_atomic(path: str | Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` through a temporary file, so a failure leaves no partial file."""
    target = Path(path)
    try:
        text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ResultsFileError(f"{target}: cannot encode results as JSON: {error}") from None
    directory = target.parent if str(target.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise ResultsFileError(f"{target}: cannot write: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ResultsFileError(f"{target}: cannot write: {error.strerror or error}") from None


@dataclass(frozen=True, kw_only=True)
class ResultsFile:
    """A loaded results (or baseline) file, indexed by test for comparisons."""

    path: str
    document: Mapping[str, Any]

    @property
    def results(self) -> list[Mapping[str, Any]]:
        return list(self.document["results"])

    @functools.cached_property
    def by_key(self) -> dict[tuple[str, str, int, str, str], Mapping[str, Any]]:
        """Report dicts by (node id, network, ordinal, chip, mesh); built once."""
        return self.index()

    def index(self) -> dict[tuple[str, str, int, str, str], Mapping[str, Any]]:
        """Report dicts by (node id, network, ordinal, chip, mesh) (a new dict the caller may change)."""
        return {key_of(entry): entry["report"] for entry in self.results}


def key_of(entry: Mapping[str, Any]) -> tuple[str, str, int, str, str]:
    """Identity of a result across runs: the test, its network and call order, chip and mesh."""
    report = entry["report"]
    return (
        str(entry["nodeid"]),
        str(entry["network"]),
        int(entry.get("ordinal", 0)),
        str(report["chip"]),
        str(report["mesh"]),
    )


def load_results(path: str | Path) -> ResultsFile:
    """Read and check a results file; every problem is one :class:`ResultsFileError` line."""
    where = str(path)
    text = read_text_file(path, ResultsFileError)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsFileError(f"{where}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict) or document.get("schema") != RESULTS_SCHEMA:
        raise ResultsFileError(f'{where}: not a pytest-dojo results file (no "schema": "{RESULTS_SCHEMA}")')
    version = document.get("schema_version")
    if version != RESULTS_SCHEMA_VERSION:
        raise ResultsFileError(
            f"{where}: results schema version {version!r} is not supported (expected {RESULTS_SCHEMA_VERSION})"
        )
    results = document.get("results")
    if not isinstance(results, list):
        raise ResultsFileError(f'{where}: "results" must be a list')
    _check_reports(where, results)
    return ResultsFile(path=where, document=document)


def _check_reports(where: str, results: list[Any]) -> None:
    from hwmodel import HwModelError, Report

    for number, entry in enumerate(results):
        if not isinstance(entry, dict) or not {"nodeid", "network", "report"} <= set(entry):
            raise ResultsFileError(f'{where}: result {number} needs "nodeid", "network" and "report"')
        if not isinstance(entry["report"], dict):
            raise ResultsFileError(f'{where}: result {number} ({entry["nodeid"]}): "report" must be an object')
        try:
            Report.from_dict(entry["report"])
        except HwModelError as error:
            raise ResultsFileError(f"{where}: result {number} ({entry['nodeid']}): {error}") from None
