"""Rendering of simulated results for the terminal: the only place that formats reports.

Figures are formatted, never computed, here: every number comes from a :class:`hwmodel.Report`
or from the gate's verdict on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hwmodel import System
    from pytest_dojo.plugin.session import DojoSession, TestResult

COLUMNS = ("test", "network", "batch", "step ms", "samples/s", "band", "MFU", "gate", "bound")
BASELINE_COLUMN = "vs baseline"
NUMERIC_COLUMNS = frozenset({"batch", "step ms", "samples/s", "MFU", BASELINE_COLUMN})


def header_line(system: System, execution: str | None = None) -> str:
    """The summary's first line: chip, mesh, chip count and peak (and the execution mode, when given)."""
    mode = f", {execution} execution" if execution else ""
    return f"pytest-dojo: {system.describe()}{mode}"


def format_rate(value: float) -> str:
    """Samples per second with sensible precision: 3 significant figures, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def column_names(with_baseline: bool = False) -> tuple[str, ...]:
    """Column names; the change against the baseline sits before the bound when a baseline is given."""
    return (*COLUMNS[:-1], BASELINE_COLUMN, COLUMNS[-1]) if with_baseline else COLUMNS


def result_rows(results: Sequence[TestResult], with_baseline: bool = False) -> list[tuple[str, ...]]:
    """One row of strings per simulated step, in :func:`column_names` order."""
    rows = []
    for result in results:
        report = result.report
        name = result.network if result.ordinal == 0 else f"{result.network} #{result.ordinal + 1}"
        row: tuple[str, ...] = (
            result.nodeid,
            name,
            str(report.global_batch),
            f"{report.step_time_s * 1e3:.3f}",
            format_rate(report.samples_per_s),
            "-" if report.confidence is None else report.confidence.label(),
            f"{report.mfu * 100:.1f}%",
            result.verdict,
        )
        if with_baseline:
            row += ("new" if result.change_pct is None else f"{result.change_pct:+.2f}%",)
        rows.append((*row, report.bound))
    return rows


def table_lines(rows: Sequence[Sequence[str]], columns: Sequence[str] | None = None) -> list[str]:
    """A plain text table: left-aligned text, right-aligned numbers."""
    if columns is None:
        columns = COLUMNS if not rows or len(rows[0]) == len(COLUMNS) else column_names(with_baseline=True)
    widths = [max(len(columns[i]), *(len(row[i]) for row in rows)) for i in range(len(columns))]
    numeric = [i for i, name in enumerate(columns) if name in NUMERIC_COLUMNS]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ).rstrip()

    return [line(columns), line(["-" * width for width in widths]), *(line(row) for row in rows)]


def note_lines(results: Sequence[TestResult]) -> list[str]:
    """The gate's messages per step (failures and notes such as a missing baseline entry)."""
    return [f"{result.nodeid} [{result.network}]: {note}" for result in results for note in result.notes]


def split_lines(results: Sequence[TestResult]) -> list[str]:
    """One line per step whose global batch did not split evenly: its shards and the idle chip-time."""
    lines = []
    for result in results:
        split = result.report.batch_split
        if split is None:
            continue
        shards = [(split.largest_shard_replicas, split.largest_shard)]
        if split.smallest_shard_replicas and split.smallest_shard:
            shards.append((split.smallest_shard_replicas, split.smallest_shard))
        described = " + ".join(f"{count} x {size}" for count, size in shards)
        line = (
            f"{result.nodeid} [{result.network}]: batch {result.report.global_batch} over {split.replicas} "
            f"replicas does not split evenly: {described} samples"
        )
        if split.idle_replicas:
            line += f", {split.idle_replicas} replicas idle"
        if split.micro_batches > 1:
            line += (
                f"; {split.micro_batches} micro-batches per replica of {split.largest_micro_batch}"
                f" and {split.smallest_micro_batch} samples"
            )
        lines.append(f"{line}; {split.idle_fraction * 100:.1f}% of chip-time idle")
    return lines


def idle_thresholds_line(gated_nodeids: Sequence[str], simulated_nodeids: set[str]) -> str | None:
    """One line naming thresholds-file tests that simulated no step in this run (renamed, deselected
    or no longer simulating), so a floor cannot vanish silently; None when every one was checked."""
    idle = [nodeid for nodeid in gated_nodeids if nodeid not in simulated_nodeids]
    if not idle:
        return None
    return f"thresholds file: {len(idle)} test(s) with limits on this mesh simulated nothing: {', '.join(idle)}"


def unmodeled_line(results: Sequence[TestResult]) -> str | None:
    """One line naming ops with no FLOP formula across all results, or None if there are none."""
    counts: Counter[str] = Counter()
    for result in results:
        counts.update(result.report.unmodeled_ops)
    if not counts:
        return None
    listed = ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))
    return f"unmodeled ops (no FLOP formula, costed by bytes): {listed}"


def cost_model_lines(results: Sequence[TestResult]) -> list[str]:
    """One line per cost model the run's steps were priced with: what it is and its uncertainty."""
    lines: list[str] = []
    for result in results:
        section = result.report.op_cost_model
        if section is None:
            continue
        line = f"op costs: {section.description}"
        spread = section.error_range()
        if spread is not None:
            low, high = (round(value * 100) for value in spread)
            line += f" (uncertainty: {section.uncertainty}, {low}-{high}% per op class)"
        elif section.calibration:
            line += f" ({section.calibration})"
        if section.fallback_ops:
            line += f"; {section.fallback_ops} matrix op(s) without GEMM shapes on the roofline"
        if line not in lines:
            lines.append(line)
    return lines


def execution_of(results: Sequence[TestResult], default: str) -> str:
    """The execution mode of the run's steps: theirs when they agree, else ``eager/compiled``."""
    modes = sorted({r.report.op_cost_model.execution for r in results if r.report.op_cost_model is not None})
    return "/".join(modes) if modes else default


def confidence_lines(results: Sequence[TestResult]) -> list[str]:
    """One line per distinct error band of the run's steps: the band, its source and its notes."""
    lines: list[str] = []
    for result in results:
        section = result.report.confidence
        if section is None:
            continue
        line = f"band {section.label()}: {section.source} ({section.basis})"
        line += "".join(f"; {note}" for note in section.notes)
        if line not in lines:
            lines.append(line)
    return lines


def sensitivity_lines(ranked: Mapping[tuple[str, str, int], Sequence[str]]) -> list[str]:
    """``--dojo-sensitivity``: per step, the hardware changes ranked by the speedup each buys."""
    lines = []
    for (nodeid, network, ordinal), entries in sorted(ranked.items()):
        lines.append(f"{nodeid} [{network}{f' #{ordinal + 1}' if ordinal else ''}]:")
        lines.extend(f"  {rank}. {entry}" for rank, entry in enumerate(entries, start=1))
    return lines


def write_summary(
    terminalreporter: pytest.TerminalReporter,
    session: DojoSession,
    ranked: Mapping[tuple[str, str, int], Sequence[str]],
) -> None:
    """The run's dojo section: the table of simulated steps, the gate's notes, what was written."""
    write = terminalreporter.write_line
    for line in session.write_errors:
        write(f"ERROR: {line}", red=True)
    if not session.results:
        return
    results = session.sorted_results()
    options = session.options
    terminalreporter.section("dojo: simulated training steps")
    write(header_line(session.system, execution_of(results, options.execution)))
    if session.host_rates is not None:
        write(session.host_rates.line())
    with_baseline = options.baseline is not None
    for line in table_lines(result_rows(results, with_baseline=with_baseline), column_names(with_baseline)):
        write(line)
    for line in cost_model_lines(results) + confidence_lines(results):
        write(line)
    for line in split_lines(results):
        write(line)
    for line in note_lines(results):
        write(line, yellow=True)
    idle = None
    if options.thresholds is not None:
        gated = options.thresholds.tests_for_mesh(str(session.system.mesh))
        idle = idle_thresholds_line(gated, {result.nodeid for result in results})
    for warning in (idle, unmodeled_line(results)):
        if warning:
            write(warning, yellow=True)
    for line in session.written:
        write(line)
    if options.report_dir is not None:
        write(f"step reports (trace.json, *.png) written under {options.report_dir}")
    if ranked:
        terminalreporter.section("dojo: hardware sensitivity (one parameter at a time, 2x better)")
        for line in sensitivity_lines(ranked):
            write(line)
