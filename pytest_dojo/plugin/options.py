"""Command-line options and ini keys of the plugin, and their parsers.

Every option has a ``--dojo-`` prefix and, where a project default makes sense, an ini key of the
same name (``dojo_mesh``...); the command line wins over the ini file, which wins over the default.
Values are parsed once: in ``pytest_configure`` when any dojo option or ini key is set, so a bad
one is a single ``ERROR:`` line (exit 4) before any test runs; otherwise (the defaults, which are
valid) when a test first uses the plugin. Files named by options are read (thresholds, baseline) or
checked for writing (JSON, baseline, report directory) there too. This module imports
:mod:`hwmodel` only inside :func:`parse_options`, so registering the options costs nothing.

To add an option: one entry in :data:`OPTIONS` (and a ``parser.addini`` in :func:`register` with
its default in :data:`INI_DEFAULTS`), one field in :class:`DojoOptions`, one parse step in
:func:`parse_options`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_dojo.plugin.gate import DEFAULT_MAX_REGRESSION_PCT
from pytest_dojo.plugin.host_rates import DEFAULT_MODE as DEFAULT_HOST_CALIBRATION

if TYPE_CHECKING:
    from hwmodel import Mesh, Precision
    from pytest_dojo.plugin.results_json import ResultsFile
    from pytest_dojo.plugin.thresholds import ThresholdsFile

DEFAULT_MESH = "5x5"
DEFAULT_CHIP = "d1"
PLOTS_HINT = 'pip install "pytest-dojo[plots]"'


OPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "--dojo-mesh",
        "ROWSxCOLS",
        "Mesh of chips to simulate, e.g. 5x5 (one Dojo training tile) or 2x8 (two 8-GPU nodes), or a named "
        f"mesh such as tile or exapod (a wrong name lists them all). Default: {DEFAULT_MESH!r}",
    ),
    (
        "--dojo-chip",
        "NAME|FILE.toml",
        "Chip preset, such as d1, a100 (the SXM4 80GB part), h100, t4, l4 or host (a wrong name lists them all), "
        "or a preset data file "
        "of the format of hwmodel/spec/presets/*.toml (relative to the current directory, or to the "
        f"rootdir in the ini key). Default: {DEFAULT_CHIP!r}",
    ),
    (
        "--dojo-precision",
        "NAME",
        "Training precision, as PyTorch runs it: bf16 (BF16 compute, FP32 master weights and optimizer "
        "state), fp32 (IEEE FP32 throughout) or tf32 (FP32, with matmuls and convolutions in TF32 on the "
        "tensor cores). Default: the chip preset's (bf16; fp32 for host and GPUs before Ampere)",
    ),
    (
        "--dojo-execution",
        "eager|compiled",
        "How the step's ops run: eager (one kernel per op, as PyTorch eager launches them) or compiled "
        "(pointwise chains and reductions fused as torch.compile's Inductor fuses them). Default: the chip "
        "preset's (compiled on d1, a compiler-scheduled chip; eager on GPUs and host)",
    ),
    (
        "--dojo-thresholds",
        "PATH",
        "TOML file of per-test floors/ceilings keyed by test node id and mesh; an empty value turns off "
        "the dojo_thresholds ini key's file. Default: none",
    ),
    (
        "--dojo-baseline",
        "PATH",
        "Results JSON to compare each test's simulated samples/s with. Default: none",
    ),
    (
        "--dojo-save-baseline",
        "PATH",
        "Write every simulated report to PATH as a baseline (JSON). Default: none",
    ),
    (
        "--dojo-max-regression",
        "PCT",
        "Largest drop of samples/s against the baseline that passes, in percent. "
        f"Default: {DEFAULT_MAX_REGRESSION_PCT!r}",
    ),
    (
        "--dojo-require-baseline",
        "FLAG",
        "Fail a test whose step has no entry in --dojo-baseline (otherwise it is only reported). Default: False",
    ),
    (
        "--dojo-json",
        "PATH",
        "Write the run's results (machine, commit, chip, mesh, every report) to PATH. Default: none",
    ),
    (
        "--dojo-report-dir",
        "DIR",
        "Write a Chrome/Perfetto trace and PNG plots per simulated step into DIR. Default: none",
    ),
    (
        "--dojo-host-calibration",
        "committed|measured",
        "Rates of the host preset: the committed calibration shipped with the package, or measured on "
        "this machine on first use (about 20 s) and kept in pytest's cache (--cache-clear re-measures; "
        f"without a cache, -p no:cacheprovider, the committed ones). Default: {DEFAULT_HOST_CALIBRATION!r}",
    ),
    (
        "--dojo-sensitivity",
        "FLAG",
        "After the summary, rank hardware changes (2x FLOP/s, 2x link bandwidth, 1/2 hop latency...) "
        "by the step-time speedup each buys, per simulated step. Default: False",
    ),
)
"""Every option: its flag, its metavar (``FLAG`` for an on/off switch) and its help."""


def register(parser: pytest.Parser) -> None:
    """Add the ``dojo`` option group and its ini keys."""
    group = parser.getgroup("dojo", "pytest-dojo: simulated training throughput on a modeled accelerator mesh")
    for flag, metavar, help_text in OPTIONS:
        dest = flag.removeprefix("--").replace("-", "_")
        if metavar == "FLAG":
            group.addoption(flag, dest=dest, action="store_true", default=False, help=help_text)
        else:
            group.addoption(flag, dest=dest, metavar=metavar, default=None, help=help_text)
    # Registered without defaults, so that ``getini`` tells a key set in the ini file (in use) from
    # an unset one; the defaults apply in :func:`_setting`.
    parser.addini("dojo_mesh", help=f"Default for --dojo-mesh. Default: {DEFAULT_MESH!r}", default=None)
    parser.addini("dojo_chip", help=f"Default for --dojo-chip. Default: {DEFAULT_CHIP!r}", default=None)
    parser.addini("dojo_precision", help="Default for --dojo-precision. Default: the chip preset's", default=None)
    parser.addini("dojo_thresholds", help="Default for --dojo-thresholds (relative to the rootdir).", default=None)
    parser.addini("dojo_execution", help="Default for --dojo-execution. Default: the chip preset's", default=None)
    parser.addini(
        "dojo_host_calibration",
        help=f"Default for --dojo-host-calibration. Default: {DEFAULT_HOST_CALIBRATION!r}",
        default=None,
    )
    parser.addini(
        "dojo_max_regression",
        help=f"Default for --dojo-max-regression. Default: {DEFAULT_MAX_REGRESSION_PCT!r}",
        default=None,
    )


@dataclass(frozen=True, kw_only=True)
class DojoOptions:
    """The plugin's settings after parsing and validation."""

    mesh: Mesh
    chip: str
    precision: Precision
    execution: str = "eager"
    """How the step's ops run: ``eager`` or ``compiled`` (the option's, else the chip preset's)."""
    thresholds: ThresholdsFile | None = None
    baseline: ResultsFile | None = None
    save_baseline_path: Path | None = None
    max_regression_pct: float = DEFAULT_MAX_REGRESSION_PCT
    require_baseline: bool = False
    json_path: Path | None = None
    report_dir: Path | None = None
    sensitivity: bool = False
    host_calibration: str = DEFAULT_HOST_CALIBRATION
    """Where the host preset's rates come from: ``measured`` (this machine, cached) or ``committed``."""


INI_DEFAULTS = {
    "dojo_mesh": DEFAULT_MESH,
    "dojo_chip": DEFAULT_CHIP,
    "dojo_precision": "",
    "dojo_execution": "",
    "dojo_thresholds": "",
    "dojo_max_regression": str(DEFAULT_MAX_REGRESSION_PCT),
    "dojo_host_calibration": DEFAULT_HOST_CALIBRATION,
}
"""Every ini key and its default (the keys are registered with None, meaning "not set")."""


def _setting(config: pytest.Config, name: str) -> str:
    """The command line's value, else the ini file's, else the default."""
    value = config.getoption(name)
    if value is None:
        value = config.getini(name)
    return INI_DEFAULTS[name] if value is None else str(value)


def parse_percent(text: str) -> float:
    """A percentage such as ``"2"``, ``"0.5"`` or ``"2%"``: finite and >= 0."""
    cleaned = text.strip().removesuffix("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        raise ValueError(f"must be a percentage such as 2 or 0.5%, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a finite percentage >= 0, got {text!r}")
    return value


def check_writable_file(option: str, text: str) -> Path:
    """The path of an output file whose directory exists (or can be made) and accepts files."""
    path = Path(text)
    if path.is_dir():
        raise pytest.UsageError(f"{option}: {text!r} is a directory; give a file path")
    check_writable_dir(option, path.parent if str(path.parent) else Path("."))
    return path


def check_writable_dir(option: str, directory: Path) -> Path:
    """``directory``, created if needed, after proving a file can be written in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".dojo-probe-", dir=directory)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise pytest.UsageError(f"{option}: cannot write to {str(directory)!r}: {error.strerror or error}") from None
    return directory


def options_in_use(config: pytest.Config) -> bool:
    """Whether any dojo option is on the command line or any dojo ini key in the ini file."""
    dests = (flag.removeprefix("--").replace("-", "_") for flag, _, _ in OPTIONS)
    if any(config.getoption(dest) not in (None, False) for dest in dests):
        return True
    return any(config.getini(key) is not None for key in INI_DEFAULTS)


def _system_settings(config: pytest.Config) -> tuple[Mesh, str, Precision, str]:
    from hwmodel import HwModelError, parse_mesh
    from hwmodel.spec.precision import parse_precision
    from hwmodel.spec.presets import preset_by_name_or_file

    try:
        mesh = parse_mesh(_setting(config, "dojo_mesh"))
    except HwModelError as error:
        raise pytest.UsageError(f"--dojo-mesh: {error}") from None
    try:
        directory = config.invocation_params.dir if config.getoption("dojo_chip") else config.rootpath
        preset = preset_by_name_or_file(str(_setting(config, "dojo_chip")), directory)
    except HwModelError as error:
        raise pytest.UsageError(f"--dojo-chip: {error}") from None
    precision_text = config.getoption("dojo_precision") or config.getini("dojo_precision")
    try:
        precision = parse_precision(str(precision_text)) if precision_text else preset.precision
    except HwModelError as error:
        raise pytest.UsageError(f"--dojo-precision: {error}") from None
    return mesh, preset.chip.name, precision, _execution(config, preset.chip.default_execution)


def _execution(config: pytest.Config, default: str) -> str:
    """``--dojo-execution`` (or its ini key), else the chip preset's default."""
    from hwmodel.spec.chip import EXECUTION_MODES

    text = str(config.getoption("dojo_execution") or config.getini("dojo_execution") or default).strip().lower()
    if text not in EXECUTION_MODES:
        raise pytest.UsageError(f"--dojo-execution: must be one of {', '.join(EXECUTION_MODES)}, got {text!r}")
    return text


def _thresholds(config: pytest.Config) -> ThresholdsFile | None:
    from pytest_dojo.plugin.thresholds import ThresholdError, load_thresholds

    option = config.getoption("dojo_thresholds")
    # An empty --dojo-thresholds= turns the ini key's file off; without the option the ini key applies.
    thresholds_text = option if option is not None else config.getini("dojo_thresholds")
    if not thresholds_text:
        return None
    thresholds_path = Path(thresholds_text)
    if option is None and not thresholds_path.is_absolute():
        thresholds_path = config.rootpath / thresholds_path
    try:
        return load_thresholds(thresholds_path)
    except ThresholdError as error:
        raise pytest.UsageError(f"--dojo-thresholds: {error}") from None


def _baseline(config: pytest.Config) -> ResultsFile | None:
    from pytest_dojo.plugin.results_json import ResultsFileError, load_results

    baseline = None
    if config.getoption("dojo_baseline"):
        try:
            baseline = load_results(config.getoption("dojo_baseline"))
        except ResultsFileError as error:
            raise pytest.UsageError(f"--dojo-baseline: {error}") from None
    if config.getoption("dojo_require_baseline") and baseline is None:
        raise pytest.UsageError("--dojo-require-baseline needs --dojo-baseline=PATH")
    return baseline


def _report_dir(config: pytest.Config) -> Path | None:
    """``--dojo-report-dir``, writable, and only with matplotlib installed (it draws the plots)."""
    text = config.getoption("dojo_report_dir")
    if not text:
        return None
    if importlib.util.find_spec("matplotlib") is None:
        raise pytest.UsageError(f"--dojo-report-dir needs matplotlib to draw its plots: {PLOTS_HINT}")
    return check_writable_dir("--dojo-report-dir", Path(text))


def parse_options(config: pytest.Config) -> DojoOptions:
    """Read and check every option; a bad value raises ``pytest.UsageError`` with one line."""
    mesh, chip, precision, execution = _system_settings(config)
    try:
        max_regression = parse_percent(_setting(config, "dojo_max_regression"))
    except ValueError as error:
        raise pytest.UsageError(f"--dojo-max-regression: {error}") from None

    def output(option: str, dest: str) -> Path | None:
        value = config.getoption(dest)
        return check_writable_file(option, value) if value else None

    return DojoOptions(
        mesh=mesh,
        chip=chip,
        precision=precision,
        execution=execution,
        thresholds=_thresholds(config),
        baseline=_baseline(config),
        save_baseline_path=output("--dojo-save-baseline", "dojo_save_baseline"),
        max_regression_pct=max_regression,
        require_baseline=bool(config.getoption("dojo_require_baseline")),
        json_path=output("--dojo-json", "dojo_json"),
        report_dir=_report_dir(config),
        sensitivity=bool(config.getoption("dojo_sensitivity")),
        host_calibration=_host_calibration(config),
    )


def _host_calibration(config: pytest.Config) -> str:
    from pytest_dojo.plugin.host_rates import MODES

    mode = _setting(config, "dojo_host_calibration").strip().lower()
    if mode not in MODES:
        raise pytest.UsageError(f"--dojo-host-calibration: must be one of {', '.join(MODES)}, got {mode!r}")
    return mode
