"""The cost stage of a simulated step: seconds of every op on one chip's compute stream.

Each op costs what its chip's model says (:func:`~hwmodel.ops.cost_model.step_op_costs`: the kernel
models, or the roofline with an efficiency row), with tensor parallelism splitting each
matrix op's work over the ``tp`` chips of a group and blocking it on an all-gather (forward) or a
reduce-scatter (backward) of its output, and synchronised batch norm blocking each training batch
norm on an all-reduce of its statistics (``2 x C`` FP32 values: sum and sum of squares forward,
the two gradient sums backward) over the data-parallel group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.collectives.pricing import group_collectives_s
from hwmodel.ops.classes.base import packet_name
from hwmodel.ops.cost import OpCosts
from hwmodel.ops.cost_model import step_op_costs
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.resolve import StepContext
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


@dataclass(eq=False, slots=True)
class OpTimes:
    """Per-op seconds on the compute stream of one chip, by what fills them."""

    costs: OpCosts
    tensor_parallel_s: FloatArray
    batchnorm_s: FloatArray
    busy_s: FloatArray


def batchnorm_mask(workload: Workload) -> BoolArray:
    """True for the ops of a training-mode batch norm."""

    def build() -> BoolArray:
        names = (packet_name(op.name) in BATCHNORM_TRAINING_OPS for op in workload.ops)
        return np.fromiter(names, dtype=np.bool_, count=len(workload.ops))

    return WORKLOAD_CACHE.get(workload, "batchnorm_mask", build)


def op_times(context: StepContext) -> OpTimes:
    """Seconds of every op of ``context``'s workload on one chip, collectives that block it included."""
    arrays, plan, system, layout = context.arrays, context.plan, context.system, context.layout
    optimizer = arrays.phase_index == OPTIMIZER
    tp = plan.tensor_parallel
    split = arrays.is_matrix & ~optimizer
    shares = (1.0 / tp, context.tp_parameter_fraction) if tp > 1 else (1.0, 1.0)
    costs = step_op_costs(context.workload, system.chip, context.precision, context.table, *shares)
    count = len(costs.time_s)
    tensor_parallel_s = np.zeros(count, dtype=np.float64)
    if tp > 1:
        dtype_scale = np.array([context.precision.activation_scale(name) for name in arrays.dtype_names])
        gathered = context.memory.activation_output_bytes_by_op * dtype_scale[arrays.dtype_index]
        for phase, kind in ((FORWARD, "all_gather"), (BACKWARD, "reduce_scatter")):
            mask = split & (arrays.phase_index == phase)
            tensor_parallel_s[mask] = group_collectives_s(kind, system, layout.tensor_group, gathered[mask])
    batchnorm_s = np.zeros(count, dtype=np.float64)
    if context.sync_batchnorm and plan.data_parallel > 1:
        mask = batchnorm_mask(context.workload)
        statistics = STATISTICS_PER_CHANNEL * context.memory.smallest_output_bytes_by_op[mask]
        batchnorm_s[mask] = group_collectives_s("all_reduce", system, layout.data_group, statistics)
    return OpTimes(
        costs=costs,
        tensor_parallel_s=tensor_parallel_s,
        batchnorm_s=batchnorm_s,
        busy_s=costs.time_s + tensor_parallel_s + batchnorm_s,
    )


def parts(times: OpTimes, mask: BoolArray | None, scale: float) -> dict[str, float]:
    """Breakdown parts of the ops in ``mask`` (every op when None), each counted ``scale`` times."""
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
