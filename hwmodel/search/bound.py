"""Lower bounds on a plan's step time, cheap enough to drop plans that cannot win a search.

Both bounds follow the schedule of :mod:`hwmodel.step.schedule` and leave out only what can add
time (exposed communication, memory remedies, ingest, transfers between stages):

* a chip's compute stream runs its forward and backward ops one after another: without
  pipelining the step is at least their seconds ``FB`` or, if longer, the gradient buckets'
  all-reduces ``AR`` (one stream, every bucket before the optimizer), plus the optimizer ``O``:
  ``max(FB, AR) + O``;
* under a pipeline of ``p`` stages and ``m`` micro-batches, the busiest stage runs ``m`` forward
  and backward passes, and holds at least ``FB / p`` and at least the heaviest module (modules are
  not split across stages); the first micro-batch goes through every stage forward and back,
  crossing ``2 (p - 1)`` stage boundaries, each at least the transfer of the fewest activation
  bytes any cut between modules carries, ``T``: ``max(m B, FB + 2 (p - 1) T) + O / p`` with
  ``B = max(FB / p, heaviest module)``.

The per-op seconds these read are, for :func:`peak_bound_s`, each op's FLOPs on one chip (its
tensor-parallel share) at the chip's fastest rate under the precision, plus the collectives the
plan cannot avoid, priced by the collective model (the tensor-parallel collectives, the
synchronised batch-norm statistics, the gradient buckets); for :func:`busy_bound_s`, the op times
of the simulation itself (:func:`~hwmodel.step.op_times.op_times`). No op runs faster than its
FLOPs at peak (efficiencies and occupancies are at most 1), so both are true lower bounds; each is
shaved by ``1e-9`` of itself, so that summing in another order can never lift it above the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.collectives.pricing import group_collective
from hwmodel.ops.classes.registry import op_classes
from hwmodel.search.plans import GroupShape
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.precision import Precision
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.op_times import OPTIMIZER, OpTimes, batchnorm_seconds, tensor_parallel_seconds
from hwmodel.step.placement import least_crossing_bytes
from hwmodel.step.resolve import StepContext
from hwmodel.step.schedule import bucket_prices
from hwmodel.step.tensor_parallel import work_share

FloatArray = npt.NDArray[np.float64]
ROUNDING_MARGIN = 1e-9
"""Relative margin a bound gives up against the rounding of sums taken in another order."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ChipWork:
    """Seconds one chip of the critical class must spend, by what the bounds read.

    Attributes:
        forward_backward_s: the forward and backward ops of one micro-batch of a replica.
        heaviest_module_s: of those, the ops of the module with the most.
        optimizer_s: the optimizer ops of the replica.
    """

    forward_backward_s: float
    heaviest_module_s: float
    optimizer_s: float


def peak_flops_per_s(chip: ChipSpec, precision: Precision) -> float:
    """The fastest rate any op can reach on ``chip`` under ``precision``: its matrix rate, its
    vector rate, or its fastest measured GEMM (scaled to the precision, as the cost model does)."""
    matrix = chip.matrix_rate_for(precision)[1]
    rates = [matrix, chip.vector_flops_per_s]
    if chip.gemm_rates is not None:
        rates.append(max(chip.gemm_rates.flops_per_s) * matrix / chip.matrix_fp32_flops_per_s)
    return max(rates)


def chip_work(context: StepContext, per_op_s: FloatArray) -> ChipWork:
    """:class:`ChipWork` of per-op seconds ``per_op_s`` of ``context``'s workload."""
    arrays = context.arrays
    optimizer = arrays.phase_index == OPTIMIZER
    training = ~optimizer
    by_module = np.bincount(
        arrays.module_index[training], weights=per_op_s[training], minlength=len(arrays.module_names)
    )
    return ChipWork(
        forward_backward_s=float(by_module.sum()),
        heaviest_module_s=float(by_module.max()) if len(by_module) else 0.0,
        optimizer_s=float(per_op_s[optimizer].sum()),
    )


def combine(context: StepContext, work: ChipWork) -> float:
    """The step-time bound of the module docstring from one chip's work."""
    plan = context.plan
    if context.single_stage:
        all_reduce_s = bucket_prices(context).total_s
        bound = max(work.forward_backward_s, all_reduce_s) + work.optimizer_s
    else:
        stages, micro_batches = plan.pipeline_parallel, plan.micro_batches
        busiest = max(work.forward_backward_s / stages, work.heaviest_module_s)
        first_micro_batch = work.forward_backward_s + 2 * (stages - 1) * least_transfer_s(context)
        bound = max(micro_batches * busiest, first_micro_batch) + work.optimizer_s / stages
    return bound * (1.0 - ROUNDING_MARGIN)


def least_transfer_s(context: StepContext) -> float:
    """Seconds of the shortest activation transfer between neighbouring stages the plan can have:
    :func:`~hwmodel.step.placement.least_crossing_bytes` (its tensor-parallel share, in the
    precision's activation dtype) from one stage to the next, priced as the schedule prices it."""
    plan = context.plan
    if plan.pipeline_parallel == 1:
        return 0.0
    scale = context.precision.activation_scale("float32")
    transfer_bytes = least_crossing_bytes(context) * (1.0 / plan.tensor_parallel) * scale
    if transfer_bytes <= 0:
        return 0.0
    hops = max(context.layout.pipeline_hops, 1)
    return group_collective("point_to_point", context.system, GroupShape(rows=1, cols=2), transfer_bytes, hops)[0]


def peak_seconds(context: StepContext) -> FloatArray:
    """Per op, its FLOPs on one chip of the plan at :func:`peak_flops_per_s` (kept per workload,
    chip, precision and tensor-parallel degree)."""
    chip, precision, tp = context.system.chip, context.precision, context.plan.tensor_parallel

    def build() -> FloatArray:
        arrays = context.arrays
        scale = work_share(context.workload, tp, context.tp_parameter_fraction)
        flops = arrays.flops if scale is None else arrays.flops * scale
        seconds = np.asarray(flops / peak_flops_per_s(chip, precision), dtype=np.float64)
        seconds.flags.writeable = False
        return seconds

    return WORKLOAD_CACHE.get(context.workload, ("peak_seconds", op_classes().version, chip, precision, tp), build)


def peak_bound_s(context: StepContext, *, tensor_parallel: bool = True) -> float:
    """The step time of ``context``'s plan is at least this: FLOPs at peak plus the collectives it
    cannot avoid (no op is costed; see the module docstring). ``tensor_parallel=False`` leaves the
    tensor-parallel collectives out: a weaker bound that prices no new message size."""
    per_op = peak_seconds(context) + batchnorm_seconds(context)
    if tensor_parallel and context.plan.tensor_parallel > 1:
        per_op = per_op + tensor_parallel_seconds(context)
    return combine(context, chip_work(context, per_op))


def busy_bound_s(context: StepContext, times: OpTimes) -> float:
    """The step time of ``context``'s plan is at least this: its op times (blocking collectives
    included) run back to back, without the placement, the memory fit or the schedule."""
    work = WORKLOAD_CACHE.get(times, "chip_work", lambda: chip_work(context, times.busy_s))
    return combine(context, work)
