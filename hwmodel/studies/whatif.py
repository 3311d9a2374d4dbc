"""What-if hardware: the knobs a study may turn, and the same step on several systems.

A :class:`Knob` improves one hardware parameter by a factor (rates multiplied, latencies divided)
through :func:`dataclasses.replace`; :func:`~hwmodel.studies.sensitivity.sensitivity` ranks them and
:func:`~hwmodel.studies.scaling.scaling_curve` sweeps meshes. :func:`compare_systems` runs the same
network on several systems (a Dojo tile, 8-GPU nodes) side by side, at a fixed per-chip batch.

Units: seconds, samples/s, FLOP/s.

Not modelled: parameters that the simulator does not read cannot move a step (for instance the
on-chip network inside a D1); a variant changes one parameter and leaves every efficiency as
calibrated for the baseline hardware.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from hwmodel.errors import HwModelError, SpecError
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.search.auto import simulate
from hwmodel.search.plans import Plan
from hwmodel.spec.precision import Precision, parse_precision
from hwmodel.spec.system import System
from hwmodel.step.report import Report
from hwmodel.step.workload import Workload, WorkloadSource
from hwmodel.studies.ingest import DataFeed

WorkloadAt = Callable[[int], Workload]
"""Gives the captured step of one replica at a per-replica batch size."""


@dataclass(frozen=True, kw_only=True)
class Hardware:
    """What a knob may change: the system and, optionally, the data feed that ingests its samples."""

    system: System
    feed: DataFeed | None = None


def _chip_rates(hardware: Hardware, factor: float, *names: str) -> Hardware:
    """The hardware with the chip's fields ``names`` multiplied by ``factor``."""
    chip = hardware.system.chip
    chip = replace(chip, **{name: getattr(chip, name) * factor for name in names})
    return replace(hardware, system=replace(hardware.system, chip=chip))


def _fabric_rates(hardware: Hardware, factor: float, *names: str) -> Hardware:
    """The hardware with the fabric's fields ``names`` multiplied by ``factor``."""
    fabric = hardware.system.fabric
    fabric = replace(fabric, **{name: getattr(fabric, name) * factor for name in names})
    return replace(hardware, system=replace(hardware.system, fabric=fabric))


def _scale_flops(hardware: Hardware, factor: float) -> Hardware:
    rates = ("matrix_bf16_flops_per_s", "matrix_tf32_flops_per_s", "matrix_fp32_flops_per_s", "vector_flops_per_s")
    return _chip_rates(hardware, factor, *rates)


def _scale_memory_capacity(hardware: Hardware, factor: float) -> Hardware:
    return _chip_rates(hardware, factor, "local_memory_bytes")


def _scale_memory_bandwidth(hardware: Hardware, factor: float) -> Hardware:
    return _chip_rates(hardware, factor, "local_memory_read_bytes_per_s", "local_memory_write_bytes_per_s")


def _scale_link(hardware: Hardware, factor: float) -> Hardware:
    return _fabric_rates(hardware, factor, "link_bytes_per_s")


def _scale_inter_tile_link(hardware: Hardware, factor: float) -> Hardware:
    return _fabric_rates(hardware, factor, "inter_tile_link_bytes_per_s")


def _scale_latency(hardware: Hardware, factor: float) -> Hardware:
    fabric = hardware.system.fabric
    faster = replace(
        fabric,
        hop_latency_s=fabric.hop_latency_s / factor,
        inter_tile_hop_latency_s=fabric.inter_tile_hop_latency_s / factor,
        collective_step_latency_s=fabric.collective_step_latency_s / factor,
    )
    return replace(hardware, system=replace(hardware.system, fabric=faster))


def _scale_op_overhead(hardware: Hardware, factor: float) -> Hardware:
    chip = replace(hardware.system.chip, op_overhead_s=hardware.system.chip.op_overhead_s / factor)
    return replace(hardware, system=replace(hardware.system, chip=chip))


def _scale_backing_bandwidth(hardware: Hardware, factor: float) -> Hardware:
    return _fabric_rates(hardware, factor, "backing_memory_bytes_per_s_per_chip")


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


def select_knobs(choice: Sequence[str | Knob] | None) -> tuple[Knob, ...]:
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


def simulate_on(
    source: Workload | WorkloadSource,
    hardware: Hardware,
    plan: Plan | None,
    precision: Precision,
    efficiency: EfficiencyTable | None,
    execution: str | None = None,
) -> Report:
    """One step of ``source`` on ``hardware`` (its system, and its data feed if any); ``execution``
    None runs the chip's default (``compiled`` on a D1, ``eager`` on a GPU)."""
    return simulate(
        source,
        hardware.system,
        plan=plan,
        precision=precision,
        efficiency=efficiency,
        ingest=hardware.feed,
        execution=execution,
    )


def precision_for(system: System, precision: Precision | None) -> Precision:
    """``precision``, or by default the one the chip trains in (its ``default_precision``)."""
    if precision is not None:
        return precision
    return parse_precision(system.chip.default_precision)


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
    execution: str | None = None,
) -> tuple[ComparisonRow, ...]:
    """The same step, data parallel at ``per_chip_batch`` samples per chip, on each system.

    ``efficiency`` overrides every system's calibrated table, ``precision`` every preset's
    training precision and ``execution`` every chip's default execution mode (normally all left
    None, so each chip runs as it would: a D1 compiled, a GPU eager; each report says which).
    """
    if per_chip_batch < 1:
        raise SpecError(f"per-chip batch must be >= 1, got {per_chip_batch}")
    rows = []
    for label, system in systems:
        try:
            feed = feed_for(system) if feed_for else None
            report = simulate_on(
                workload_at(per_chip_batch),
                Hardware(system=system, feed=feed),
                None,
                precision_for(system, precision),
                efficiency,
                execution,
            )
            rows.append(ComparisonRow(label=label, system=system, per_chip_batch=per_chip_batch, report=report))
        except HwModelError as error:
            rows.append(
                ComparisonRow(label=label, system=system, per_chip_batch=per_chip_batch, report=None, reason=str(error))
            )
    return tuple(rows)


def plan_of(report: Report) -> Plan:
    """The plan a report was simulated under, read from ``Report.plan`` (a report's JSON text).

    Lets a what-if study rerun a step under the plan the simulator used (or chose, for
    ``plan="auto"``) with only the report at hand.
    """
    return Plan.parse(report.plan)
