"""The report stage of a simulated step: the step time, its breakdown and bound, and the report.

The step is the compute makespan, plus gradient communication not hidden behind it, plus the
optimizer, plus the memory remedy (spill and recompute, not overlapped), plus the part of the
ingest (prefetched during the step, when a data feed is modelled) that the step does not hide.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

from hwmodel.collectives.linkloads import link_loads
from hwmodel.ops.classes.registry import op_classes
from hwmodel.ops.cost import ordered_sum
from hwmodel.ops.cost_model import cost_model_section
from hwmodel.ops.matrix import class_indices
from hwmodel.search.plans import GroupShape
from hwmodel.spec.chip import VECTOR_RATE_LABEL, ChipSpec
from hwmodel.step import sections
from hwmodel.step.confidence import step_confidence
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.intervals import memory_intervals
from hwmodel.step.op_times import OpTimes, batchnorm_mask
from hwmodel.step.placement import MemoryFit, StagePlacement
from hwmodel.step.report import Report
from hwmodel.step.resolve import StepContext
from hwmodel.step.schedule import StepSchedule
from hwmodel.step.timeline import Timeline
from hwmodel.step.workload import Workload
from hwmodel.studies.ingest import ingest

FloatArray = npt.NDArray[np.float64]
TOP_ENTRIES = 10


def step_parts(
    context: StepContext, schedule: StepSchedule, fit: MemoryFit
) -> tuple[dict[str, float], float, sections.IngestSection | None]:
    """The disjoint parts of the step (seconds, by breakdown name), its time, and the ingest section."""
    parts = dict(schedule.parts)
    parts["communication"] = schedule.exposed_s
    parts["spill"] = fit.memory.spill_s
    parts["recompute"] = fit.memory.recompute_s
    parts["pipeline_bubble"] = schedule.bubble_s
    total = schedule.compute_end_s + schedule.exposed_s + schedule.optimizer_s + fit.remedy_s
    feed = context.options.ingest
    if feed is None:
        return parts, total, None
    cost = ingest(feed, context.global_batch)
    hidden = max(0.0, cost.time_s - total)
    parts["ingest"] = hidden
    section = sections.IngestSection(
        time_s=cost.time_s, bytes_per_step=cost.bytes_per_step, bound=cost.bound, exposed_s=hidden
    )
    return parts, total + hidden, section


def breakdown_of(parts: dict[str, float]) -> sections.TimeBreakdown:
    """The report's breakdown section of :func:`step_parts`' parts."""
    return sections.TimeBreakdown(
        compute_s=parts["compute"],
        memory_s=parts["memory"],
        overhead_s=parts["overhead"],
        communication_s=parts["communication"],
        spill_s=parts["spill"],
        recompute_s=parts["recompute"],
        tensor_parallel_s=parts["tensor_parallel"],
        batchnorm_sync_s=parts["batchnorm_sync"],
        pipeline_bubble_s=parts["pipeline_bubble"],
        ingest_s=parts.get("ingest"),
    )


HARDWARE_BOUNDS = {
    "compute": "compute",
    "overhead": "latency",
    "communication": "link",
    "spill": "hbm",
    "recompute": "compute",
    "tensor_parallel": "link",
    "batchnorm_sync": "latency",
    "pipeline_bubble": "pipeline",
}
"""The bound each part of the step names; ``memory`` names the chip's local memory and ``ingest``
the ingest section's bound."""


def bound_of(parts: dict[str, float], chip: ChipSpec, ingest_section: sections.IngestSection | None) -> str:
    """The largest part of the step in hardware terms (ties: the later part name)."""
    largest = max((seconds, part) for part, seconds in parts.items())[1]
    if largest == "memory":
        return chip.local_memory_kind
    if largest == "ingest":
        return ingest_section.bound if ingest_section is not None else "ingest"
    return HARDWARE_BOUNDS[largest]


def top_totals(names: tuple[str, ...], index: npt.NDArray[np.int64], time_s: FloatArray) -> list[tuple[str, float]]:
    """The :data:`TOP_ENTRIES` largest totals by name (ties: first seen first)."""
    totals = np.bincount(index, weights=time_s, minlength=len(names))
    order = np.argsort(-totals, kind="stable")[:TOP_ENTRIES]
    return [(names[i], total) for i, total in zip(order.tolist(), totals[order].tolist(), strict=True) if total > 0]


def top_entries(
    times: OpTimes, what: str, names: tuple[str, ...], index: npt.NDArray[np.int64]
) -> tuple[tuple[str, float], ...]:
    """:func:`top_totals` of the busy seconds of ``times`` by ``what`` (modules or ops), kept per op times."""
    return WORKLOAD_CACHE.get(times, ("top", what), lambda: tuple(top_totals(names, index, times.busy_s)))


@cache
def describe_group(group: GroupShape) -> str:
    """``RxC``, with `` stride RxC`` for a strided group."""
    text = f"{group.rows}x{group.cols}"
    if group.row_stride > 1 or group.col_stride > 1:
        text += f" stride {group.row_stride}x{group.col_stride}"
    return text


def unmodeled_ops(workload: Workload) -> dict[str, int]:
    """Op name -> count of the ops without a FLOP formula."""
    return dict(WORKLOAD_CACHE.get(workload, "unmodeled_ops", lambda: workload.unmodeled_ops))


def phase_times(context: StepContext, placement: StagePlacement, schedule: StepSchedule) -> sections.PhaseTimes:
    """Seconds per phase of the critical chip: the busiest stage's micro-batches under pipelining."""
    if context.single_stage:

        def build() -> sections.PhaseTimes:
            row = placement.per_stage_phase_s[0]
            return sections.PhaseTimes(forward_s=float(row[0]), backward_s=float(row[1]), optimizer_s=float(row[2]))

        return WORKLOAD_CACHE.get(placement, "phase_times", build)
    micro_batches, busiest = context.plan.micro_batches, schedule.busiest_stage
    return sections.PhaseTimes(
        forward_s=micro_batches * float(placement.forward_s[busiest]),
        backward_s=micro_batches * float(placement.backward_s[busiest]),
        optimizer_s=schedule.optimizer_s,
    )


def phase_flops(context: StepContext) -> sections.PhaseFlops:
    """FLOPs of the whole step (every replica and micro-batch) per phase.

    Each micro-batch counts its forward and backward FLOPs (``dp x m`` times one micro-batch's
    when the batch splits evenly; under an uneven split the smaller micro-batches count theirs);
    the optimizer steps once per replica, whatever its micro-batch count.
    """
    split, workload = context.split, context.workload
    replicas = context.plan.data_parallel
    if split is None:
        splits = replicas * context.plan.micro_batches

        def even() -> sections.PhaseFlops:
            by_phase = workload.flops_by_phase
            return sections.PhaseFlops(
                forward_flops=by_phase["forward"] * splits,
                backward_flops=by_phase["backward"] * splits,
                optimizer_flops=by_phase["optimizer"] * replicas,
            )

        return WORKLOAD_CACHE.get(workload, ("phase_flops", splits, replicas), even)
    by_phase = workload.flops_by_phase
    smaller = context.smaller_workload.flops_by_phase if context.smaller_workload is not None else None
    large, small = split.largest_micro_batch_count, split.smallest_micro_batch_count

    def total(phase: str) -> float:
        rest = smaller[phase] if smaller is not None else 0.0
        return by_phase[phase] * large + rest * small

    return sections.PhaseFlops(
        forward_flops=total("forward"),
        backward_flops=total("backward"),
        optimizer_flops=by_phase["optimizer"] * replicas,
    )


def memory_strategy(fit: MemoryFit) -> sections.MemoryStrategy:
    """How the reported stage's working set fits: the remedy, its bytes and seconds (kept per fit)."""
    return WORKLOAD_CACHE.get(fit, "memory_strategy", lambda: _memory_strategy(fit))


def _memory_strategy(fit: MemoryFit) -> sections.MemoryStrategy:
    memory = fit.memory
    return sections.MemoryStrategy(
        strategy=memory.strategy,
        stage=fit.stage,
        working_set_bytes=memory.total_bytes,
        local_capacity_bytes=memory.local_capacity_bytes,
        spilled_bytes=memory.spilled_bytes,
        spill_s=memory.spill_s,
        recomputed_bytes=memory.recomputed_bytes,
        recompute_fraction=memory.recompute_fraction,
        recompute_s=memory.recompute_s,
    )


def memory_bytes(fit: MemoryFit) -> sections.MemoryBytes:
    """Bytes per chip by category (kept per fit)."""
    return WORKLOAD_CACHE.get(fit, "memory_bytes", lambda: _memory_bytes(fit))


def _memory_bytes(fit: MemoryFit) -> sections.MemoryBytes:
    memory = fit.memory
    return sections.MemoryBytes(
        weights_bytes=memory.weights_bytes,
        gradients_bytes=memory.gradients_bytes,
        optimizer_state_bytes=memory.optimizer_state_bytes,
        buffers_bytes=memory.buffers_bytes,
        activations_peak_bytes=memory.activations_peak_bytes,
    )


def communication(context: StepContext, schedule: StepSchedule) -> sections.GradientCommunication:
    """The gradient all-reduce of the step and the groups it runs over."""
    return sections.GradientCommunication(
        gradient_bytes=context.gradient_bytes,
        buckets=schedule.buckets,
        all_reduce_algorithm=schedule.all_reduce_algorithm,
        all_reduce_total_s=schedule.all_reduce_total_s,
        exposed_s=schedule.exposed_s,
        data_parallel_group=describe_group(context.layout.data_group),
        tensor_parallel_group=describe_group(context.layout.tensor_group),
    )


def critical_collectives(context: StepContext, times: OpTimes, schedule: StepSchedule) -> tuple[int, int]:
    """Tensor-parallel and batch-norm collectives of one micro-batch on the critical chip (every op
    without pipelining: kept per op times)."""

    def count() -> tuple[int, int]:
        critical = schedule.critical
        tensor = int(np.count_nonzero(times.tensor_parallel_s[critical]))
        return tensor, int(np.count_nonzero(times.batchnorm_s[critical]))

    if context.single_stage:
        return WORKLOAD_CACHE.get(times, "critical_collectives", count)
    return count()


def collective_sections(
    context: StepContext, times: OpTimes, schedule: StepSchedule, breakdown: sections.TimeBreakdown
) -> tuple[sections.TensorParallelSection | None, sections.BatchnormSync]:
    """The tensor-parallel section (None without tensor parallelism) and the batch-norm one (kept
    per op times without pipelining, where every figure they hold comes from the op times)."""
    plan = context.plan

    def build() -> tuple[sections.TensorParallelSection | None, sections.BatchnormSync]:
        tensor_collectives, batchnorm_collectives = critical_collectives(context, times, schedule)
        tensor_parallel = None
        if plan.tensor_parallel > 1:
            tensor_parallel = sections.TensorParallelSection(
                degree=plan.tensor_parallel,
                collectives=tensor_collectives * plan.micro_batches,
                blocking_s=breakdown.tensor_parallel_s,
                parameter_fraction=context.tp_parameter_fraction,
            )
        batchnorm = sections.BatchnormSync(
            enabled=bool(context.sync_batchnorm and plan.data_parallel > 1),
            norm_ops=batchnorm_count(context.workload),
            all_reduces=batchnorm_collectives * plan.micro_batches,
            blocking_s=breakdown.batchnorm_sync_s,
        )
        return tensor_parallel, batchnorm

    if not context.single_stage:
        return build()
    enabled = bool(context.sync_batchnorm and plan.data_parallel > 1)
    return WORKLOAD_CACHE.get(times, ("collective_sections", plan.tensor_parallel, enabled), build)


def batchnorm_count(workload: Workload) -> int:
    """Training batch-norm ops of ``workload``."""
    return WORKLOAD_CACHE.get(workload, "batchnorm_count", lambda: int(batchnorm_mask(workload).sum()))


def classes_present(workload: Workload, chip: ChipSpec) -> tuple[tuple[str, bool], ...]:
    """The op classes ``workload``'s ops fall into on ``chip``, in class order, each with whether
    it runs on the matrix units."""
    registry = op_classes()
    present = np.unique(class_indices(workload, chip)).tolist()
    return tuple((registry.names[index], registry.names[index] in registry.matrix) for index in present)


def op_class_rates(context: StepContext) -> sections.OpClassRates:
    """Per op class of the step, the peak its arithmetic runs at under the step's precision (kept
    per workload, class registry and rates: a plan search asks for it thousands of times)."""
    chip = context.system.chip
    matrix = chip.matrix_rate_for(context.precision)
    vector = chip.vector_flops_per_s

    def build() -> sections.OpClassRates:
        rates = {
            True: sections.ClassRate(rate=matrix[0], flops_per_s=matrix[1]),
            False: sections.ClassRate(rate=VECTOR_RATE_LABEL, flops_per_s=vector),
        }
        classes = classes_present(context.workload, chip)
        return sections.OpClassRates(classes=tuple((name, rates[is_matrix]) for name, is_matrix in classes))

    key = ("op_class_rates", chip.gemm_rates is None, op_classes().version, matrix, vector)
    return WORKLOAD_CACHE.get(context.workload, key, build)


def confidence_of(context: StepContext) -> sections.Confidence:
    """The step's error band (:mod:`hwmodel.step.confidence`): by the step's kind (inference or
    training), precision and execution."""
    kind = "inf" if context.workload.mode == "inference" else "train"
    precision = context.precision
    return step_confidence(
        context.system.chip, precision.compute_dtype, precision.tf32_matmuls, context.execution, kind
    )


def build_report(
    context: StepContext, times: OpTimes, placement: StagePlacement, fit: MemoryFit, schedule: StepSchedule
) -> Report:
    """The report of one simulated step (link utilisation is added with the timeline)."""
    parts, total_s, ingest_section = step_parts(context, schedule, fit)
    breakdown = breakdown_of(parts)
    system, arrays = context.system, context.arrays
    flops = phase_flops(context)
    flops_total = ordered_sum(np.array([flops.forward_flops, flops.backward_flops, flops.optimizer_flops]))
    peak = system.peak_bf16_flops_per_s
    achieved = flops_total / total_s if total_s > 0 else 0.0
    tensor_parallel, batchnorm = collective_sections(context, times, schedule, breakdown)
    return Report(
        workload=context.workload.name,
        chip=system.chip.name,
        mesh=str(system.mesh),
        num_chips=system.num_chips,
        plan=str(context.plan),
        precision=context.precision.compute_dtype,
        global_batch=context.global_batch,
        step_time_s=total_s,
        samples_per_s=context.global_batch / total_s if total_s > 0 else 0.0,
        flops_total=flops_total,
        flops_by_phase=flops,
        achieved_flops_per_s=achieved,
        peak_flops_per_s=peak,
        mfu=achieved / peak,
        bound=bound_of(parts, system.chip, ingest_section),
        breakdown_s=breakdown,
        phase_time_s=phase_times(context, placement, schedule),
        sram_peak_bytes_per_chip=fit.local_peak_bytes,
        memory_bytes_per_chip=memory_bytes(fit),
        spilled_bytes_per_chip=fit.memory.spilled_bytes,
        communication=communication(context, schedule),
        unmodeled_ops=unmodeled_ops(context.workload),
        top_modules=list(top_entries(times, "modules", arrays.module_names, arrays.module_index)),
        top_ops=list(top_entries(times, "ops", arrays.op_names, arrays.op_name_index)),
        parameter_count=context.memory.parameter_count,
        memory_strategy=memory_strategy(fit),
        pipeline=schedule.pipeline,
        tensor_parallel=tensor_parallel,
        batchnorm_sync=batchnorm,
        ingest=ingest_section,
        op_class_rates=op_class_rates(context),
        op_cost_model=cost_model_section(system.chip, context.table, context.workload, context.execution),
        batch_split=context.split,
        confidence=confidence_of(context),
    )


def link_utilization(context: StepContext, step_time_s: float) -> list[list[float]]:
    """Per chip, the busy fraction of its busiest link over the step from the gradient all-reduce.

    Mapped (with :mod:`hwmodel.collectives.linkloads`) when the data-parallel group is the whole
    mesh of a ``mesh2d`` fabric; empty otherwise. Built with the timeline only: mapping a large
    mesh costs more than simulating the step.
    """
    system, group = context.system, context.layout.data_group
    whole = group.rows == system.mesh.rows and group.cols == system.mesh.cols
    if not whole or system.fabric.topology != "mesh2d" or step_time_s <= 0 or system.num_chips == 1:
        return []
    loads = link_loads("all_reduce", system, context.gradient_bytes)
    busy = np.asarray(loads.busy_s_per_link).max(axis=2) / step_time_s
    return [[float(value) for value in row] for row in busy]


def build_timeline(context: StepContext, schedule: StepSchedule, fit: MemoryFit, report: Report) -> Timeline:
    """The step's timeline: the schedule's intervals, then the memory remedy after the step."""
    pp, num_chips = context.plan.pipeline_parallel, context.system.num_chips
    track = "chip/memory" if context.single_stage else f"stage {fit.stage}/memory"
    ingest_s = report.breakdown_s.ingest_s or 0.0
    start = report.step_time_s - fit.remedy_s - ingest_s
    intervals = [*schedule.intervals, *memory_intervals(track, start, fit.memory)]
    classes = {"chip": num_chips} if context.single_stage else {f"stage {s}": num_chips // pp for s in range(pp)}
    return Timeline(step_time_s=report.step_time_s, intervals=tuple(intervals), classes=classes)
