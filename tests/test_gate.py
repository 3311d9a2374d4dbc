"""The gate's rules on report dicts, checked against hand-computed figures (no pytest plugin)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_dojo.plugin.gate import attribution, compare_reports, judge, threshold_failures
from pytest_dojo.plugin.thresholds import ThresholdError, Thresholds, parse_limits


def report(
    samples_per_s: float = 1000.0, step_time_s: float = 0.008, mfu: float = 0.25, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "workload": "Net",
        "chip": "d1",
        "mesh": "5x5",
        "samples_per_s": samples_per_s,
        "step_time_s": step_time_s,
        "mfu": mfu,
        "breakdown_s": {"compute": 0.006, "communication": 0.002},
        "top_modules": [["encoder", 0.005], ["head", 0.001]],
        "top_ops": [["aten.mm.default", 0.004], ["aten.add.Tensor", 0.001]],
    }
    data.update(extra)
    return data


def test_floor_message_names_figure_threshold_value_and_gap() -> None:
    # 900 against a floor of 1,000 is 10.0% short.
    messages = threshold_failures(report(samples_per_s=900.0), Thresholds(min_samples_per_s=1000.0))
    assert messages == ["samples/s 900 is below the floor min_samples_per_s=1,000 by 10.0%"]


def test_ceiling_on_step_time_in_ms() -> None:
    # 12 ms against a 10 ms ceiling is 20.0% over.
    messages = threshold_failures(report(step_time_s=0.012), Thresholds(max_step_ms=10.0))
    assert messages == ["step time 12 ms is above the ceiling max_step_ms=10 by 20.0%"]


def test_direction_awareness_gains_pass() -> None:
    limits = Thresholds(min_samples_per_s=1000.0, max_step_ms=10.0, min_mfu=0.2)
    assert threshold_failures(report(samples_per_s=5000.0, step_time_s=0.001, mfu=0.9), limits) == []
    assert len(threshold_failures(report(samples_per_s=999.0, step_time_s=0.011, mfu=0.1), limits)) == 3


def test_regression_message_has_old_new_change_and_attribution() -> None:
    old = report(samples_per_s=1000.0)
    new = report(
        samples_per_s=800.0,
        breakdown_s={"compute": 0.0085, "communication": 0.002},
        top_modules=[["encoder", 0.0075], ["head", 0.001]],
        top_ops=[["aten.mm.default", 0.0065], ["aten.add.Tensor", 0.001]],
    )
    comparison = compare_reports(old, new, 1.0)
    assert comparison.change_pct == pytest.approx(-20.0)
    assert comparison.regressed
    message = comparison.message()
    assert message.startswith("samples/s regressed 20.00% against the baseline (1,000 -> 800 samples/s, allowed 1%)")
    # encoder went from 5 ms to 7.5 ms: +2.5 ms, +50 %.
    assert "modules: encoder +2.5 ms (+50%)" in message
    assert "ops: aten.mm.default +2.5 ms (+62%)" in message
    assert "time: compute +2.5 ms (+42%)" in message


def test_gain_and_change_within_tolerance_pass() -> None:
    assert not compare_reports(report(samples_per_s=1000.0), report(samples_per_s=2000.0), 0.1).regressed
    assert not compare_reports(report(samples_per_s=1000.0), report(samples_per_s=999.5), 0.1).regressed
    assert compare_reports(report(samples_per_s=1000.0), report(samples_per_s=998.0), 0.1).regressed


def test_attribution_marks_entries_new_to_the_top_list() -> None:
    old = report()
    new = report(top_modules=[["encoder", 0.005], ["neck", 0.002]])
    parts = attribution(old, new)
    assert "modules: neck +2 ms (new), head -1 ms (-100%)" in parts


def test_missing_baseline_entry_is_a_note_unless_required() -> None:
    lenient = judge(
        report(), Thresholds(), None, has_baseline_file=True, max_regression_pct=0.1, require_baseline=False
    )
    assert lenient.verdict == "-" and lenient.notes == ("no baseline entry for Net on d1 5x5",)
    strict = judge(report(), Thresholds(), None, has_baseline_file=True, max_regression_pct=0.1, require_baseline=True)
    assert strict.verdict == "FAIL"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"min_samples_per_s": -1}, "min_samples_per_s must be a finite number > 0, got -1"),
        ({"min_samples_per_s": 0}, "min_samples_per_s must be a finite number > 0, got 0"),
        ({"max_step_ms": "fast"}, "max_step_ms must be a number, got 'fast'"),
        ({"max_step_ms": True}, "max_step_ms must be a number, got True"),
        ({"min_mfu": 1.5}, "min_mfu is a fraction in (0, 1], got 1.5"),
        ({"min_mfu": float("nan")}, "min_mfu must be a finite number > 0, got nan"),
        (
            {"max_samples_per_s": 3},
            "unknown threshold 'max_samples_per_s'; known: min_samples_per_s, max_step_ms, min_mfu",
        ),
    ],
)
def test_bad_limits_are_one_line(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(ThresholdError) as raised:
        parse_limits(values, "here")
    assert str(raised.value) == f"here: {expected}"


@given(
    old=st.floats(min_value=1e-3, max_value=1e9),
    factor=st.floats(min_value=0.01, max_value=100.0),
    tolerance=st.floats(min_value=0.0, max_value=50.0),
)
def test_only_drops_beyond_the_tolerance_regress(old: float, factor: float, tolerance: float) -> None:
    new = old * factor
    comparison = compare_reports(report(samples_per_s=old), report(samples_per_s=new), tolerance)
    if factor >= 1:
        assert not comparison.regressed
    assert comparison.regressed == (comparison.change_pct < -tolerance)


def test_time_changes_switch_to_microseconds_below_a_tenth_of_a_millisecond() -> None:
    from pytest_dojo.plugin.gate import format_delta_s

    assert format_delta_s(0.0025) == "+2.5 ms"
    assert format_delta_s(-5.61e-5) == "-56.1 µs"
