"""Rendering of simulated results for the terminal: the only place that formats reports.

Figures are formatted, never computed, here: every number comes from a :class:`hwmodel.Report`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hwmodel import System
from pytest_dojo.session import TestResult

COLUMNS = ("test", "network", "batch", "step ms", "samples/s", "MFU", "bound")


def header_line(system: System) -> str:
    """The summary's first line: chip, mesh, chip count and peak."""
    return f"pytest-dojo: {system.describe()}"


def format_rate(value: float) -> str:
    """Samples per second with sensible precision: 3 significant figures, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def result_rows(results: Sequence[TestResult]) -> list[tuple[str, ...]]:
    """One row of strings per simulated step, in :data:`COLUMNS` order."""
    rows = []
    for result in results:
        report = result.report
        rows.append(
            (
                result.nodeid,
                result.network,
                str(report.global_batch),
                f"{report.step_time_s * 1e3:.3f}",
                format_rate(report.samples_per_s),
                f"{report.mfu * 100:.1f}%",
                report.bound,
            )
        )
    return rows


def table_lines(rows: Sequence[Sequence[str]], columns: Sequence[str] = COLUMNS) -> list[str]:
    """A plain text table: left-aligned text, right-aligned numbers."""
    widths = [max(len(columns[i]), *(len(row[i]) for row in rows)) for i in range(len(columns))]
    numeric = [i for i in range(len(columns)) if i >= 2]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()

    return [line(columns), line(["-" * width for width in widths]), *(line(row) for row in rows)]


def unmodeled_line(results: Sequence[TestResult]) -> str | None:
    """One line naming ops with no FLOP formula across all results, or None if there are none."""
    counts: Counter[str] = Counter()
    for result in results:
        counts.update(result.report.unmodeled_ops)
    if not counts:
        return None
    listed = ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))
    return f"unmodeled ops (no FLOP formula, costed by bytes): {listed}"
