"""``--dojo-report-dir``: per simulated step, a Chrome/Perfetto trace and three PNG plots.

For each step, a folder ``<test>__<network>[_n]/`` holds:

* ``trace.json``: the step's timeline in the Chrome trace event format
  (:func:`hwmodel.step.trace.chrome_trace`; open it in https://ui.perfetto.dev or chrome://tracing),
  times in microseconds;
* ``breakdown.png``: the step time split into its parts and into phases, in milliseconds;
* ``roofline.png``: every op of one replica as arithmetic intensity (FLOP per byte of local
  memory traffic) against achieved FLOP/s, under the chip's compute and memory roofs;
* ``links.png``: the mesh, each chip coloured by the busy fraction of its busiest link over the
  step (%), from ``Report.link_utilization``.

matplotlib is imported only here, with the Agg backend. Every file is written to a temporary
name and renamed, so an interrupted run leaves no half-written plot.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_dojo.errors import DojoError
from pytest_dojo.plugin.results_json import file_mode

if TYPE_CHECKING:
    from hwmodel import Report, System

FILE_MODE = file_mode()
PHASE_COLOURS = {"forward": "tab:blue", "backward": "tab:orange", "optimizer": "tab:green"}


class ReportDirError(DojoError):
    """A report file that cannot be written."""


@dataclass(frozen=True, kw_only=True)
class OpPoint:
    """One op of a replica: its FLOPs, local-memory bytes, simulated seconds and phase."""

    flops: float
    bytes_moved: float
    time_s: float
    phase: str


@dataclass(frozen=True, kw_only=True)
class StepArtifacts:
    """What the plots need beyond the report: the timeline and the per-op points (either may be None)."""

    timeline: Any = None
    ops: tuple[OpPoint, ...] | None = None
    batch_per_replica: int | None = None
    link_utilization: list[list[float]] | None = None
    """Per chip, its busiest link's busy share of the step, from the simulation with a timeline."""


def step_folder_name(nodeid: str, network: str, ordinal: int) -> str:
    """A file-system-safe folder name for one step of one test."""
    name = f"{nodeid}__{network}" + (f"_{ordinal + 1}" if ordinal else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise ReportDirError(f"--dojo-report-dir: cannot write {path}: {error.strerror or error}") from None
    try:
        write(temporary)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ReportDirError(f"--dojo-report-dir: cannot write {path}: {error.strerror or error}") from None


def write_step_report(
    directory: Path,
    nodeid: str,
    network: str,
    ordinal: int,
    report: Report,
    system: System,
    artifacts: StepArtifacts | None,
) -> Path:
    """Write the trace (when a timeline is known) and the plots of one step; returns its folder."""
    folder = directory / step_folder_name(nodeid, network, ordinal)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportDirError(f"--dojo-report-dir: cannot create {folder}: {error.strerror or error}") from None
    artifacts = artifacts or StepArtifacts()
    if artifacts.timeline is not None:
        from hwmodel.step.trace import chrome_trace

        title = f"{report.workload} on {report.mesh} {report.chip}, {report.plan}"
        text = json.dumps(chrome_trace(artifacts.timeline, title=title), allow_nan=False)

        def write_trace(path: str) -> None:
            Path(path).write_text(text, encoding="utf-8")

        _atomic(folder / "trace.json", write_trace)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figures: list[tuple[str, Any]] = [
        ("breakdown.png", plot_breakdown(report)),
        ("roofline.png", plot_roofline(report, system, artifacts)),
        ("links.png", plot_links(report, artifacts)),
    ]
    for name, figure in figures:
        try:
            _atomic(folder / name, _png_writer(figure))
        finally:
            pyplot.close(figure)
    return folder


def _png_writer(figure: Any) -> Callable[[str], None]:
    def write(path: str) -> None:
        figure.savefig(path, format="png", dpi=110)

    return write


def _title(report: Report) -> str:
    return (
        f"{report.workload}: {report.chip} {report.mesh}, {report.plan}, batch {report.global_batch}\n"
        f"step {report.step_time_s * 1e3:.3g} ms, {report.samples_per_s:,.0f} samples/s, "
        f"MFU {report.mfu * 100:.1f}%, {report.bound}-bound"
    )


def plot_breakdown(report: Report) -> Any:
    """Two stacked bars in ms: the step's disjoint parts, and the compute stream's phases."""
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(2, 1, figsize=(9, 4.2), layout="constrained", sharex=True)
    palette = [pyplot.get_cmap("tab10")(index) for index in range(10)]
    rows: tuple[tuple[str, dict[str, float], list[Any]], ...] = (
        ("parts of the step", {k: v for k, v in report.breakdown_s.parts().items() if v > 0}, palette),
        (
            "phases (compute stream)",
            {k: v for k, v in report.phase_time_s.to_dict().items() if v > 0},
            [PHASE_COLOURS.get(name, "tab:gray") for name, v in report.phase_time_s.to_dict().items() if v > 0],
        ),
    )
    for axis, (label, parts, colours) in zip(axes, rows, strict=True):
        left = 0.0
        for index, (part, seconds) in enumerate(parts.items()):
            share = seconds / report.step_time_s * 100 if report.step_time_s else 0.0
            axis.barh(
                0,
                seconds * 1e3,
                left=left,
                color=colours[index % len(colours)],
                edgecolor="white",
                label=f"{part}: {seconds * 1e3:.3g} ms ({share:.0f}%)",
            )
            if share >= 15:
                axis.text(left + seconds * 1e3 / 2, 0, part, ha="center", va="center", fontsize=8, color="white")
            left += seconds * 1e3
        axis.set_yticks([0], [label])
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes[-1].set_xlabel("time per step (ms)")
    axes[0].set_title(_title(report), fontsize=9)
    return figure


def plot_roofline(report: Report, system: System, artifacts: StepArtifacts) -> Any:
    """Ops of one replica on a log-log roofline of the chip (FLOP/byte vs FLOP/s)."""
    import numpy as np
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(7.5, 5.2), layout="constrained")
    chip = system.chip
    rates = dict(report.op_class_rates.classes) if report.op_class_rates is not None else {}
    matrix = next((rate for rate in rates.values() if rate.rate.endswith("-matrix")), None)
    peak = matrix.flops_per_s if matrix is not None else chip.matrix_flops_per_s(report.precision)
    roof = matrix.rate if matrix is not None else report.precision
    bandwidth = chip.local_memory_read_bytes_per_s
    points = [op for op in (artifacts.ops or ()) if op.flops > 0 and op.bytes_moved > 0 and op.time_s > 0]
    if points:
        intensity = np.array([op.flops / op.bytes_moved for op in points])
        rate = np.array([op.flops / op.time_s for op in points])
        share = np.array([op.time_s for op in points])
        sizes = 12 + 300 * share / share.max()
        for phase, colour in PHASE_COLOURS.items():
            mask = np.array([op.phase == phase for op in points])
            if mask.any():
                axis.scatter(
                    intensity[mask],
                    rate[mask],
                    s=sizes[mask],
                    color=colour,
                    alpha=0.6,
                    label=phase,
                    edgecolors="black",
                    linewidths=0.3,
                )
        low, high = min(intensity.min(), peak / bandwidth) / 4, max(intensity.max(), peak / bandwidth) * 4
        free = sum(1 for op in (artifacts.ops or ()) if op.flops <= 0)
        note = f"{len(points)} ops with FLOPs; {free} ops without FLOPs not shown; marker area ~ op time"
    else:
        low, high = peak / bandwidth / 100, peak / bandwidth * 100
        note = "per-op data not available for this plan"
    x = np.geomspace(low, high, 200)
    axis.plot(
        x,
        np.minimum(peak, bandwidth * x),
        color="black",
        linewidth=1.2,
        label=f"roof: {peak / 1e12:.3g} TFLOP/s {roof}, {bandwidth / 1e12:.3g} TB/s {chip.local_memory_kind}",
    )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel(f"arithmetic intensity (FLOP per byte of {chip.local_memory_kind} traffic)")
    axis.set_ylabel("achieved rate per chip (FLOP/s)")
    batch = f", batch {artifacts.batch_per_replica} per replica" if artifacts.batch_per_replica else ""
    axis.set_title(f"{report.workload}: op roofline on one {chip.name}{batch}\n{note}", fontsize=9)
    axis.grid(True, which="major", alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    return figure


def plot_links(report: Report, artifacts: StepArtifacts | None = None) -> Any:
    """Heatmap of the mesh: each chip's busiest-link busy fraction over the step, in percent."""
    import numpy as np
    from matplotlib import pyplot

    utilization = report.link_utilization or (artifacts.link_utilization if artifacts is not None else None)
    grid = np.array(utilization, dtype=float) * 100 if utilization else None
    rows, cols = grid.shape if grid is not None and grid.ndim == 2 else (0, 0)
    figure, axis = pyplot.subplots(
        figsize=(max(4.5, 0.7 * cols + 2.5), max(3.6, 0.6 * rows + 1.8)), layout="constrained"
    )
    if grid is None or grid.ndim != 2 or grid.size == 0:
        axis.text(
            0.5,
            0.5,
            "no link traffic modelled\n(one chip, or no collective in this plan)",
            ha="center",
            va="center",
            transform=axis.transAxes,
        )
        axis.set_axis_off()
    else:
        image = axis.imshow(grid, cmap="viridis", vmin=0, vmax=max(100.0 if grid.max() > 50 else grid.max(), 1e-9))
        colourbar = figure.colorbar(image, ax=axis)
        colourbar.set_label("busiest link busy (% of step)")
        if rows * cols <= 100:
            for (row, col), value in np.ndenumerate(grid):
                axis.text(
                    col,
                    row,
                    f"{value:.2g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value < grid.max() * 0.6 else "black",
                )
        axis.set_xticks(range(cols))
        axis.set_yticks(range(rows))
        axis.set_xlabel("mesh column")
        axis.set_ylabel("mesh row")
    algorithm = report.communication.all_reduce_algorithm if report.communication is not None else "none"
    axis.set_title(
        f"{report.workload}: busiest-link utilization, {report.chip} {report.mesh}\ngradient all-reduce: {algorithm}",
        fontsize=9,
    )
    return figure


def replica_ops(workload: Any, system: System, precision: Any) -> tuple[OpPoint, ...]:
    """The ops of one replica with their simulated times (``hwmodel.ops.cost_model.step_op_costs``)."""
    from hwmodel.ops.cost_model import chip_table, step_op_costs

    costs = step_op_costs(workload, system.chip, precision, chip_table(system.chip, None))
    return tuple(
        OpPoint(
            flops=float(costs.flops[index]),
            bytes_moved=float(op.bytes_read + op.bytes_written),
            time_s=float(costs.time_s[index]),
            phase=op.phase,
        )
        for index, op in enumerate(workload.ops)
    )
