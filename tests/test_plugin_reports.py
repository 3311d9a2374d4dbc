"""Report directory (trace + plots), the wall-clock fixture, and the noise-aware wall-clock rule."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_dojo.plugin.noise import compare_rounds, mann_whitney_greater, robust_sigma


@pytest.fixture(autouse=True, scope="module")
def _import_matplotlib_in_process() -> None:
    """Import matplotlib before the in-process runs that plot (pytester drops new modules)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


STEP = """
import torch

def test_step(dojo):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    dojo.train_step(model, torch.randn(50, 32), name="mlp")
"""


def test_report_dir_has_trace_and_plots(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_steps=STEP)
    result = pytester.runpytest("--dojo-report-dir=reports")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["step reports (trace.json, *.png) written under reports"])
    folder = pytester.path / "reports" / "test_steps.py_test_step__mlp"
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["breakdown.png", "links.png", "roofline.png", "trace.json"]
    for name in ("breakdown.png", "links.png", "roofline.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from hwmodel.step.trace import validate_chrome_trace

    trace = json.loads((folder / "trace.json").read_text())
    assert validate_chrome_trace(trace) == []
    spans = [event for event in trace["traceEvents"] if event["ph"] == "X"]
    # Every span lies within the simulated step.
    step_us = trace["otherData"]["step_time_us"]
    assert spans and max(event["ts"] + event["dur"] for event in spans) <= step_us * (1 + 1e-9)


def test_wallclock_fixture_times_rounds_and_fills_extra_info(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest-benchmark turns itself off in an xdist worker (it reads PYTEST_XDIST_WORKER); the
    # inner run is a plain one, whoever runs this test.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(
        test_clock="""
import torch

def test_clock(dojo_wallclock, benchmark):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    result = dojo_wallclock.train_step(model, torch.randn(25, 16), rounds=3, warmup_rounds=1, name="tiny")
    assert len(result.round_s) == 3 and all(seconds > 0 for seconds in result.round_s)
    assert result.median_samples_per_s == 25 / result.median_step_s
    assert benchmark.extra_info["dojo_simulated_samples_per_s"] > 0
    assert benchmark.extra_info["dojo_mesh"] == "5x5"
    assert benchmark.extra_info["dojo_threads"] == 1
    assert torch.get_num_threads() >= 1
"""
    )
    result = pytester.runpytest("--dojo-json=out.json", "--benchmark-json=bench.json")
    result.assert_outcomes(passed=1)
    document = json.loads((pytester.path / "out.json").read_text())
    (clock,) = document["wallclock"]
    assert (clock["network"], clock["batch"], clock["threads"], len(clock["round_s"])) == ("tiny", 25, 1, 3)
    assert len(clock["round_cpu_s"]) == 3 and all(seconds > 0 for seconds in clock["round_cpu_s"])
    bench = json.loads((pytester.path / "bench.json").read_text())
    assert bench["machine_info"]["torch_version"].startswith("2.")
    assert bench["machine_info"]["accelerator"] == "cpu"
    assert bench["benchmarks"][0]["extra_info"]["dojo_simulated_bound"]


def test_wallclock_bad_rounds_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_clock="""
import torch

def test_clock(dojo_wallclock):
    dojo_wallclock.train_step(torch.nn.Linear(4, 2), torch.randn(5, 4), rounds=0)
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["dojo_wallclock.train_step: rounds must be an integer >= 1, got 0"])


def test_mann_whitney_exact_values() -> None:
    # Completely separated samples of 3 and 3: one ordering in C(6, 3) = 20.
    assert mann_whitney_greater([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(1 / 20)
    assert mann_whitney_greater([4.0, 5.0, 6.0], [1.0, 2.0, 3.0]) == 1.0
    # 7 against 7, fully separated: 1 / C(14, 7) = 1 / 3432.
    assert mann_whitney_greater(list(range(7)), list(range(10, 17))) == pytest.approx(1 / 3432)


def test_robust_sigma_of_a_known_sample() -> None:
    # median 3, absolute deviations 2, 1, 0, 1, 2 -> MAD 1 -> sigma 1.4826
    assert robust_sigma([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(1.4826)


def test_clear_slowdown_is_flagged_and_noise_is_not() -> None:
    rng = random.Random(7)
    old = [0.010 * (1 + rng.gauss(0, 0.02)) for _ in range(9)]
    same = [0.010 * (1 + rng.gauss(0, 0.02)) for _ in range(9)]
    slower = [0.013 * (1 + rng.gauss(0, 0.02)) for _ in range(9)]
    assert not compare_rounds(old, same, 5.0).regressed
    verdict = compare_rounds(old, slower, 5.0)
    assert verdict.regressed and verdict.slowdown_pct == pytest.approx(30, abs=4)


def test_slowdown_inside_the_noise_is_not_flagged() -> None:
    # +10 % on rounds whose spread is ~30 %: the noise floor exceeds the change.
    old = [0.010, 0.013, 0.007, 0.011, 0.009, 0.014, 0.006]
    new = [value * 1.1 for value in old]
    verdict = compare_rounds(old, new, 5.0)
    assert verdict.noise_floor_pct > verdict.slowdown_pct and not verdict.regressed


@settings(max_examples=50, deadline=None)
@given(rounds=st.lists(st.floats(min_value=1e-4, max_value=1.0), min_size=3, max_size=15))
def test_faster_or_equal_is_never_a_regression(rounds: list[float]) -> None:
    assert not compare_rounds(rounds, rounds, 0.0).regressed
    assert not compare_rounds(rounds, [value * 0.9 for value in rounds], 0.0).regressed
