"""Scaling: throughput and scaling efficiency over a list of meshes of one chip.

At a fixed global batch (strong scaling) or a fixed per-chip batch (weak scaling), data parallel.
Scaling efficiency is samples/s per chip relative to the smallest mesh that ran:
``(samples_per_s / chips) / (samples_per_s_ref / chips_ref)``; 1.0 is perfect scaling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hwmodel.errors import HwModelError, SpecError
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.spec.mesh import Mesh
from hwmodel.spec.precision import Precision
from hwmodel.spec.presets import make_system
from hwmodel.spec.system import System
from hwmodel.step.report import Report
from hwmodel.studies.ingest import DataFeed
from hwmodel.studies.whatif import Hardware, WorkloadAt, precision_for, simulate_on

SCALING_MODES = ("strong", "weak")


@dataclass(frozen=True, kw_only=True)
class ScalingPoint:
    """One mesh of a scaling curve; ``report`` is None when the step cannot run there (``reason``)."""

    label: str
    mesh: str
    num_chips: int
    global_batch: int
    per_chip_batch: int
    report: Report | None
    reason: str = ""
    efficiency: float | None = None

    @property
    def samples_per_s(self) -> float | None:
        """Simulated throughput, or None when the step did not run."""
        return None if self.report is None else self.report.samples_per_s


@dataclass(frozen=True, kw_only=True)
class ScalingCurve:
    """Throughput over meshes of one chip, at a fixed global (strong) or per-chip (weak) batch."""

    mode: str
    chip: str
    workload: str
    points: tuple[ScalingPoint, ...]


def _strong_batch(global_batch: int, num_chips: int) -> tuple[int, str]:
    if global_batch % num_chips:
        return 0, f"global batch {global_batch} does not split over {num_chips} chips"
    return global_batch // num_chips, ""


def _efficiency(report: Report | None, chips: int, reference: tuple[float, int] | None) -> float | None:
    """Samples/s per chip against the reference mesh's (None when the step did not run)."""
    if report is None or reference is None:
        return None
    return (report.samples_per_s / chips) / (reference[0] / reference[1])


def scaling_curve(
    workload_at: WorkloadAt,
    chip: str,
    meshes: Sequence[tuple[str, Mesh]],
    *,
    mode: str,
    batch: int,
    feed_for: Callable[[System], DataFeed | None] | None = None,
    precision: Precision | None = None,
    efficiency: EfficiencyTable | None = None,
) -> ScalingCurve:
    """Simulate data-parallel training on each ``(label, mesh)`` of ``chip`` preset chips.

    ``mode="strong"``: ``batch`` is the global batch, split over the chips (a mesh it does not
    divide is skipped with a reason). ``mode="weak"``: ``batch`` is the per-chip batch. A step that
    does not fit a mesh's memory is kept as a point with its reason. ``feed_for(system)`` gives
    the data feed of each system, or None to leave ingest out.

    NB: strong-scaling efficiency can exceed 1 when fewer samples per chip stop a spill to backing
    memory; it is reported as computed, never clamped.
    """
    if mode not in SCALING_MODES:
        raise SpecError(f"scaling mode must be one of {SCALING_MODES}, got {mode!r}")
    if batch < 1:
        raise SpecError(f"scaling batch must be >= 1, got {batch}")
    points = []
    reference: tuple[float, int] | None = None
    name = ""
    for label, mesh in meshes:
        system = make_system(chip, mesh)
        chips = mesh.num_chips
        if mode == "strong":
            per_chip, reason = _strong_batch(batch, chips)
            global_batch = batch
        else:
            per_chip, reason, global_batch = batch, "", batch * chips
        report = None
        if not reason:
            try:
                workload = workload_at(per_chip)
                name = name or workload.name
                hardware = Hardware(system=system, feed=feed_for(system) if feed_for else None)
                report = simulate_on(workload, hardware, None, precision_for(system, precision), efficiency)
            except HwModelError as error:
                reason = str(error)
        if report is not None and reference is None:
            reference = (report.samples_per_s, chips)
        point = ScalingPoint(
            label=label,
            mesh=str(mesh),
            num_chips=chips,
            global_batch=global_batch,
            per_chip_batch=per_chip,
            report=report,
            reason=reason,
            efficiency=_efficiency(report, chips, reference),
        )
        points.append(point)
    return ScalingCurve(mode=mode, chip=chip, workload=name, points=tuple(points))
