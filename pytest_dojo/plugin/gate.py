"""The gate: thresholds and baseline comparisons on simulated reports, and their messages.

Works on report dicts (:meth:`hwmodel.Report.to_dict`), so the plugin and the ``pytest-dojo
compare`` command apply the same rule to live results and to JSON files. Never imports pytest.

Direction: a figure that is better when higher (samples/s, MFU) fails when it falls; step time fails
when it rises. The baseline rule gates samples/s: the test regresses when
``new < old * (1 - max_regression_pct / 100)``. Simulated figures are deterministic (bit for bit),
so the default tolerance, :data:`DEFAULT_MAX_REGRESSION_PCT`, is tight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_dojo.plugin.thresholds import FIGURES, Thresholds

DEFAULT_MAX_REGRESSION_PCT = 0.1
ATTRIBUTION_ENTRIES = 3


def format_number(value: float) -> str:
    """Three significant figures, thousands separated above 1,000."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def gap_pct(value: float, limit: float) -> float:
    """How far ``value`` is from ``limit``, in percent of ``limit``."""
    return abs(value - limit) / limit * 100 if limit else float("inf")


def threshold_failures(report: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    """One message per limit that ``report`` breaks; empty when all hold."""
    messages = []
    for name, limit in thresholds.items():
        figure = FIGURES[name]
        value = figure.value(report)
        broken = value < limit if figure.higher_is_better else value > limit
        if broken:
            side = "below the floor" if figure.higher_is_better else "above the ceiling"
            unit = f" {figure.unit}" if figure.unit else ""
            messages.append(
                f"{figure.label} {format_number(value)}{unit} is {side} {name}={format_number(limit)}"
                f" by {gap_pct(value, limit):.1f}%"
            )
    return messages


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """A report against its baseline: the change in samples/s and whether it is a regression."""

    old_samples_per_s: float
    new_samples_per_s: float
    change_pct: float
    max_regression_pct: float
    attribution: tuple[str, ...]

    @property
    def regressed(self) -> bool:
        return self.change_pct < -self.max_regression_pct

    def message(self) -> str:
        """The one-line failure message, with attribution."""
        text = (
            f"samples/s regressed {-self.change_pct:.2f}% against the baseline"
            f" ({format_number(self.old_samples_per_s)} -> {format_number(self.new_samples_per_s)} samples/s,"
            f" allowed {self.max_regression_pct:g}%)"
        )
        if self.attribution:
            text += "; changed most: " + "; ".join(self.attribution)
        return text


def compare_reports(old: Mapping[str, Any], new: Mapping[str, Any], max_regression_pct: float) -> Comparison:
    """``new`` against ``old`` (report dicts) with a tolerance in percent of ``old``'s samples/s."""
    old_rate = float(old["samples_per_s"])
    new_rate = float(new["samples_per_s"])
    change = (new_rate - old_rate) / old_rate * 100 if old_rate > 0 else 0.0
    return Comparison(
        old_samples_per_s=old_rate,
        new_samples_per_s=new_rate,
        change_pct=change,
        max_regression_pct=max_regression_pct,
        attribution=tuple(attribution(old, new)),
    )


def _time_changes(
    old: Sequence[Sequence[Any]] | Mapping[str, float], new: Sequence[Sequence[Any]] | Mapping[str, float]
) -> list[tuple[str, float, float]]:
    old_map = dict(old.items()) if isinstance(old, Mapping) else {str(n): float(s) for n, s in old}
    new_map = dict(new.items()) if isinstance(new, Mapping) else {str(n): float(s) for n, s in new}
    changes = [(name, old_map.get(name, 0.0), new_map.get(name, 0.0)) for name in sorted(set(old_map) | set(new_map))]
    changes = [change for change in changes if change[2] != change[1]]
    return sorted(changes, key=lambda change: (-abs(change[2] - change[1]), change[0]))


def format_delta_s(delta_s: float) -> str:
    """A signed time change in ms, or in µs below 0.1 ms: ``+2.5 ms``, ``-56.1 µs``."""
    if abs(delta_s) >= 1e-4:
        return f"{delta_s * 1e3:+.3g} ms"
    return f"{delta_s * 1e6:+.3g} µs"


def _describe(name: str, old_s: float, new_s: float) -> str:
    relative = f" ({(new_s - old_s) / old_s * 100:+.0f}%)" if old_s > 0 else " (new)"
    return f"{name} {format_delta_s(new_s - old_s)}{relative}"


def attribution(old: Mapping[str, Any], new: Mapping[str, Any], entries: int = ATTRIBUTION_ENTRIES) -> list[str]:
    """Where the simulated time moved: step-time parts, then the modules and ops that changed most.

    Modules and ops come from the reports' top lists (the slowest few of each step): one that is in
    only one list counts as 0 s on the other side, which overstates its change by at most the
    shortest listed time.
    """
    parts = []
    for label, key in (("time", "breakdown_s"), ("modules", "top_modules"), ("ops", "top_ops")):
        changes = _time_changes(old.get(key, []), new.get(key, []))[:entries]
        if changes:
            parts.append(f"{label}: " + ", ".join(_describe(*change) for change in changes))
    return parts


@dataclass(frozen=True, kw_only=True)
class Judgement:
    """The gate's decision on one simulated step: failures fail the test, notes are only shown."""

    failures: tuple[str, ...]
    notes: tuple[str, ...]
    gated: bool
    change_pct: float | None

    @property
    def verdict(self) -> str:
        if self.failures:
            return "FAIL"
        return "ok" if self.gated else "-"


def judge(
    report: Mapping[str, Any],
    thresholds: Thresholds,
    baseline: Mapping[str, Any] | None,
    *,
    has_baseline_file: bool,
    max_regression_pct: float,
    require_baseline: bool,
) -> Judgement:
    """Apply thresholds and the baseline rule to one report dict.

    ``baseline`` is the step's entry in the baseline file (None if it has none);
    ``has_baseline_file`` says whether a baseline was given at all. A missing entry is a note,
    or a failure when ``require_baseline``.
    """
    failures = threshold_failures(report, thresholds)
    notes: list[str] = []
    change = None
    gated = bool(thresholds)
    if baseline is not None:
        gated = True
        comparison = compare_reports(baseline, report, max_regression_pct)
        change = comparison.change_pct
        if comparison.regressed:
            failures.append(comparison.message())
    elif has_baseline_file:
        missing = f"no baseline entry for {report['workload']} on {report['chip']} {report['mesh']}"
        if require_baseline:
            gated = True
            failures.append(missing + " (--dojo-require-baseline)")
        else:
            notes.append(missing)
    return Judgement(failures=tuple(failures), notes=tuple(notes), gated=gated, change_pct=change)
