"""``pytest-dojo compare``: the gate on two results files, its exit codes and its one-line errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_dojo.cli import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, main


def report(samples_per_s: float, mesh: str = "5x5") -> dict[str, Any]:
    """A complete report dict (hwmodel.Report.to_dict shape) with the given throughput."""
    from hwmodel import Report
    from hwmodel.step.sections import MemoryBytes, PhaseFlops, PhaseTimes, TimeBreakdown

    batch = 50
    step = batch / samples_per_s
    return Report(
        workload="mlp",
        chip="d1",
        mesh=mesh,
        num_chips=25,
        plan="dp=25",
        precision="bfloat16",
        global_batch=batch,
        step_time_s=step,
        samples_per_s=samples_per_s,
        flops_total=1e9,
        flops_by_phase=PhaseFlops(forward_flops=1e9, backward_flops=0.0, optimizer_flops=0.0),
        achieved_flops_per_s=1e9 / step,
        peak_flops_per_s=9.05e15,
        mfu=1e9 / step / 9.05e15,
        bound="compute",
        breakdown_s=TimeBreakdown(compute_s=step),
        phase_time_s=PhaseTimes(forward_s=step, backward_s=0.0, optimizer_s=0.0),
        sram_peak_bytes_per_chip=1.0,
        memory_bytes_per_chip=MemoryBytes(
            weights_bytes=0.0,
            gradients_bytes=0.0,
            optimizer_state_bytes=0.0,
            buffers_bytes=0.0,
            activations_peak_bytes=0.0,
        ),
        spilled_bytes_per_chip=0.0,
        communication=None,
        unmodeled_ops={},
        top_modules=[("encoder", step)],
        top_ops=[("aten.mm.default", step)],
    ).to_dict()


def results(*rates: float, wallclock: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    from pytest_dojo.plugin.results_json import build_document

    entries = [
        {"nodeid": f"test_a.py::test_{index}", "network": "mlp", "ordinal": 0, "report": report(rate)}
        for index, rate in enumerate(rates)
    ]
    return build_document(chip="d1", mesh="5x5", commit=None, machine={}, results=entries, wallclock=wallclock or [])


def write(path: Path, document: dict[str, Any]) -> str:
    path.write_text(json.dumps(document))
    return str(path)


def test_unchanged_results_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.json", results(1000.0, 2000.0))
    assert main(["compare", old, old]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ok    test_a.py::test_0 [mlp]: samples/s +0.00%" in out
    assert out.rstrip().endswith("pytest-dojo compare: no regression (2 steps, tolerance 0.1%)")


def test_regression_exits_one_with_old_new_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.json", results(1000.0, 2000.0))
    new = write(tmp_path / "new.json", results(1000.0, 1800.0))  # test_1: -10 %
    assert main(["compare", old, new, "--max-regression=5"]) == EXIT_REGRESSION
    out = capsys.readouterr().out
    assert "FAIL  test_a.py::test_1 [mlp]: samples/s regressed 10.00% against the baseline (2,000 -> 1,800" in out
    assert "allowed 5%" in out
    assert main(["compare", old, new, "--max-regression=10.5%"]) == EXIT_OK


def test_gain_passes_and_missing_steps_fail_only_when_required(tmp_path: Path) -> None:
    old = write(tmp_path / "old.json", results(1000.0, 2000.0))
    fewer = write(tmp_path / "new.json", results(3000.0))
    assert main(["compare", old, fewer]) == EXIT_OK
    assert main(["compare", old, fewer, "--require-all"]) == EXIT_REGRESSION


def test_wallclock_gate_uses_the_noise_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [0.010, 0.0101, 0.0099, 0.0102, 0.0098, 0.0100, 0.0101]
    slow = [value * 1.5 for value in base]
    entry = {"nodeid": "test_a.py::test_0", "network": "mlp", "ordinal": 0, "batch": 50, "threads": 1}
    old = write(tmp_path / "old.json", results(1000.0, wallclock=[{**entry, "round_s": base}]))
    new = write(tmp_path / "new.json", results(1000.0, wallclock=[{**entry, "round_s": slow}]))
    assert main(["compare", old, new]) == EXIT_OK  # wall-clock gate off by default
    assert main(["compare", old, new, "--wallclock-max-regression=10"]) == EXIT_REGRESSION
    assert "wall-clock: median 10 -> 15 ms (+50.0%)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "pytest-dojo: error: {old}: file not found"),
        ("[1, 2", "pytest-dojo: error: {old}: not valid JSON (*"),
        (
            '{"schema": "pytest-dojo-results", "schema_version": 2, "results": []}',
            "pytest-dojo: error: {old}: results schema version 2 is not supported (expected 1)",
        ),
    ],
)
def test_bad_file_is_one_error_line_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    old = tmp_path / "old.json"
    if content is not None:
        old.write_text(content)
    new = write(tmp_path / "new.json", results(1000.0))
    assert main(["compare", str(old), new]) == EXIT_USAGE
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert __import__("fnmatch").fnmatch(error, expected.format(old=old))


def test_malformed_tolerance_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.json", results(1000.0))
    with pytest.raises(SystemExit) as raised:
        main(["compare", old, old, "--max-regression=lots"])
    assert raised.value.code == EXIT_USAGE
    assert "argument --max-regression: must be a percentage such as 2 or 0.5%, got 'lots'" in capsys.readouterr().err


def test_results_of_another_mesh_do_not_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = results(1000.0)
    other = copy.deepcopy(document)
    other["results"][0]["report"] = report(500.0, mesh="1x5")
    assert main(["compare", write(tmp_path / "a.json", document), write(tmp_path / "b.json", other)]) == EXIT_OK
    assert "new   test_a.py::test_0 [mlp]: no entry in" in capsys.readouterr().out


def test_module_entry_point_exits_with_the_gate_status(tmp_path: Path) -> None:
    old = write(tmp_path / "old.json", results(1000.0))
    new = write(tmp_path / "new.json", results(500.0))
    completed = subprocess.run(
        [sys.executable, "-m", "pytest_dojo.cli", "compare", old, new], capture_output=True, text=True, check=False
    )
    assert completed.returncode == EXIT_REGRESSION
    assert "Traceback" not in completed.stderr


def test_wallclock_gate_prefers_thread_cpu_time_on_one_thread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Wall-clock rounds look 50 % slower (a busy machine), CPU time is unchanged: no regression.
    cpu = [0.008, 0.0081, 0.0079, 0.0080, 0.0082, 0.0078, 0.0080]
    wall = [0.010, 0.0101, 0.0099, 0.0102, 0.0098, 0.0100, 0.0101]
    entry = {"nodeid": "test_a.py::test_0", "network": "mlp", "ordinal": 0, "batch": 50, "threads": 1}
    old = write(tmp_path / "old.json", results(1000.0, wallclock=[{**entry, "round_s": wall, "round_cpu_s": cpu}]))
    busy = [value * 1.5 for value in wall]
    new = write(tmp_path / "new.json", results(1000.0, wallclock=[{**entry, "round_s": busy, "round_cpu_s": cpu}]))
    assert main(["compare", old, new, "--wallclock-max-regression=10"]) == EXIT_OK
    assert "[round_cpu_s]" in capsys.readouterr().out


def test_thresholds_command_writes_floors_under_the_slowest_step(tmp_path: Path) -> None:
    from pytest_dojo.cli.thresholds import round_down, thresholds_toml
    from pytest_dojo.plugin.thresholds import load_thresholds

    # 38,741.8 x 0.9 = 34,867.6 -> 34,800 (3 significant figures, rounded down)
    assert round_down(38741.766 * 0.9) == 34800.0
    assert round_down(484.949 * 0.9) == 436.0
    document = results(1000.0, 2000.0)
    document["results"].append({**document["results"][1], "ordinal": 1, "report": report(1500.0)})
    path = write(tmp_path / "results.json", document)
    (tmp_path / "floors.toml").write_text(thresholds_toml(path, 10.0))
    floors = load_thresholds(tmp_path / "floors.toml")
    assert floors.lookup("test_a.py::test_0", "5x5").min_samples_per_s == 900.0
    assert floors.lookup("test_a.py::test_1", "5x5").min_samples_per_s == 1350.0  # the slower of its two steps
    assert floors.lookup("test_a.py::test_1", "1x5").min_samples_per_s is None


@pytest.mark.parametrize(
    "command",
    [
        "compare",
        "thresholds",
        "whatif",
        "calibrate",
        "validate",
        "asv-record",
        "asv-backfill",
        "asv-publish",
        "asv-gate",
        "asv-check-page",
        "noise-study",
    ],
)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: pytest-dojo {command}" in capsys.readouterr().out
