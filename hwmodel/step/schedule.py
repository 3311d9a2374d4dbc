"""The schedule stage of a simulated step: when the ops and the gradient all-reduces run.

Without pipelining (one stage, one micro-batch), one chip runs its ops in capture order and
all-reduces its gradients over the data-parallel group in buckets (PyTorch DDP, 25 MB by default)
in the order the backward pass finishes them, overlapping the rest of it; the optimizer starts
when every bucket is reduced. With pipelining, each stage runs the 1F1B schedule on micro-batches,
activations (and their gradients) cross stage boundaries point to point, and a stage's gradients
are all-reduced once its last backward is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hwmodel.collectives.pricing import group_collective
from hwmodel.ops.cost import ordered_sum
from hwmodel.search.plans import GroupShape
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.intervals import gradient_intervals, op_intervals, pipeline_intervals
from hwmodel.step.op_times import OPTIMIZER, OpTimes, add_parts, op_ends_s, parts
from hwmodel.step.placement import StagePlacement, boundary_bytes
from hwmodel.step.resolve import StepContext
from hwmodel.step.sections import PipelineSection
from hwmodel.step.timeline import Interval, PipelineSchedule, bucket_schedule, one_f_one_b
from hwmodel.step.workload import Workload

FloatArray = npt.NDArray[np.float64]


@dataclass(eq=False, kw_only=True, slots=True)
class StepSchedule:
    """When one step's work runs on a chip of the critical class.

    Attributes:
        compute_end_s: end of the last forward or backward op (the pipeline's makespan).
        exposed_s: gradient all-reduce time beyond it.
        optimizer_s: the optimizer step of the chip (the largest stage's under pipelining).
        bubble_s: time the busiest stage waits (0 without pipelining).
        parts: per-op breakdown parts (compute, memory, overhead, tensor_parallel,
            batchnorm_sync) of the critical chip's ops.
        critical: the ops of the critical chip's forward and backward passes.
        busiest_stage: the stage with the most work (0 without pipelining).
        all_reduce_algorithm / all_reduce_total_s / buckets: the gradient all-reduces.
        pipeline: the pipeline section of the report (None without pipelining).
    """

    compute_end_s: float
    exposed_s: float
    optimizer_s: float
    bubble_s: float
    parts: dict[str, float]
    critical: npt.NDArray[np.bool_]
    busiest_stage: int
    all_reduce_algorithm: str
    all_reduce_total_s: float
    buckets: int
    pipeline: PipelineSection | None = None
    intervals: list[Interval] = field(default_factory=list)


def gradient_buckets(workload: Workload, bytes_per_element: float, bucket_bytes: float) -> list[tuple[int, float]]:
    """(op index after which the bucket is ready, bucket bytes), in backward order.

    Parameters that receive no gradient (unused in the step) are skipped.
    """

    def build() -> list[tuple[int, float]]:
        ready = sorted(
            (p.grad_ready_op, p.numel * bytes_per_element) for p in workload.parameters if p.grad_ready_op >= 0
        )
        buckets: list[tuple[int, float]] = []
        pending_bytes = 0.0
        for op_index, size in ready:
            pending_bytes += size
            if pending_bytes >= bucket_bytes:
                buckets.append((op_index, pending_bytes))
                pending_bytes = 0.0
        if pending_bytes > 0:
            buckets.append((ready[-1][0], pending_bytes))
        return buckets

    return WORKLOAD_CACHE.get(workload, ("gradient_buckets", bytes_per_element, bucket_bytes), build)


def schedule_step(context: StepContext, times: OpTimes, placement: StagePlacement) -> StepSchedule:
    """The data-parallel schedule for one stage and one micro-batch, the pipeline one otherwise."""
    if context.single_stage:
        return data_parallel_schedule(context, times, placement)
    return pipeline_schedule(context, times, placement)


def backward_end_s(context: StepContext, times: OpTimes) -> float:
    """End of the last forward or backward op when a chip runs its ops back to back."""

    def build() -> float:
        not_optimizer = np.flatnonzero(context.arrays.phase_index != OPTIMIZER)
        return float(op_ends_s(times)[not_optimizer[-1]]) if len(not_optimizer) else 0.0

    return WORKLOAD_CACHE.get(times, "backward_end", build)


def every_op(times: OpTimes) -> npt.NDArray[np.bool_]:
    """A read-only mask of every op (the critical chip's ops without pipelining)."""

    def build() -> npt.NDArray[np.bool_]:
        mask = np.ones(len(times.busy_s), dtype=np.bool_)
        mask.flags.writeable = False
        return mask

    return WORKLOAD_CACHE.get(times, "every_op", build)


@dataclass(frozen=True, kw_only=True)
class BucketPrices:
    """The gradient buckets one chip all-reduces: the op after which each is ready, its bytes and
    seconds, their ordered total, and the algorithm of the last."""

    ready_ops: list[int]
    sizes: list[float]
    durations_s: list[float]
    total_s: float
    algorithm: str


def bucket_prices(context: StepContext) -> BucketPrices:
    """:class:`BucketPrices` of ``context``'s step, kept per workload, group and bucket size."""
    precision, system = context.precision, context.system
    group, share = context.layout.data_group, context.tp_parameter_fraction
    bucket_bytes = context.options.bucket_bytes

    def build() -> BucketPrices:
        buckets: list[tuple[int, float]] = []
        if context.plan.data_parallel > 1:
            buckets = gradient_buckets(context.workload, precision.gradient_bytes_per_parameter, bucket_bytes)
        sizes = [size * share for _, size in buckets]
        priced = [group_collective("all_reduce", system, group, size) for size in sizes]
        durations = [price[0] for price in priced]
        return BucketPrices(
            ready_ops=[op for op, _ in buckets],
            sizes=sizes,
            durations_s=durations,
            total_s=ordered_sum(np.array(durations, dtype=np.float64)),
            algorithm=priced[-1][1] if priced else "none",
        )

    key = ("bucket_prices", system.mesh, system.fabric, group, precision, bucket_bytes, share)
    return WORKLOAD_CACHE.get(context.workload, key, build)


def buckets_finish_s(ready_s: list[float], durations_s: list[float]) -> float:
    """When the last bucket is reduced, the buckets running one after another on one stream as
    they become ready (the end of :func:`~hwmodel.step.timeline.bucket_schedule`, same arithmetic)."""
    finish = 0.0
    for ready, duration in zip(ready_s, durations_s, strict=True):
        finish = max(ready, finish) + duration
    return finish


def data_parallel_schedule(context: StepContext, times: OpTimes, placement: StagePlacement) -> StepSchedule:
    """Ops in capture order; gradient buckets all-reduced as the backward pass readies them."""
    ends = op_ends_s(times)
    backward_end = backward_end_s(context, times)
    prices = bucket_prices(context)
    ready = [float(ends[op]) for op in prices.ready_ops]
    exposed = max(0.0, buckets_finish_s(ready, prices.durations_s) - backward_end) if ready else 0.0
    intervals: list[Interval] = []
    if context.keep_timeline:
        durations = np.array(prices.durations_s, dtype=np.float64)
        starts, _ = bucket_schedule(np.array(ready, dtype=np.float64), durations)
        optimizer = context.arrays.phase_index == OPTIMIZER
        intervals.extend(op_intervals(context.workload, times, ends, optimizer, exposed, "chip"))
        intervals.extend(gradient_intervals("chip/data-parallel", starts, durations, prices.sizes))
    return StepSchedule(
        compute_end_s=backward_end,
        exposed_s=exposed,
        optimizer_s=placement.optimizer_s,
        bubble_s=0.0,
        parts=parts(times, None, 1.0),
        critical=every_op(times),
        busiest_stage=0,
        all_reduce_algorithm=prices.algorithm,
        all_reduce_total_s=prices.total_s,
        buckets=len(prices.ready_ops),
        intervals=intervals,
    )


def _transfer(context: StepContext, placement: StagePlacement) -> tuple[float, float]:
    """(bytes, seconds) of the largest activation transfer between neighbouring stages."""
    pp, tp = context.plan.pipeline_parallel, context.plan.tensor_parallel
    boundary = boundary_bytes(context.workload, placement.stage, pp) * (1.0 / tp)
    boundary_dtype = context.precision.activation_scale("float32")
    transfer_bytes = float(boundary.max()) * boundary_dtype if len(boundary) else 0.0
    transfer_s = 0.0
    if pp > 1 and transfer_bytes > 0:
        hops = max(context.layout.pipeline_hops, 1)
        pair = GroupShape(rows=1, cols=2)
        transfer_s = group_collective("point_to_point", context.system, pair, transfer_bytes, hops)[0]
    return transfer_bytes, transfer_s


def _pipeline_timeline(
    placement: StagePlacement,
    schedule: PipelineSchedule,
    transfer_s: float,
    durations: FloatArray,
    stage_gradients: FloatArray,
    exposed_s: float,
) -> list[Interval]:
    """The 1F1B passes and transfers, each stage's gradient all-reduce, then every stage's optimizer."""
    pp = len(durations)
    intervals = pipeline_intervals(schedule.events, transfer_s, pp)
    for s in range(pp):
        if durations[s] > 0:
            track = f"stage {s}/data-parallel"
            sizes = [float(stage_gradients[s])]
            intervals.extend(gradient_intervals(track, [schedule.stage_end_s[s]], [durations[s]], sizes))
    intervals.extend(
        Interval(
            track=f"stage {s}/compute",
            name="optimizer",
            category="optimizer",
            start_s=schedule.makespan_s + exposed_s,
            duration_s=placement.optimizer_s * float(placement.parameter_share[s]),
        )
        for s in range(pp)
    )
    return intervals


@dataclass(eq=False, kw_only=True, slots=True)
class PipelineCore:
    """What a pipelined step is without its gradient all-reduces (which depend on the data-parallel
    group): the transfers, the 1F1B schedule, the busiest stage and its breakdown, the section."""

    transfer_s: float
    schedule: PipelineSchedule
    busiest: int
    critical: npt.NDArray[np.bool_]
    parts: dict[str, float]
    biggest_share: float
    bubble_s: float
    section: PipelineSection


def pipeline_core(context: StepContext, times: OpTimes, placement: StagePlacement) -> PipelineCore:
    """The :class:`PipelineCore` of ``context``'s step (kept per placement, micro-batch count and
    stage distance; built afresh when the timeline's events are asked for)."""
    if context.keep_timeline:
        return _pipeline_core(context, times, placement)
    key = ("pipeline_core", context.plan.micro_batches, context.layout.pipeline_hops)
    return WORKLOAD_CACHE.get(placement, key, lambda: _pipeline_core(context, times, placement))


def _pipeline_core(context: StepContext, times: OpTimes, placement: StagePlacement) -> PipelineCore:
    pp, micro_batches = context.plan.pipeline_parallel, context.plan.micro_batches
    optimizer = context.arrays.phase_index == OPTIMIZER
    forward_s, backward_s = placement.forward_s, placement.backward_s
    transfer_bytes, transfer_s = _transfer(context, placement)
    schedule = one_f_one_b(forward_s, backward_s, transfer_s, micro_batches, keep_events=context.keep_timeline)
    pipeline_s = schedule.makespan_s
    busiest = int(np.argmax(forward_s + backward_s))
    critical = ~optimizer & (placement.stage == busiest)
    breakdown = parts(times, critical, float(micro_batches))
    biggest = float(placement.parameter_share.max())
    add_parts(breakdown, parts(times, optimizer, biggest))
    # never below 0: the makespan and the busiest stage's work are sums taken in different orders
    bubble = max(0.0, pipeline_s - micro_batches * float(forward_s[busiest] + backward_s[busiest]))
    section = PipelineSection(
        stages=pp,
        micro_batches=micro_batches,
        forward_s_per_micro_batch=tuple(forward_s.tolist()),
        backward_s_per_micro_batch=tuple(backward_s.tolist()),
        busiest_stage=busiest,
        transfer_bytes=transfer_bytes,
        transfer_s=transfer_s,
        bubble_s=bubble,
        bubble_fraction=bubble / pipeline_s if pipeline_s > 0 else 0.0,
        ideal_bubble_fraction=(pp - 1) / (micro_batches + pp - 1),
        pipeline_hops=context.layout.pipeline_hops,
    )
    critical.flags.writeable = False
    return PipelineCore(
        transfer_s=transfer_s,
        schedule=schedule,
        busiest=busiest,
        critical=critical,
        parts=breakdown,
        biggest_share=biggest,
        bubble_s=bubble,
        section=section,
    )


def stage_all_reduces(context: StepContext, placement: StagePlacement) -> tuple[FloatArray, FloatArray, str]:
    """Each stage's gradient bytes and all-reduce seconds over the data-parallel group, and the
    algorithm (kept per placement, group and gradient bytes)."""
    group, gradient_bytes = context.layout.data_group, context.gradient_bytes

    def build() -> tuple[FloatArray, FloatArray, str]:
        stage_gradients = gradient_bytes * placement.parameter_share
        priced = [group_collective("all_reduce", context.system, group, float(size)) for size in stage_gradients]
        durations = np.array([price[0] for price in priced], dtype=np.float64)
        algorithm = next((price[1] for price in priced if price[1] != "none"), "none")
        return stage_gradients, durations, algorithm

    return WORKLOAD_CACHE.get(placement, ("stage_all_reduces", group, gradient_bytes), build)


def pipeline_schedule(context: StepContext, times: OpTimes, placement: StagePlacement) -> StepSchedule:
    """1F1B over the stages; each stage's gradients all-reduced after its last backward."""
    core = pipeline_core(context, times, placement)
    stage_gradients, durations, algorithm = stage_all_reduces(context, placement)
    pipeline_s = core.schedule.makespan_s
    finishes = np.array(core.schedule.stage_end_s) + durations
    exposed = max(0.0, float(finishes.max()) - pipeline_s)
    intervals: list[Interval] = []
    if context.keep_timeline:
        intervals = _pipeline_timeline(placement, core.schedule, core.transfer_s, durations, stage_gradients, exposed)
    return StepSchedule(
        compute_end_s=pipeline_s,
        exposed_s=exposed,
        optimizer_s=placement.optimizer_s * core.biggest_share,
        bubble_s=core.bubble_s,
        parts=dict(core.parts),
        critical=core.critical,
        busiest_stage=core.busiest,
        all_reduce_algorithm=algorithm,
        all_reduce_total_s=ordered_sum(durations),
        buckets=context.plan.pipeline_parallel if context.plan.data_parallel > 1 else 0,
        pipeline=core.section,
        intervals=intervals,
    )
