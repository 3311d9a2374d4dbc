"""The host preset's rates measured on this machine: first use, the cache, the committed fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hwmodel.spec.host import calibration_path
from pytest_dojo import hostbench, hostbench_op_classes

MEASURED = "--dojo-host-calibration=measured"

STEP_TEST = """
import torch

def test_step(dojo):
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    report = dojo.train_step(model, torch.randn(32, 64))
    print("STEP_MS", repr(report.step_time_s * 1e3))
"""


@pytest.fixture
def slow_machine(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``measure_host`` replaced by the committed document with a quarter of its memory bandwidth
    (a measurement takes no time); returns the list of calls it counts."""
    calls: list[int] = []
    committed = json.loads(calibration_path().read_text(encoding="utf-8"))

    def fake(**kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        kwargs["progress"]("matrix float32 1024^3 ...")
        document = dict(committed, measured_utc="2026-12-02T05:00:00Z")
        document["memory_bytes_per_s_by_size"] = {
            size: rate / 4 for size, rate in committed["memory_bytes_per_s_by_size"].items()
        }
        return document

    monkeypatch.setattr(hostbench, "measure_host", fake)
    return calls


def _step_ms(result: pytest.RunResult) -> float:
    line = next(line for line in result.stdout.lines if "STEP_MS" in line)
    return float(line.split("STEP_MS")[1].split()[0])


def test_first_use_measures_then_the_cache_answers(pytester: pytest.Pytester, slow_machine: list[int]) -> None:
    pytester.makepyfile(test_step=STEP_TEST)
    first = pytester.runpytest("-s", "--dojo-chip=host", "--dojo-mesh=1x1", MEASURED)
    first.assert_outcomes(passed=1)
    first.stderr.fnmatch_lines(["dojo: measuring this machine for the host preset*", "dojo:   matrix float32*"])
    first.stdout.fnmatch_lines(["host rates: measured (this machine, *): *measured 2026-12-02T05:00:00Z*"])
    second = pytester.runpytest("-s", "--dojo-chip=host", "--dojo-mesh=1x1", MEASURED)
    assert len(slow_machine) == 1, "the second run reads the cache"
    assert _step_ms(second) == _step_ms(first)
    committed = pytester.runpytest("-s", "--dojo-chip=host", "--dojo-mesh=1x1", "--dojo-host-calibration=committed")
    committed.stdout.fnmatch_lines(["host rates: committed (host_calibration.json; --dojo-host-calibration=*)*"])
    assert _step_ms(committed) < _step_ms(first), "a quarter of the bandwidth makes the step slower"
    pytester.runpytest("-s", "--dojo-chip=host", "--dojo-mesh=1x1", MEASURED, "--cache-clear").assert_outcomes(passed=1)
    assert len(slow_machine) == 2, "--cache-clear measures again"


def test_by_default_the_committed_rates_are_used(pytester: pytest.Pytester, slow_machine: list[int]) -> None:
    pytester.makepyfile(test_step=STEP_TEST)
    result = pytester.runpytest("-s", "--dojo-chip=host", "--dojo-mesh=1x1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["host rates: committed (host_calibration.json; --dojo-host-calibration=committed)*"])
    assert slow_machine == []


def test_without_a_cache_the_committed_rates_are_used(pytester: pytest.Pytester, slow_machine: list[int]) -> None:
    pytester.makepyfile(test_step=STEP_TEST)
    result = pytester.runpytest("-s", "--dojo-chip=host", "--dojo-mesh=1x1", MEASURED, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["host rates: committed (host_calibration.json; no cache directory*"])
    assert slow_machine == []


def test_the_results_file_names_the_rates(pytester: pytest.Pytester, slow_machine: list[int]) -> None:
    pytester.makepyfile(test_step=STEP_TEST)
    pytester.runpytest("--dojo-chip=host", "--dojo-mesh=1x1", MEASURED, "--dojo-json=out.json").assert_outcomes(
        passed=1
    )
    document = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    assert document["host_rates"]["origin"] == "measured"
    assert "2026-12-02T05:00:00Z" in document["host_rates"]["rates"]


def test_other_chips_measure_nothing(pytester: pytest.Pytester, slow_machine: list[int]) -> None:
    pytester.makepyfile(test_step=STEP_TEST)
    result = pytester.runpytest("-s", "--dojo-mesh=1x1", "--dojo-json=out.json")
    result.assert_outcomes(passed=1)
    assert slow_machine == [] and "host rates" not in result.stdout.str()
    assert "host_rates" not in json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))


def test_an_unknown_mode_is_one_usage_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--dojo-host-calibration=fresh")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dojo-host-calibration: must be one of measured, committed, got 'fresh'"])


def test_the_machine_key_names_the_benchmark_version(monkeypatch: pytest.MonkeyPatch) -> None:
    key = hostbench.machine_key()
    assert len(key) == 16 and key == hostbench.machine_key()
    assert hostbench.machine_key(threads=2) != key
    monkeypatch.setattr(hostbench, "BENCH_VERSION", hostbench.BENCH_VERSION + 1)
    assert hostbench.machine_key() != key


def test_op_class_probes_measure_positive_rates() -> None:
    """Fresh allocation pays for pages an in-place update already has: never faster by much."""
    inplace = hostbench_op_classes.elementwise_bytes_per_s(fresh=False, nbytes=1 << 22, repeats=3)
    fresh = hostbench_op_classes.elementwise_bytes_per_s(fresh=True, nbytes=1 << 22, repeats=3)
    assert inplace > 0 and fresh > 0
    assert hostbench_op_classes.reduction_bytes_per_s(nbytes=1 << 22, repeats=3) > 0
    assert hostbench_op_classes.conv_flops_per_s(repeats=1) > 0


@pytest.mark.slow  # two xdist workers, each importing torch
def test_xdist_workers_take_the_controllers_rates(pytester: pytest.Pytester, slow_machine: list[int]) -> None:
    """The controller measures (here: the fake, in-process) and hands the rates over; a worker that
    measured for itself would price the step with this machine's real rates."""
    pytester.makepyfile(test_step=STEP_TEST)
    serial = pytester.runpytest("--dojo-chip=host", "--dojo-mesh=1x1", MEASURED, "--dojo-json=serial.json")
    serial.assert_outcomes(passed=1)
    distributed = pytester.runpytest(
        "--dojo-chip=host",
        "--dojo-mesh=1x1",
        MEASURED,
        "--dojo-json=xdist.json",
        "-n",
        "2",
        "-p",
        "no:randomly",
        "--cache-clear",
    )
    distributed.assert_outcomes(passed=1)
    assert len(slow_machine) == 2, "the serial run and the controller measured; no worker did"

    def step_s(name: str) -> float:
        document = json.loads((pytester.path / name).read_text(encoding="utf-8"))
        return float(document["results"][0]["report"]["step_time_s"])

    assert step_s("xdist.json") == step_s("serial.json")
