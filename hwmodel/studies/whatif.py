"""What-if studies: which hardware change buys the most, and how throughput scales with the mesh.

Three studies, all built on :func:`hwmodel.step.simulate` and plain data (no torch):

* :func:`sensitivity`: improve one hardware parameter at a time by a factor (2x FLOP/s, 2x link
  bandwidth, half the hop latency...) and rank the parameters by the step-time speedup each buys.
  Each variant is the baseline with one field changed through :func:`dataclasses.replace`.
* :func:`scaling_curve`: throughput and scaling efficiency over a list of meshes, at a fixed global
  batch (strong scaling) or a fixed per-chip batch (weak scaling).
* :func:`compare_systems`: the same network on several systems (a Dojo tile, 8-GPU nodes) side by
  side, at a fixed per-chip batch.

Units: seconds, samples/s, FLOP/s. Speedup is ``baseline step time / variant step time`` (> 1 is
faster). Scaling efficiency is samples/s per chip relative to the smallest mesh that ran:
``(samples_per_s / chips) / (samples_per_s_ref / chips_ref)``; 1.0 is perfect scaling.

Not modelled: parameters that the simulator does not read cannot move a step (for instance the
on-chip network inside a D1); a variant changes one parameter and leaves every efficiency as
calibrated for the baseline hardware.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from hwmodel.errors import HwModelError, PlanError, SpecError
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.search.auto import simulate
from hwmodel.search.plans import Plan
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import Mesh
from hwmodel.spec.precision import MIXED_BF16, Precision
from hwmodel.spec.presets import get_preset, make_system
from hwmodel.spec.system import System
from hwmodel.step.report import Report
from hwmodel.step.workload import Workload, WorkloadSource
from hwmodel.studies.ingest import DataFeed

DEFAULT_FACTOR = 2.0
WorkloadAt = Callable[[int], Workload]
"""Gives the captured step of one replica at a per-replica batch size."""


@dataclass(frozen=True, kw_only=True)
class Hardware:
    """What a knob may change: the system and, optionally, the data feed that ingests its samples."""

    system: System
    feed: DataFeed | None = None


def _scale_flops(hardware: Hardware, factor: float) -> Hardware:
    chip = hardware.system.chip
    chip = replace(
        chip,
        matrix_bf16_flops_per_s=chip.matrix_bf16_flops_per_s * factor,
        matrix_fp32_flops_per_s=chip.matrix_fp32_flops_per_s * factor,
        vector_flops_per_s=chip.vector_flops_per_s * factor,
    )
    return replace(hardware, system=replace(hardware.system, chip=chip))


def _scale_memory_capacity(hardware: Hardware, factor: float) -> Hardware:
    chip = replace(hardware.system.chip, local_memory_bytes=hardware.system.chip.local_memory_bytes * factor)
    return replace(hardware, system=replace(hardware.system, chip=chip))


def _scale_memory_bandwidth(hardware: Hardware, factor: float) -> Hardware:
    chip = hardware.system.chip
    chip = replace(
        chip,
        local_memory_read_bytes_per_s=chip.local_memory_read_bytes_per_s * factor,
        local_memory_write_bytes_per_s=chip.local_memory_write_bytes_per_s * factor,
    )
    return replace(hardware, system=replace(hardware.system, chip=chip))


def _with_fabric(hardware: Hardware, fabric: FabricSpec) -> Hardware:
    return replace(hardware, system=replace(hardware.system, fabric=fabric))


def _scale_link(hardware: Hardware, factor: float) -> Hardware:
    fabric = hardware.system.fabric
    return _with_fabric(hardware, replace(fabric, link_bytes_per_s=fabric.link_bytes_per_s * factor))


def _scale_inter_tile_link(hardware: Hardware, factor: float) -> Hardware:
    fabric = hardware.system.fabric
    return _with_fabric(
        hardware, replace(fabric, inter_tile_link_bytes_per_s=fabric.inter_tile_link_bytes_per_s * factor)
    )


def _scale_latency(hardware: Hardware, factor: float) -> Hardware:
    fabric = hardware.system.fabric
    faster = replace(
        fabric,
        hop_latency_s=fabric.hop_latency_s / factor,
        inter_tile_hop_latency_s=fabric.inter_tile_hop_latency_s / factor,
        collective_step_latency_s=fabric.collective_step_latency_s / factor,
    )
    return _with_fabric(hardware, faster)


def _scale_op_overhead(hardware: Hardware, factor: float) -> Hardware:
    chip = replace(hardware.system.chip, op_overhead_s=hardware.system.chip.op_overhead_s / factor)
    return replace(hardware, system=replace(hardware.system, chip=chip))


def _scale_backing_bandwidth(hardware: Hardware, factor: float) -> Hardware:
    fabric = hardware.system.fabric
    bandwidth = fabric.backing_memory_bytes_per_s_per_chip * factor
    return _with_fabric(hardware, replace(fabric, backing_memory_bytes_per_s_per_chip=bandwidth))


def _scale_ingest(hardware: Hardware, factor: float) -> Hardware:
    feed = hardware.feed
    if feed is None:
        return hardware
    path = replace(feed.path, host_bytes_per_s=feed.path.host_bytes_per_s * factor)
    return replace(hardware, feed=replace(feed, path=path))


@dataclass(frozen=True, kw_only=True)
class Knob:
    """One hardware parameter a what-if study can improve.

    ``improve(hardware, factor)`` returns the hardware with the parameter made ``factor`` times
    better: rates multiplied, latencies divided. ``label`` may name the chip's local memory kind
    as ``{memory}`` (SRAM on a D1, HBM on a GPU) and the fabric's group of chips as ``{group}``
    (a Dojo tile, a GPU node behind one switch).
    """

    name: str
    label: str
    improve: Callable[[Hardware, float], Hardware]
    lowers: bool = False
    """True for a parameter that improves by going down (latency): printed as ``1/2x``."""
    applies: Callable[[Hardware], bool] = lambda hardware: True

    def describe(self, hardware: Hardware) -> str:
        """The label with the chip's memory kind and the fabric's grouping (tile or node) filled in."""
        group = "node" if hardware.system.fabric.topology == "switch" else "tile"
        return self.label.format(memory=hardware.system.chip.local_memory_kind.upper(), group=group)


KNOBS: tuple[Knob, ...] = (
    Knob(name="flops", label="FLOP/s", improve=_scale_flops),
    Knob(name="local_memory_capacity", label="{memory} capacity", improve=_scale_memory_capacity),
    Knob(name="local_memory_bandwidth", label="{memory} bandwidth", improve=_scale_memory_bandwidth),
    Knob(name="link_bandwidth", label="on-{group} link bandwidth", improve=_scale_link),
    Knob(name="inter_tile_link_bandwidth", label="{group}-to-{group} link bandwidth", improve=_scale_inter_tile_link),
    Knob(name="hop_latency", label="hop latency", improve=_scale_latency, lowers=True),
    Knob(name="op_overhead", label="per-op overhead", improve=_scale_op_overhead, lowers=True),
    Knob(
        name="backing_memory_bandwidth",
        label="DIP/HBM bandwidth",
        improve=_scale_backing_bandwidth,
        applies=lambda hardware: hardware.system.fabric.backing_memory_bytes_per_s_per_chip > 0,
    ),
    Knob(
        name="ingest_bandwidth",
        label="host ingest bandwidth",
        improve=_scale_ingest,
        applies=lambda hardware: hardware.feed is not None,
    ),
)
"""Every knob, in the order ties are ranked. Not all apply to every system: a fabric without
backing memory has nothing to scale there, and ingest needs a :class:`~hwmodel.studies.ingest.DataFeed`."""


def knob_names() -> tuple[str, ...]:
    """Names of the built-in knobs, accepted by ``sensitivity(..., knobs=...)``."""
    return tuple(knob.name for knob in KNOBS)


def _select_knobs(choice: Sequence[str | Knob] | None) -> tuple[Knob, ...]:
    """The knobs to try: every one, or those named (in :data:`KNOBS` order), then custom ones."""
    if choice is None:
        return KNOBS
    by_name = {knob.name: knob for knob in KNOBS}
    names = [item for item in choice if isinstance(item, str)]
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise SpecError(f"unknown what-if knob {unknown[0]!r}; known knobs: {', '.join(by_name)}")
    custom = tuple(item for item in choice if isinstance(item, Knob))
    return tuple(knob for knob in KNOBS if knob.name in names) + custom


def _factor_text(factor: float, lowers: bool) -> str:
    text = f"{factor:g}x"
    return f"1/{text}" if lowers else text


@dataclass(frozen=True, kw_only=True)
class SensitivityEntry:
    """The step with one knob improved by ``factor``."""

    knob: str
    label: str
    factor: float
    lowers: bool
    step_time_s: float
    speedup: float
    bound: str

    def describe(self) -> str:
        """``"2x FLOP/s: 1.95x faster (bound compute)"``."""
        return f"{_factor_text(self.factor, self.lowers)} {self.label}: {self.speedup:.2f}x faster (bound {self.bound})"


@dataclass(frozen=True, kw_only=True)
class Sensitivity:
    """The baseline step and every applicable knob, ranked by speedup (largest first)."""

    baseline: Report
    factor: float
    entries: tuple[SensitivityEntry, ...]

    def ranked_lines(self) -> list[str]:
        """One line per knob, best first."""
        return [entry.describe() for entry in self.entries]

    def summary(self, limit: int = 3) -> str:
        """The ``limit`` best knobs on one line, separated by semicolons."""
        return "; ".join(entry.describe() for entry in self.entries[:limit])


def _simulate(
    source: Workload | WorkloadSource,
    hardware: Hardware,
    plan: Plan | None,
    precision: Precision,
    efficiency: EfficiencyTable | None,
) -> Report:
    return simulate(
        source, hardware.system, plan=plan, precision=precision, efficiency=efficiency, ingest=hardware.feed
    )


def _precision_for(system: System, precision: Precision | None) -> Precision:
    """``precision``, or by default the one the chip's preset trains in (BF16 mixed for unknown chips)."""
    if precision is not None:
        return precision
    try:
        return get_preset(system.chip.name).precision
    except SpecError:
        return MIXED_BF16


def sensitivity(
    source: Workload | WorkloadSource,
    system: System,
    *,
    factor: float = DEFAULT_FACTOR,
    knobs: Sequence[str | Knob] | None = None,
    feed: DataFeed | None = None,
    plan: Plan | None = None,
    precision: Precision | None = None,
    efficiency: EfficiencyTable | None = None,
) -> Sensitivity:
    """Step-time speedup from improving each hardware parameter by ``factor``, ranked.

    ``knobs`` names knobs of :data:`KNOBS` and may add custom :class:`Knob` objects (a combined
    change, say). ``precision`` defaults to the chip preset's. The efficiency table is the
    baseline chip's for every variant. Ties keep the order of the knobs.
    """
    if not factor > 1:
        raise SpecError(f"what-if factor must be > 1 (an improvement), got {factor}")
    hardware = Hardware(system=system, feed=feed)
    precision = _precision_for(system, precision)
    baseline = _simulate(source, hardware, plan, precision, efficiency)
    entries = []
    for knob in _select_knobs(knobs):
        if not knob.applies(hardware):
            continue
        variant = _simulate(source, knob.improve(hardware, factor), plan, precision, efficiency)
        entries.append(
            SensitivityEntry(
                knob=knob.name,
                label=knob.describe(hardware),
                factor=factor,
                lowers=knob.lowers,
                step_time_s=variant.step_time_s,
                speedup=baseline.step_time_s / variant.step_time_s,
                bound=variant.bound,
            )
        )
    ranked = sorted(enumerate(entries), key=lambda item: (-item[1].speedup, item[0]))
    return Sensitivity(baseline=baseline, factor=factor, entries=tuple(entry for _, entry in ranked))


_PLAN_DEGREES = {"dp": "data_parallel", "tp": "tensor_parallel", "pp": "pipeline_parallel", "mb": "micro_batches"}
_PLAN_PART = re.compile(r"^(dp|tp|pp|mb)=(\d+)$")


def plan_of(report: Report) -> Plan:
    """The plan a report was simulated under, read back from ``Report.plan`` (``str(Plan)``).

    Lets a what-if study rerun a step under the plan the simulator used (or chose, for
    ``plan="auto"``) with only the report at hand.

    >>> from hwmodel.search.plans import Plan
    >>> str(Plan(data_parallel=5, pipeline_parallel=5, micro_batches=8))
    'dp=5 pp=5 mb=8'
    >>> _plan_from_text("dp=5 pp=5 mb=8")
    Plan(data_parallel=5, tensor_parallel=1, pipeline_parallel=5, micro_batches=8)
    """
    return _plan_from_text(report.plan)


def _plan_from_text(text: str) -> Plan:
    degrees: dict[str, int] = {}
    for part in text.split():
        match = _PLAN_PART.match(part)
        if match is None:
            raise PlanError(f"cannot read the plan {text!r}: expected parts like dp=25 tp=5 pp=2 mb=8")
        degrees[_PLAN_DEGREES[match.group(1)]] = int(match.group(2))
    if "data_parallel" not in degrees:
        raise PlanError(f"cannot read the plan {text!r}: it names no dp= degree")
    return Plan(**degrees)


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
                feed = feed_for(system) if feed_for else None
                hardware = Hardware(system=system, feed=feed)
                report = _simulate(workload, hardware, None, _precision_for(system, precision), efficiency)
            except HwModelError as error:
                reason = str(error)
        scaling_efficiency = None
        if report is not None:
            if reference is None:
                reference = (report.samples_per_s, chips)
            scaling_efficiency = (report.samples_per_s / chips) / (reference[0] / reference[1])
        points.append(
            ScalingPoint(
                label=label,
                mesh=str(mesh),
                num_chips=chips,
                global_batch=global_batch,
                per_chip_batch=per_chip,
                report=report,
                reason=reason,
                efficiency=scaling_efficiency,
            )
        )
    return ScalingCurve(mode=mode, chip=chip, workload=name, points=tuple(points))


@dataclass(frozen=True, kw_only=True)
class ComparisonRow:
    """One system of a side-by-side comparison; ``report`` is None when the step cannot run."""

    label: str
    system: System
    per_chip_batch: int
    report: Report | None
    reason: str = ""

    @property
    def samples_per_s_per_chip(self) -> float | None:
        """Throughput per chip (a D1, a GPU), or None."""
        return None if self.report is None else self.report.samples_per_s / self.system.num_chips


def compare_systems(
    workload_at: WorkloadAt,
    systems: Sequence[tuple[str, System]],
    *,
    per_chip_batch: int,
    feed_for: Callable[[System], DataFeed | None] | None = None,
    precision: Precision | None = None,
    efficiency: EfficiencyTable | None = None,
) -> tuple[ComparisonRow, ...]:
    """The same step, data parallel at ``per_chip_batch`` samples per chip, on each system.

    ``efficiency`` overrides every system's calibrated table and ``precision`` every preset's
    training precision (normally both left None, so each chip uses its own).
    """
    if per_chip_batch < 1:
        raise SpecError(f"per-chip batch must be >= 1, got {per_chip_batch}")
    rows = []
    for label, system in systems:
        try:
            feed = feed_for(system) if feed_for else None
            report = _simulate(
                workload_at(per_chip_batch),
                Hardware(system=system, feed=feed),
                None,
                _precision_for(system, precision),
                efficiency,
            )
            rows.append(ComparisonRow(label=label, system=system, per_chip_batch=per_chip_batch, report=report))
        except HwModelError as error:
            rows.append(
                ComparisonRow(label=label, system=system, per_chip_batch=per_chip_batch, report=None, reason=str(error))
            )
    return tuple(rows)
