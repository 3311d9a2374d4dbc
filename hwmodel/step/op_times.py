"""The cost stage of a simulated step: seconds of every op on one chip's compute stream.

Each op costs what its chip's model says (:func:`~hwmodel.ops.cost_model.step_op_costs`: the kernel
models, or the roofline with an efficiency row), with tensor parallelism sharding the ops
:mod:`hwmodel.step.tensor_parallel` marks over the ``tp`` chips of a group and blocking on the
collectives it places, and synchronised batch norm blocking each training batch
norm on an all-reduce of its statistics (``2 x C`` FP32 values: sum and sum of squares forward,
the two gradient sums backward) over the data-parallel group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.collectives.pricing import group_collectives_s
from hwmodel.ops.classes.base import packet_name
from hwmodel.ops.classes.registry import op_classes
from hwmodel.ops.cost import OpCosts
from hwmodel.ops.cost_model import step_op_costs
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.resolve import StepContext
from hwmodel.step.structure import STRUCTURE_CACHE
from hwmodel.step.tensor_parallel import collective_bytes, shard_costs
from hwmodel.step.workload import PHASES, Workload

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
FORWARD, BACKWARD, OPTIMIZER = (PHASES.index(phase) for phase in PHASES)
BATCHNORM_TRAINING_OPS = frozenset(
    {
        "native_batch_norm",
        "native_batch_norm_backward",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_functional",
        "batch_norm_backward",
        "_batch_norm_with_update",
        "_batch_norm_with_update_functional",
        "cudnn_batch_norm",
        "cudnn_batch_norm_backward",
    }
)
"""Aten ops of a training-mode batch norm (forward and backward): each needs batch statistics."""
STATISTICS_PER_CHANNEL = 2
"""Values all-reduced per channel: sum and sum of squares (forward), or the two gradient sums."""
PER_OP_PARTS = ("compute", "memory", "overhead", "tensor_parallel", "batchnorm_sync")


@dataclass(eq=False, slots=True, weakref_slot=True)
class OpTimes:
    """Per-op seconds on the compute stream of one chip, by what fills them.

    Built once per (workload, system, precision, efficiency table, tensor-parallel degree and
    group, synchronised data-parallel group) and kept in the workload cache; what is derived from
    it alone (:func:`op_ends_s`, :func:`parts`, the report's top entries) is kept under it.
    """

    costs: OpCosts
    tensor_parallel_s: FloatArray
    batchnorm_s: FloatArray
    busy_s: FloatArray


def batchnorm_mask(workload: Workload) -> BoolArray:
    """True for the ops of a training-mode batch norm."""

    def build() -> BoolArray:
        names = (packet_name(op.name) in BATCHNORM_TRAINING_OPS for op in workload.ops)
        mask = np.fromiter(names, dtype=np.bool_, count=len(workload.ops))
        mask.flags.writeable = False
        return mask

    return STRUCTURE_CACHE.get(workload, "batchnorm_mask", build)


def tensor_parallel_seconds(context: StepContext) -> FloatArray:
    """Per op, the tensor-parallel collective that blocks it (:mod:`hwmodel.step.tensor_parallel`:
    the all-reduce after a row-parallel op or a column-parallel input gradient, the gather or
    scatter of a plain-rule matrix op); zeros without tensor parallelism. Kept per workload,
    system, precision and group."""
    arrays, system, tp = context.arrays, context.system, context.plan.tensor_parallel
    count = len(arrays.flops)
    if tp == 1:
        return np.zeros(count, dtype=np.float64)
    group = context.layout.tensor_group

    def build() -> FloatArray:
        dtype_scale = np.array([context.precision.activation_scale(name) for name in arrays.dtype_names])
        output_bytes = context.memory.activation_output_bytes_by_op * dtype_scale[arrays.dtype_index]
        seconds = np.zeros(count, dtype=np.float64)
        for kind, sizes in collective_bytes(context.workload, output_bytes).items():
            mask = sizes > 0
            seconds[mask] += group_collectives_s(kind, system, group, sizes[mask])
        return seconds

    key = ("tensor_parallel_s", op_classes().version, system.mesh, system.fabric, context.precision, group)
    return WORKLOAD_CACHE.get(context.workload, key, build)


def batchnorm_seconds(context: StepContext) -> FloatArray:
    """Per op, the all-reduce of batch-norm statistics over the data-parallel group that blocks a
    training batch norm; zeros when the statistics are not synchronised. Kept per group."""
    plan, system = context.plan, context.system
    count = len(context.arrays.flops)
    if not (context.sync_batchnorm and plan.data_parallel > 1):
        return np.zeros(count, dtype=np.float64)
    group = context.layout.data_group

    def build() -> FloatArray:
        mask = batchnorm_mask(context.workload)
        statistics = STATISTICS_PER_CHANNEL * context.memory.smallest_output_bytes_by_op[mask]
        seconds = np.zeros(count, dtype=np.float64)
        seconds[mask] = group_collectives_s("all_reduce", system, group, statistics)
        return seconds

    key = ("batchnorm_s", op_classes().version, system.mesh, system.fabric, group)
    return WORKLOAD_CACHE.get(context.workload, key, build)


def op_times(context: StepContext) -> OpTimes:
    """Seconds of every op of ``context``'s workload on one chip, collectives that block it included."""
    plan, system = context.plan, context.system
    tp = plan.tensor_parallel
    synchronised = context.sync_batchnorm and plan.data_parallel > 1
    bn_group = context.layout.data_group if synchronised else None
    tp_group = context.layout.tensor_group if tp > 1 else None

    def build() -> OpTimes:
        shares = (1.0 / tp, context.tp_parameter_fraction) if tp > 1 else (1.0, 1.0)
        costs = step_op_costs(
            context.workload, system.chip, context.precision, context.table, *shares, execution=context.execution
        )
        tensor_parallel_s = tensor_parallel_seconds(context)
        batchnorm_s = batchnorm_seconds(context)
        costs = shard_costs(costs, context.workload, tp)
        busy_s = costs.time_s + tensor_parallel_s + batchnorm_s
        for values in (tensor_parallel_s, batchnorm_s, busy_s):
            values.flags.writeable = False
        return OpTimes(costs=costs, tensor_parallel_s=tensor_parallel_s, batchnorm_s=batchnorm_s, busy_s=busy_s)

    key = (
        "op_times",
        op_classes().version,
        system,
        context.precision,
        context.table,
        tp,
        tp_group,
        bn_group,
        context.execution,
    )
    return WORKLOAD_CACHE.get(context.workload, key, build)


def op_ends_s(times: OpTimes) -> FloatArray:
    """When each op ends on a compute stream that runs them back to back (a sequential sum)."""
    return WORKLOAD_CACHE.get(times, "ends", lambda: _read_only(np.cumsum(times.busy_s)))


def _read_only(values: FloatArray) -> FloatArray:
    values.flags.writeable = False
    return values


def parts(times: OpTimes, mask: BoolArray | None, scale: float) -> dict[str, float]:
    """Breakdown parts of the ops in ``mask`` (every op when None), each counted ``scale`` times."""
    if mask is None and scale == 1.0:
        return dict(WORKLOAD_CACHE.get(times, "parts", lambda: _parts(times, None, 1.0)))
    return _parts(times, mask, scale)


def _parts(times: OpTimes, mask: BoolArray | None, scale: float) -> dict[str, float]:
    costs = times.costs
    compute_bound = costs.compute_bound
    columns = np.stack(
        (
            np.where(compute_bound, costs.compute_s, 0.0),
            np.where(compute_bound, 0.0, costs.memory_s),
            costs.overhead_s,
            times.tensor_parallel_s,
            times.batchnorm_s,
        )
    )
    if mask is not None:
        columns = columns[:, mask]
    if columns.shape[1] == 0:
        return dict.fromkeys(PER_OP_PARTS, 0.0)
    totals = np.add.accumulate(columns, axis=1)[:, -1]  # in op order: deterministic
    return {part: scale * float(total) for part, total in zip(PER_OP_PARTS, totals, strict=True)}


def add_parts(total: dict[str, float], part: dict[str, float]) -> None:
    """Add ``part``'s seconds into ``total``, part by part."""
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + value
