"""The placement stage of a simulated step: ops onto pipeline stages, and each stage's memory.

Modules in forward order are cut into ``pp`` contiguous stages balancing their op time
(:func:`~hwmodel.step.timeline.balance_stages`); every op runs on its module's stage. Each stage's
working set is held against local memory (:func:`~hwmodel.step.memory.footprint`); the stage
whose remedy (spill to backing memory, recompute of activations) costs most is the one reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.memory import ChipShare, MemoryFootprint, footprint
from hwmodel.step.op_times import BACKWARD, FORWARD, OPTIMIZER, OpTimes
from hwmodel.step.resolve import StepContext
from hwmodel.step.structure import STRUCTURE_CACHE
from hwmodel.step.tensor_parallel import sharded_activation_fraction
from hwmodel.step.timeline import balance_stages
from hwmodel.step.workload import PHASES, ROOT_MODULE, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(eq=False, kw_only=True, slots=True, weakref_slot=True)
class StagePlacement:
    """Ops on pipeline stages (one stage without pipelining) and what each stage holds.

    Attributes:
        stage: the stage of every op.
        per_stage_phase_s: busy seconds per (stage, phase) of one micro-batch.
        forward_s / backward_s: per stage, one micro-batch.
        optimizer_s: the optimizer step of the whole replica.
        parameter_share / saved_share: per stage, its share of the parameters and of the
            activations saved for backward.
    """

    stage: IntArray
    per_stage_phase_s: FloatArray
    forward_s: FloatArray
    backward_s: FloatArray
    optimizer_s: float
    parameter_share: FloatArray
    saved_share: FloatArray


@dataclass(eq=False, kw_only=True, slots=True, weakref_slot=True)
class MemoryFit:
    """The stage whose working set costs most to fit, and the peak local bytes of any stage."""

    memory: MemoryFootprint
    stage: int
    local_peak_bytes: float

    @property
    def remedy_s(self) -> float:
        """Seconds the remedy adds to the step (spill plus recompute)."""
        return self.memory.spill_s + self.memory.recompute_s


def module_order(context: StepContext) -> IntArray:
    """Module indices in forward order (first forward op; the root module, holding the loss, by its last)."""
    arrays = context.arrays

    def build() -> IntArray:
        count = len(arrays.module_names)
        positions = np.arange(len(arrays.module_index), dtype=np.float64)
        forward = arrays.phase_index == FORWARD
        key = np.full(count, np.inf)
        np.minimum.at(key, arrays.module_index[forward], positions[forward])
        if ROOT_MODULE in arrays.module_names:
            root = arrays.module_names.index(ROOT_MODULE)
            root_positions = positions[forward & (arrays.module_index == root)]
            if len(root_positions):
                key[root] = root_positions.max()
        fallback = np.full(count, np.inf)
        np.minimum.at(fallback, arrays.module_index, positions)
        key = np.where(np.isinf(key), fallback + len(positions), key)
        return np.asarray(np.lexsort((np.arange(count), key)), dtype=np.int64)

    def read_only() -> IntArray:
        order = build()
        order.flags.writeable = False
        return order

    return STRUCTURE_CACHE.get(context.workload, "module_order", read_only)


def activation_edges(workload: Workload) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
    """(producer op, consumer op, bytes, tensor slot) of every forward activation a later forward op reads."""

    def build() -> tuple[IntArray, IntArray, FloatArray, IntArray]:
        producer, consumer, slot, position = STRUCTURE_CACHE.get(
            workload, "activation_edges", lambda: _edge_structure(workload)
        )
        tensors = workload.tensors
        nbytes = np.fromiter(
            (float(tensors[p].nbytes) for p in position.tolist()), dtype=np.float64, count=len(position)
        )
        return producer, consumer, nbytes, slot

    return WORKLOAD_CACHE.get(workload, "activation_edges", build)


def _edge_structure(workload: Workload) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(producer op, consumer op, tensor slot, tensor position) of :func:`activation_edges`, shared
    by the workloads of one structure (a tensor id recorded twice: its last record)."""
    producer: dict[int, tuple[int, int]] = {}
    for position, tensor in enumerate(workload.tensors):
        if tensor.kind == "activation" and tensor.first_op >= 0:
            producer[tensor.tensor_id] = (tensor.first_op, position)
    slots: dict[int, int] = {}
    rows: list[tuple[int, int, int, int]] = []
    for index, op in enumerate(workload.ops):
        if op.phase != "forward":
            continue
        for tensor_id in op.input_ids:
            made = producer.get(tensor_id)
            if made is not None and made[0] < index:
                rows.append((made[0], index, slots.setdefault(tensor_id, len(slots)), made[1]))
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    edges = tuple(np.array(column, dtype=np.int64) for column in columns)
    for values in edges:
        values.flags.writeable = False
    return edges[0], edges[1], edges[2], edges[3]


def stage_of_ops(context: StepContext, busy_s: FloatArray, stages: int) -> IntArray:
    """Pipeline stage of every op: modules in forward order cut into balanced contiguous stages."""
    if stages == 1:
        return np.zeros(len(busy_s), dtype=np.int64)
    arrays = context.arrays
    order = module_order(context)
    not_optimizer = arrays.phase_index != OPTIMIZER
    weights = np.bincount(arrays.module_index[not_optimizer], weights=busy_s[not_optimizer], minlength=len(order))
    starts = balance_stages(np.asarray(weights[order], dtype=np.float64), stages)
    stage_by_position = np.searchsorted(np.array(starts[1:], dtype=np.int64), np.arange(len(order)), side="right")
    stage_of_module = np.empty(len(order), dtype=np.int64)  # module index -> stage
    stage_of_module[order] = stage_by_position
    return stage_of_module[arrays.module_index]


def boundary_bytes(workload: Workload, stage: IntArray, stages: int) -> FloatArray:
    """Captured activation bytes crossing each of the ``stages - 1`` stage boundaries per micro-batch."""
    if stages == 1:
        return np.zeros(0, dtype=np.float64)
    return crossing_bytes(workload, stage, stages)


def crossing_bytes(workload: Workload, position: IntArray, positions: int) -> FloatArray:
    """Captured activation bytes crossing each of the ``positions - 1`` cuts of an order in which
    op ``i`` sits at ``position[i]`` (a pipeline stage, a module's place in forward order): a
    tensor crosses the cut after ``k`` when its producer sits at or before ``k`` and its furthest
    reader after it."""
    producer, consumer, nbytes, slot = activation_edges(workload)
    if len(producer) == 0:
        return np.zeros(max(positions - 1, 0), dtype=np.float64)
    slots = int(slot.max()) + 1
    source = np.zeros(slots, dtype=np.int64)
    source[slot] = position[producer]
    furthest = np.full(slots, -1, dtype=np.int64)
    np.maximum.at(furthest, slot, position[consumer])
    size = np.zeros(slots, dtype=np.float64)
    size[slot] = nbytes
    crossing = furthest > source
    delta = np.bincount(source[crossing], weights=size[crossing], minlength=positions + 1)
    delta -= np.bincount(furthest[crossing], weights=size[crossing], minlength=positions + 1)
    return np.asarray(np.cumsum(delta)[: positions - 1], dtype=np.float64)


def least_crossing_bytes(context: StepContext) -> float:
    """The fewest captured activation bytes that cross a cut between two modules in forward order.

    Pipeline stages are contiguous runs of modules in that order, so a plan of two or more stages
    cuts it at least once, and its largest transfer carries at least this many bytes per
    micro-batch (0 with fewer than two modules). Kept per workload.
    """
    workload = context.workload

    def build() -> float:
        order = module_order(context)
        if len(order) < 2:
            return 0.0
        position = np.empty(len(order), dtype=np.int64)  # module index -> place in forward order
        position[order] = np.arange(len(order))
        return float(crossing_bytes(workload, position[context.arrays.module_index], len(order)).min())

    return WORKLOAD_CACHE.get(workload, "least_crossing_bytes", build)


def _shares(weights: npt.NDArray[np.float64] | npt.NDArray[np.int64], stages: int) -> FloatArray:
    """Each stage's share of ``weights`` (equal shares when they are all zero)."""
    total = weights.sum()
    return np.asarray(weights / total if total > 0 else np.full(stages, 1 / stages), dtype=np.float64)


def place(context: StepContext, times: OpTimes) -> StagePlacement:
    """Ops of ``context`` on its plan's pipeline stages, by their busy seconds (kept per op times
    and stage count)."""
    key = ("placement", context.plan.pipeline_parallel)
    return WORKLOAD_CACHE.get(times, key, lambda: _place(context, times.busy_s))


def _place(context: StepContext, busy_s: FloatArray) -> StagePlacement:
    pp, arrays = context.plan.pipeline_parallel, context.arrays
    stage = stage_of_ops(context, busy_s, pp)
    # bincount adds its weights in index order: deterministic sums per (stage, phase)
    sums = np.bincount(stage * len(PHASES) + arrays.phase_index, weights=busy_s, minlength=pp * len(PHASES))
    per_stage_phase = np.asarray(sums.reshape(pp, len(PHASES)), dtype=np.float64)
    if pp > 1:
        memory = context.memory
        parameter_share = _shares(np.bincount(stage, weights=memory.parameter_bytes_by_op, minlength=pp), pp)
        saved_share = _shares(np.bincount(stage, weights=memory.saved_bytes_by_op, minlength=pp), pp)
    else:
        parameter_share = saved_share = np.ones(1)
    for values in (stage, per_stage_phase, parameter_share, saved_share):
        values.flags.writeable = False
    return StagePlacement(
        stage=stage,
        per_stage_phase_s=per_stage_phase,
        forward_s=np.asarray(per_stage_phase[:, FORWARD], dtype=np.float64),
        backward_s=np.asarray(per_stage_phase[:, BACKWARD], dtype=np.float64),
        optimizer_s=float(per_stage_phase[:, OPTIMIZER].sum()),
        parameter_share=parameter_share,
        saved_share=saved_share,
    )


def fit_memory(context: StepContext, placement: StagePlacement) -> MemoryFit:
    """Each stage's working set against local memory; the stage whose remedy costs most (kept per
    placement, micro-batch count and recompute setting: the placement belongs to one workload's op
    times on one system under one precision)."""
    key = ("memory_fit", context.plan.micro_batches, context.options.recompute, context.tp_parameter_fraction)
    return WORKLOAD_CACHE.get(placement, key, lambda: _fit_memory(context, placement))


def _fit_memory(context: StepContext, placement: StagePlacement) -> MemoryFit:
    pp, micro_batches = context.plan.pipeline_parallel, context.plan.micro_batches
    footprints: list[MemoryFootprint] = []
    scale = np.array([context.precision.activation_scale(name) for name in context.memory.dtype_names] or [1.0])
    tp_fraction = sharded_activation_fraction(context.workload, context.plan.tensor_parallel, scale)
    for s in range(pp):
        in_flight = min(pp - s, micro_batches)
        share = ChipShare(
            parameter_fraction=context.tp_parameter_fraction * float(placement.parameter_share[s]),
            activation_fraction=tp_fraction * (float(placement.saved_share[s]) * in_flight if pp > 1 else 1.0),
            recompute_forward_s=float(placement.forward_s[s]) * micro_batches if context.options.recompute else 0.0,
        )
        footprints.append(stage_footprint(context, share))
    worst = max(
        range(pp),
        key=lambda s: (footprints[s].spill_s + footprints[s].recompute_s, footprints[s].local_peak_bytes, -s),
    )
    return MemoryFit(
        memory=footprints[worst], stage=worst, local_peak_bytes=max(fp.local_peak_bytes for fp in footprints)
    )


def stage_footprint(context: StepContext, share: ChipShare) -> MemoryFootprint:
    """:func:`~hwmodel.step.memory.footprint` of one stage's chip, kept per workload, system,
    precision and share (a pure function of them); a working set that fits nowhere raises each time."""
    system = context.system
    key = ("footprint", system, context.precision, share)
    return WORKLOAD_CACHE.get(
        context.workload,
        key,
        lambda: footprint(context.workload, system.chip, system.fabric, context.precision, share, system.mesh),
    )
