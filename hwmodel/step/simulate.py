"""Simulate one training step of a captured workload on a system under a parallel plan.

Simulation is by equivalence class: every data-parallel replica does the same work, the chips of a
tensor-parallel group are alike, and the chips of one pipeline stage are alike, so the scheduler
(:mod:`hwmodel.step.timeline`) runs once per class (one class, or one per stage) and the mesh enters
through the cost of the collectives (:mod:`hwmodel.collectives.pricing`). A 3,000-chip step costs what a
25-chip one does.

One chip's step under a plan ``dp x tp x pp`` with ``m`` micro-batches:

* **Ops** (:mod:`hwmodel.ops.cost`) in capture order on the compute stream. Tensor parallelism splits
  each matrix op's output channels over the ``tp`` chips of a group (its FLOPs, bytes and output
  divided by ``tp``; other ops run replicated), each forward matrix op is followed by an all-gather
  of its output and each backward one by a reduce-scatter of its input gradient: both block the
  next op. Weights of matrix ops are split ``tp`` ways too (memory, optimizer, gradients).
* **Synchronised batch norm**: when the batch is split over data-parallel replicas, every training
  batch norm all-reduces its per-channel statistics (sum and sum of squares forward, the two
  gradient sums backward: ``2 x C`` FP32 values) over the data-parallel group before it can
  normalise: latency-bound collectives on the critical path (SyncBatchNorm semantics). On by
  default on Dojo (Tesla: a slice must be "large enough to fit a batch norm surface"), off by
  default elsewhere (PyTorch's BatchNorm is per device).
* **Gradients** are all-reduced over the data-parallel group in buckets (PyTorch DDP, 25 MB by
  default) in the order the backward pass finishes them, overlapping the rest of it; the
  optimizer starts when every bucket is reduced.
* **Pipeline**: modules are cut into ``pp`` contiguous stages balancing their captured op time;
  each stage runs the 1F1B schedule on micro-batches of ``batch / m`` samples; activations (and
  their gradients) cross stage boundaries point to point. A stage's gradients are all-reduced
  once its last backward is done.
* **Memory** (:mod:`hwmodel.step.memory`): each stage's working set against local memory, with the
  cheaper of spilling to DIP HBM and recomputing activations, added after the step (not
  overlapped).
* **Ingest** (:mod:`hwmodel.studies.ingest`), when a data feed is given: prefetched during the step; only
  the time beyond the step shows.

The same inputs give the same report, bit for bit: every sum is sequential or correctly rounded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from hwmodel.collectives.pricing import group_collective, group_collectives_s
from hwmodel.errors import PlanError
from hwmodel.ops.classes import packet_name
from hwmodel.ops.cost import OpCosts, WorkloadArrays, op_costs, ordered_sum, workload_arrays
from hwmodel.ops.efficiency import EfficiencyTable, efficiency_for
from hwmodel.search.plans import GroupShape, Plan, PlanLayout, plan_layout
from hwmodel.spec.precision import MIXED_BF16, Precision
from hwmodel.spec.system import System
from hwmodel.step.memory import ChipShare, MemoryArrays, MemoryFootprint, footprint, memory_arrays
from hwmodel.step.report import BREAKDOWN_PARTS, Report
from hwmodel.step.timeline import Interval, Timeline, balance_stages, bucket_schedule, one_f_one_b
from hwmodel.step.workload import PHASES, ROOT_MODULE, Workload, WorkloadSource
from hwmodel.studies.ingest import DataFeed, ingest

FloatArray = npt.NDArray[np.float64]
DEFAULT_BUCKET_BYTES = 25e6
"""Gradient bucket size: PyTorch DDP's default ``bucket_cap_mb=25``."""
TOP_ENTRIES = 10
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
_FORWARD, _BACKWARD, _OPTIMIZER = (PHASES.index(phase) for phase in PHASES)


@dataclass(frozen=True, kw_only=True)
class StepOptions:
    """What else shapes a step besides the workload, the system and the plan.

    Attributes:
        precision: the mixed-precision policy.
        efficiency: fractions of peak per op class (default: the chip's calibrated row).
        bucket_bytes: gradient bucket size of the data-parallel all-reduce.
        sync_batchnorm: synchronise batch-norm statistics across data-parallel replicas; ``None``
            follows the chip (:attr:`~hwmodel.spec.chip.ChipSpec.sync_batchnorm`).
        recompute: allow activation recomputation as a remedy when memory does not fit.
        ingest: the data feed whose per-step ingest is overlapped with the step (None: free).
    """

    precision: Precision = MIXED_BF16
    efficiency: EfficiencyTable | None = None
    bucket_bytes: float = DEFAULT_BUCKET_BYTES
    sync_batchnorm: bool | None = None
    recompute: bool = True
    ingest: DataFeed | None = None


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """A simulated step: its report and, when asked for, its timeline."""

    report: Report
    timeline: Timeline | None = None


def gradient_buckets(workload: Workload, bytes_per_element: float, bucket_bytes: float) -> list[tuple[int, float]]:
    """(op index after which the bucket is ready, bucket bytes), in backward order.

    Parameters that receive no gradient (unused in the step) are skipped.
    """
    key = (bytes_per_element, bucket_bytes)
    cache: dict[tuple[float, float], list[tuple[int, float]]] = workload.__dict__.setdefault("_buckets", {})
    if key in cache:
        return cache[key]
    ready = sorted((p.grad_ready_op, p.numel * bytes_per_element) for p in workload.parameters if p.grad_ready_op >= 0)
    buckets: list[tuple[int, float]] = []
    pending_bytes = 0.0
    for op_index, size in ready:
        pending_bytes += size
        if pending_bytes >= bucket_bytes:
            buckets.append((op_index, pending_bytes))
            pending_bytes = 0.0
    if pending_bytes > 0:
        buckets.append((ready[-1][0], pending_bytes))
    cache[key] = buckets
    return buckets


def _resolve(source: Workload | WorkloadSource, plan: Plan) -> tuple[Workload, int]:
    """The workload of one micro-batch of one replica under ``plan``, and the global batch.

    A :class:`Workload` given directly is taken as one micro-batch of one replica; a
    :class:`WorkloadSource` is asked for ``global_batch / (data_parallel x micro_batches)``.
    """
    splits = plan.data_parallel * plan.micro_batches
    if isinstance(source, Workload):
        return source, source.batch_size * splits
    global_batch = source.global_batch
    if global_batch % splits:
        raise PlanError(
            f"plan {plan}: global batch {global_batch} does not split into {plan.data_parallel} replicas x "
            f"{plan.micro_batches} micro-batches; use a batch that is a multiple of {splits}"
        )
    return source.workload(global_batch // splits), global_batch


def _top(names: tuple[str, ...], index: npt.NDArray[np.int64], time_s: FloatArray) -> list[tuple[str, float]]:
    """The :data:`TOP_ENTRIES` largest totals by name (ties: first seen first)."""
    totals = np.bincount(index, weights=time_s, minlength=len(names))
    order = np.argsort(-totals, kind="stable")[:TOP_ENTRIES]
    return [(names[i], float(totals[i])) for i in order.tolist() if totals[i] > 0]


def _batchnorm_mask(workload: Workload) -> npt.NDArray[np.bool_]:
    cached = workload.__dict__.get("_batchnorm_mask")
    if cached is None:
        cached = np.fromiter(
            (packet_name(op.name) in BATCHNORM_TRAINING_OPS for op in workload.ops),
            dtype=np.bool_,
            count=len(workload.ops),
        )
        object.__setattr__(workload, "_batchnorm_mask", cached)
    return np.asarray(cached)


def _module_order(workload: Workload, arrays: WorkloadArrays) -> npt.NDArray[np.int64]:
    """Module indices in forward order (first forward op; the root module, holding the loss, by its last)."""
    cached = workload.__dict__.get("_module_order")
    if cached is None:
        count = len(arrays.module_names)
        positions = np.arange(len(arrays.module_index), dtype=np.float64)
        forward = arrays.phase_index == _FORWARD
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
        cached = np.lexsort((np.arange(count), key))
        object.__setattr__(workload, "_module_order", cached)
    return np.asarray(cached)


IntArray = npt.NDArray[np.int64]


def _activation_edges(workload: Workload) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
    """(producer op, consumer op, bytes, tensor slot) of every forward activation a later forward op reads."""
    cached = workload.__dict__.get("_activation_edges")
    if cached is None:
        producer: dict[int, tuple[int, float]] = {}
        for tensor in workload.tensors:
            if tensor.kind == "activation" and tensor.first_op >= 0:
                producer[tensor.tensor_id] = (tensor.first_op, float(tensor.nbytes))
        slots: dict[int, int] = {}
        rows: list[tuple[int, int, float, int]] = []
        for index, op in enumerate(workload.ops):
            if op.phase != "forward":
                continue
            for tensor_id in op.input_ids:
                made = producer.get(tensor_id)
                if made is not None and made[0] < index:
                    rows.append((made[0], index, made[1], slots.setdefault(tensor_id, len(slots))))
        columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
        cached = (
            np.array(columns[0], dtype=np.int64),
            np.array(columns[1], dtype=np.int64),
            np.array(columns[2], dtype=np.float64),
            np.array(columns[3], dtype=np.int64),
        )
        object.__setattr__(workload, "_activation_edges", cached)
    return cached  # type: ignore[no-any-return]


def _stage_of_ops(workload: Workload, arrays: WorkloadArrays, busy_s: FloatArray, stages: int) -> npt.NDArray[np.int64]:
    """Pipeline stage of every op: modules in forward order cut into balanced contiguous stages."""
    if stages == 1:
        return np.zeros(len(busy_s), dtype=np.int64)
    order = _module_order(workload, arrays)
    not_optimizer = arrays.phase_index != _OPTIMIZER
    weights = np.bincount(arrays.module_index[not_optimizer], weights=busy_s[not_optimizer], minlength=len(order))
    starts = balance_stages(np.asarray(weights[order], dtype=np.float64), stages)
    stage_by_position = np.searchsorted(np.array(starts[1:], dtype=np.int64), np.arange(len(order)), side="right")
    stage_of_module = np.empty(len(order), dtype=np.int64)  # module index -> stage
    stage_of_module[order] = stage_by_position
    return stage_of_module[arrays.module_index]


def _boundary_bytes(workload: Workload, stage: npt.NDArray[np.int64], stages: int) -> FloatArray:
    """Captured activation bytes crossing each of the ``stages - 1`` stage boundaries per micro-batch."""
    producer, consumer, nbytes, slot = _activation_edges(workload)
    if stages == 1 or len(producer) == 0:
        return np.zeros(max(stages - 1, 0), dtype=np.float64)
    slots = int(slot.max()) + 1
    source_stage = np.zeros(slots, dtype=np.int64)
    source_stage[slot] = stage[producer]
    furthest = np.full(slots, -1, dtype=np.int64)
    np.maximum.at(furthest, slot, stage[consumer])
    size = np.zeros(slots, dtype=np.float64)
    size[slot] = nbytes
    crossing = furthest > source_stage
    delta = np.bincount(source_stage[crossing], weights=size[crossing], minlength=stages + 1)
    delta -= np.bincount(furthest[crossing], weights=size[crossing], minlength=stages + 1)
    return np.asarray(np.cumsum(delta)[: stages - 1], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class _OpTimes:
    """Per-op seconds on the compute stream of one chip, by what fills them."""

    costs: OpCosts
    tensor_parallel_s: FloatArray
    batchnorm_s: FloatArray
    busy_s: FloatArray


def _op_times(
    workload: Workload,
    arrays: WorkloadArrays,
    memory: MemoryArrays,
    system: System,
    plan: Plan,
    layout: PlanLayout,
    options: StepOptions,
    table: EfficiencyTable,
    tp_parameter_fraction: float,
    sync_batchnorm: bool,
) -> _OpTimes:
    optimizer = arrays.phase_index == _OPTIMIZER
    tp = plan.tensor_parallel
    split = arrays.is_matrix & ~optimizer
    work_scale = np.where(split, 1.0 / tp, np.where(optimizer, tp_parameter_fraction, 1.0)) if tp > 1 else None
    costs = op_costs(workload, system.chip, table, options.precision, work_scale)
    count = len(costs.time_s)
    tensor_parallel_s = np.zeros(count, dtype=np.float64)
    if tp > 1:
        dtype_scale = np.array([options.precision.activation_scale(name) for name in arrays.dtype_names])
        gathered = memory.activation_output_bytes_by_op * dtype_scale[arrays.dtype_index]
        for phase, kind in ((_FORWARD, "all_gather"), (_BACKWARD, "reduce_scatter")):
            mask = split & (arrays.phase_index == phase)
            tensor_parallel_s[mask] = group_collectives_s(kind, system, layout.tensor_group, gathered[mask])
    batchnorm_s = np.zeros(count, dtype=np.float64)
    if sync_batchnorm and plan.data_parallel > 1:
        mask = _batchnorm_mask(workload)
        statistics = STATISTICS_PER_CHANNEL * memory.smallest_output_bytes_by_op[mask]
        batchnorm_s[mask] = group_collectives_s("all_reduce", system, layout.data_group, statistics)
    return _OpTimes(
        costs=costs,
        tensor_parallel_s=tensor_parallel_s,
        batchnorm_s=batchnorm_s,
        busy_s=costs.time_s + tensor_parallel_s + batchnorm_s,
    )


PER_OP_PARTS = ("compute", "memory", "overhead", "tensor_parallel", "batchnorm_sync")


def _parts(times: _OpTimes, mask: npt.NDArray[np.bool_] | None, scale: float) -> dict[str, float]:
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


def _add(total: dict[str, float], part: dict[str, float]) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + value


def evaluate(
    source: Workload | WorkloadSource,
    system: System,
    plan: Plan,
    options: StepOptions | None = None,
    *,
    keep_timeline: bool = False,
) -> StepResult:
    """Simulate one step of ``source`` on ``system`` under ``plan``; the timeline only on request."""
    options = options or StepOptions()
    layout = plan_layout(plan, system.mesh)
    workload, global_batch = _resolve(source, plan)
    table = options.efficiency or efficiency_for(system.chip.efficiency_row)
    precision = options.precision
    arrays = workload_arrays(workload)
    memory_columns = memory_arrays(workload)
    tp, pp, micro_batches = plan.tensor_parallel, plan.pipeline_parallel, plan.micro_batches
    matrix_fraction = 0.0
    if memory_columns.parameter_bytes > 0:
        matrix_fraction = memory_columns.matrix_parameter_bytes / memory_columns.parameter_bytes
    tp_parameter_fraction = 1.0 - matrix_fraction + matrix_fraction / tp
    sync_batchnorm = options.sync_batchnorm if options.sync_batchnorm is not None else system.chip.sync_batchnorm
    times = _op_times(
        workload, arrays, memory_columns, system, plan, layout, options, table, tp_parameter_fraction, sync_batchnorm
    )
    busy = times.busy_s
    optimizer = arrays.phase_index == _OPTIMIZER
    stage = _stage_of_ops(workload, arrays, busy, pp)
    # bincount adds its weights in index order: deterministic sums per (stage, phase)
    per_stage_phase = np.bincount(stage * len(PHASES) + arrays.phase_index, weights=busy, minlength=pp * len(PHASES))
    per_stage_phase = per_stage_phase.reshape(pp, len(PHASES))
    forward_s = np.asarray(per_stage_phase[:, _FORWARD], dtype=np.float64)
    backward_s = np.asarray(per_stage_phase[:, _BACKWARD], dtype=np.float64)
    optimizer_s = float(per_stage_phase[:, _OPTIMIZER].sum())
    if pp > 1:
        parameter_bytes = np.bincount(stage, weights=memory_columns.parameter_bytes_by_op, minlength=pp)
        saved_bytes = np.bincount(stage, weights=memory_columns.saved_bytes_by_op, minlength=pp)
        stage_parameters = parameter_bytes / parameter_bytes.sum() if parameter_bytes.sum() > 0 else np.full(pp, 1 / pp)
        stage_saved = saved_bytes / saved_bytes.sum() if saved_bytes.sum() > 0 else np.full(pp, 1 / pp)
    else:
        stage_parameters = stage_saved = np.ones(1)

    footprints: list[MemoryFootprint] = []
    for s in range(pp):
        in_flight = min(pp - s, micro_batches)
        share = ChipShare(
            parameter_fraction=tp_parameter_fraction * float(stage_parameters[s]),
            activation_fraction=float(stage_saved[s]) * in_flight if pp > 1 else 1.0,
            recompute_forward_s=float(forward_s[s]) * micro_batches if options.recompute else 0.0,
        )
        footprints.append(footprint(workload, system.chip, system.fabric, precision, share, system.mesh))
    worst = max(
        range(pp),
        key=lambda s: (footprints[s].spill_s + footprints[s].recompute_s, footprints[s].local_peak_bytes, -s),
    )
    memory = footprints[worst]
    remedy_s = memory.spill_s + memory.recompute_s

    parameter_count = memory_columns.parameter_count
    gradient_bytes = float(parameter_count * precision.gradient_bytes_per_parameter) * tp_parameter_fraction
    algorithm = "none"
    communication_total = 0.0
    intervals: list[Interval] = []
    transfer_s = 0.0
    pipeline: dict[str, Any] = {}
    bucket_count = 0
    if pp == 1 and micro_batches == 1:
        ends = np.cumsum(busy)
        not_optimizer = np.flatnonzero(~optimizer)
        backward_end = float(ends[not_optimizer[-1]]) if len(not_optimizer) else 0.0
        buckets = []
        if plan.data_parallel > 1:
            buckets = gradient_buckets(workload, precision.gradient_bytes_per_parameter, options.bucket_bytes)
        bucket_count = len(buckets)
        ready = np.array([float(ends[op]) for op, _ in buckets], dtype=np.float64)
        group = layout.data_group
        priced = [group_collective("all_reduce", system, group, size * tp_parameter_fraction) for _, size in buckets]
        durations = np.array([price[0] for price in priced], dtype=np.float64)
        algorithm = priced[-1][1] if priced else "none"
        starts, finishes = bucket_schedule(ready, durations)
        communication_total = ordered_sum(durations)
        exposed = max(0.0, float(finishes[-1]) - backward_end) if len(finishes) else 0.0
        pipeline_s = backward_end
        breakdown = _parts(times, None, 1.0)
        critical = np.ones(len(busy), dtype=np.bool_)
        bubble = 0.0
        if keep_timeline:
            intervals.extend(_op_intervals(workload, arrays, times, ends, optimizer, exposed, "chip"))
            intervals.extend(
                Interval(
                    track="chip/data-parallel",
                    name="all_reduce gradients",
                    category="collective",
                    start_s=float(start),
                    duration_s=float(duration),
                    args={"bytes": size * tp_parameter_fraction},
                )
                for start, duration, (_, size) in zip(starts, durations, buckets, strict=True)
            )
        optimizer_total = optimizer_s
    else:
        boundary = _boundary_bytes(workload, stage, pp) * (1.0 / tp)
        boundary_dtype = precision.activation_scale("float32")
        transfer_bytes = float(boundary.max()) * boundary_dtype if len(boundary) else 0.0
        if pp > 1 and transfer_bytes > 0:
            transfer_s = group_collective(
                "point_to_point", system, GroupShape(rows=1, cols=2), transfer_bytes, max(layout.pipeline_hops, 1)
            )[0]
        schedule = one_f_one_b(forward_s, backward_s, transfer_s, micro_batches, keep_events=keep_timeline)
        pipeline_s = schedule.makespan_s
        stage_gradients = gradient_bytes * stage_parameters
        priced = [group_collective("all_reduce", system, layout.data_group, float(size)) for size in stage_gradients]
        durations = np.array([price[0] for price in priced], dtype=np.float64)
        algorithm = next((price[1] for price in priced if price[1] != "none"), "none")
        bucket_count = pp if plan.data_parallel > 1 else 0
        communication_total = ordered_sum(durations)
        finishes = np.array(schedule.stage_end_s) + durations
        exposed = max(0.0, float(finishes.max()) - pipeline_s)
        busiest = int(np.argmax(forward_s + backward_s))
        critical = ~optimizer & (stage == busiest)
        breakdown = _parts(times, critical, float(micro_batches))
        biggest = float(stage_parameters.max())
        _add(breakdown, _parts(times, optimizer, biggest))
        optimizer_total = optimizer_s * biggest
        bubble = pipeline_s - micro_batches * float(forward_s[busiest] + backward_s[busiest])
        pipeline = {
            "stages": pp,
            "micro_batches": micro_batches,
            "forward_s_per_micro_batch": forward_s.tolist(),
            "backward_s_per_micro_batch": backward_s.tolist(),
            "busiest_stage": busiest,
            "transfer_bytes": transfer_bytes,
            "transfer_s": transfer_s,
            "bubble_s": bubble,
            "bubble_fraction": bubble / pipeline_s if pipeline_s > 0 else 0.0,
            "ideal_bubble_fraction": (pp - 1) / (micro_batches + pp - 1),
            "pipeline_hops": layout.pipeline_hops,
        }
        if keep_timeline:
            intervals.extend(_pipeline_intervals(schedule.events, transfer_s, pp))
            intervals.extend(
                Interval(
                    track=f"stage {s}/data-parallel",
                    name="all_reduce gradients",
                    category="collective",
                    start_s=float(schedule.stage_end_s[s]),
                    duration_s=float(durations[s]),
                    args={"bytes": float(stage_gradients[s])},
                )
                for s in range(pp)
                if durations[s] > 0
            )
            optimizer_start = pipeline_s + exposed
            intervals.extend(
                Interval(
                    track=f"stage {s}/compute",
                    name="optimizer",
                    category="optimizer",
                    start_s=optimizer_start,
                    duration_s=optimizer_s * float(stage_parameters[s]),
                )
                for s in range(pp)
            )
    breakdown["communication"] = exposed
    breakdown["spill"] = memory.spill_s
    breakdown["recompute"] = memory.recompute_s
    breakdown["pipeline_bubble"] = bubble
    step_time = pipeline_s + exposed + optimizer_total + remedy_s

    ingest_report: dict[str, Any] = {}
    if options.ingest is not None:
        cost = ingest(options.ingest, global_batch)
        hidden = max(0.0, cost.time_s - step_time)
        breakdown["ingest"] = hidden
        ingest_report = {
            "time_s": cost.time_s,
            "bytes_per_step": cost.bytes_per_step,
            "bound": cost.bound,
            "exposed_s": hidden,
        }
        step_time += hidden
    extra_parts = sorted(set(breakdown) - set(BREAKDOWN_PARTS))
    breakdown = {part: breakdown.get(part, 0.0) for part in (*BREAKDOWN_PARTS, *extra_parts)}

    if keep_timeline:
        track = "chip/memory" if pp == 1 and micro_batches == 1 else f"stage {worst}/memory"
        start = step_time - remedy_s - breakdown.get("ingest", 0.0)
        if memory.recompute_s > 0:
            intervals.append(
                Interval(
                    track=track,
                    name="recompute activations",
                    category="memory",
                    start_s=start,
                    duration_s=memory.recompute_s,
                )
            )
        if memory.spill_s > 0:
            intervals.append(
                Interval(
                    track=track,
                    name="spill to DIP HBM",
                    category="memory",
                    start_s=start + memory.recompute_s,
                    duration_s=memory.spill_s,
                    args={"bytes": memory.spilled_bytes},
                )
            )

    bound_names = {
        "compute": "compute",
        "memory": system.chip.local_memory_kind,
        "overhead": "latency",
        "communication": "link",
        "spill": "hbm",
        "recompute": "compute",
        "tensor_parallel": "link",
        "batchnorm_sync": "latency",
        "pipeline_bubble": "pipeline",
        "ingest": str(ingest_report.get("bound", "ingest")),
    }
    bound = bound_names[max(breakdown, key=lambda part: (breakdown[part], part))]
    splits = plan.data_parallel * micro_batches
    flops_by_phase = {phase: flops * splits for phase, flops in workload.flops_by_phase.items()}
    flops_total = ordered_sum(np.array(list(flops_by_phase.values())))
    peak = system.peak_bf16_flops_per_s
    achieved = flops_total / step_time if step_time > 0 else 0.0
    if pp == 1 and micro_batches == 1:
        phase_time = {phase: float(per_stage_phase[0, i]) for i, phase in enumerate(PHASES)}
    else:  # the busiest stage's micro-batches, and the largest stage's optimizer step
        phase_time = {
            "forward": micro_batches * float(forward_s[busiest]),
            "backward": micro_batches * float(backward_s[busiest]),
            "optimizer": optimizer_total,
        }
    batchnorm_layers = int(_batchnorm_mask(workload).sum())
    report = Report(
        workload=workload.name,
        chip=system.chip.name,
        mesh=str(system.mesh),
        num_chips=system.num_chips,
        plan=str(plan),
        precision=precision.compute_dtype,
        global_batch=global_batch,
        step_time_s=step_time,
        samples_per_s=global_batch / step_time if step_time > 0 else 0.0,
        flops_total=flops_total,
        flops_by_phase=flops_by_phase,
        achieved_flops_per_s=achieved,
        peak_flops_per_s=peak,
        mfu=achieved / peak,
        bound=bound,
        breakdown_s=breakdown,
        phase_time_s=phase_time,
        sram_peak_bytes_per_chip=max(fp.local_peak_bytes for fp in footprints),
        memory_bytes_per_chip=memory.by_category(),
        spilled_bytes_per_chip=memory.spilled_bytes,
        communication={
            "gradient_bytes": gradient_bytes,
            "buckets": bucket_count,
            "all_reduce_algorithm": algorithm,
            "all_reduce_total_s": communication_total,
            "exposed_s": exposed,
            "data_parallel_group": _describe(layout.data_group),
            "tensor_parallel_group": _describe(layout.tensor_group),
        },
        unmodeled_ops=_unmodeled(workload),
        top_modules=_top(arrays.module_names, arrays.module_index, busy),
        top_ops=_top(arrays.op_names, arrays.op_name_index, busy),
        parameter_count=parameter_count,
        memory_strategy={
            "strategy": memory.strategy,
            "stage": worst,
            "working_set_bytes": memory.total_bytes,
            "local_capacity_bytes": memory.local_capacity_bytes,
            "spilled_bytes": memory.spilled_bytes,
            "spill_s": memory.spill_s,
            "recomputed_bytes": memory.recomputed_bytes,
            "recompute_fraction": memory.recompute_fraction,
            "recompute_s": memory.recompute_s,
        },
        pipeline=pipeline,
        tensor_parallel={
            "degree": tp,
            "collectives": int(np.count_nonzero(times.tensor_parallel_s[critical])) * micro_batches,
            "blocking_s": breakdown["tensor_parallel"],
            "parameter_fraction": tp_parameter_fraction,
        }
        if tp > 1
        else {},
        batchnorm_sync={
            "enabled": bool(sync_batchnorm and plan.data_parallel > 1),
            "norm_ops": batchnorm_layers,
            "all_reduces": int(np.count_nonzero(times.batchnorm_s[critical])) * micro_batches,
            "blocking_s": breakdown["batchnorm_sync"],
        },
        ingest=ingest_report,
    )
    timeline = None
    if keep_timeline:
        report = replace(report, link_utilization=_link_utilization(system, layout, gradient_bytes, step_time))
        classes = (
            {"chip": system.num_chips}
            if pp == 1 and micro_batches == 1
            else {f"stage {s}": system.num_chips // pp for s in range(pp)}
        )
        timeline = Timeline(step_time_s=step_time, intervals=tuple(intervals), classes=classes)
    return StepResult(report=report, timeline=timeline)


def _link_utilization(
    system: System, layout: PlanLayout, gradient_bytes: float, step_time_s: float
) -> list[list[float]]:
    """Per chip, the busy fraction of its busiest link over the step from the gradient all-reduce.

    Mapped (with :mod:`hwmodel.collectives.linkloads`) when the data-parallel group is the whole mesh of a
    ``mesh2d`` fabric; empty otherwise. Built with the timeline only: mapping a large mesh costs
    more than simulating the step.
    """
    whole = layout.data_group.rows == system.mesh.rows and layout.data_group.cols == system.mesh.cols
    if not whole or system.fabric.topology != "mesh2d" or step_time_s <= 0 or system.num_chips == 1:
        return []
    try:
        from hwmodel.collectives.linkloads import link_loads
    except ImportError:  # a hwmodel without per-link loads
        return []
    busy = np.asarray(link_loads("all_reduce", system, gradient_bytes).busy_s_per_link).max(axis=2) / step_time_s
    return [[float(value) for value in row] for row in busy]


def _unmodeled(workload: Workload) -> dict[str, int]:
    cached = workload.__dict__.get("_unmodeled")
    if cached is None:
        cached = workload.unmodeled_ops
        object.__setattr__(workload, "_unmodeled", cached)
    return dict(cached)


def _describe(group: GroupShape) -> str:
    text = f"{group.rows}x{group.cols}"
    if group.row_stride > 1 or group.col_stride > 1:
        text += f" stride {group.row_stride}x{group.col_stride}"
    return text


def _op_intervals(
    workload: Workload,
    arrays: WorkloadArrays,
    times: _OpTimes,
    ends: FloatArray,
    optimizer: npt.NDArray[np.bool_],
    exposed_s: float,
    prefix: str,
) -> list[Interval]:
    intervals: list[Interval] = []
    starts = ends - times.busy_s
    for index, op in enumerate(workload.ops):
        shift = exposed_s if optimizer[index] else 0.0
        start = float(starts[index]) + shift
        op_s = float(times.costs.time_s[index])
        intervals.append(
            Interval(
                track=f"{prefix}/compute",
                name=op.name.removeprefix("aten."),
                category=op.phase,
                start_s=start,
                duration_s=op_s,
                args={"module": op.module, "flops": float(times.costs.flops[index])},
            )
        )
        if times.tensor_parallel_s[index] > 0:
            kind = "all_gather" if op.phase == "forward" else "reduce_scatter"
            intervals.append(
                Interval(
                    track=f"{prefix}/tensor-parallel",
                    name=kind,
                    category="collective",
                    start_s=start + op_s,
                    duration_s=float(times.tensor_parallel_s[index]),
                )
            )
        if times.batchnorm_s[index] > 0:
            intervals.append(
                Interval(
                    track=f"{prefix}/batchnorm-sync",
                    name="all_reduce statistics",
                    category="collective",
                    start_s=start + op_s + float(times.tensor_parallel_s[index]),
                    duration_s=float(times.batchnorm_s[index]),
                )
            )
    return intervals


def _pipeline_intervals(
    events: tuple[tuple[int, str, int, float, float], ...], transfer_s: float, stages: int
) -> list[Interval]:
    intervals: list[Interval] = []
    for stage, kind, batch, start, end in events:
        name = f"{'forward' if kind == 'F' else 'backward'} mb{batch}"
        category = "forward" if kind == "F" else "backward"
        intervals.append(
            Interval(
                track=f"stage {stage}/compute", name=name, category=category, start_s=start, duration_s=end - start
            )
        )
        sends = (kind == "F" and stage < stages - 1) or (kind == "B" and stage > 0)
        if sends and transfer_s > 0:
            intervals.append(
                Interval(
                    track=f"stage {stage}/point-to-point",
                    name=f"send {name}",
                    category="collective",
                    start_s=end,
                    duration_s=transfer_s,
                )
            )
    return intervals
