"""Simulate one training step of a captured workload on a system under a plan.

Data parallelism is simulated by equivalence class: every replica does the same work, so the op
timeline runs once, for one chip, and the mesh enters through the cost of the gradient all-reduce.
That keeps a 3,000-chip step as cheap to evaluate as a 25-chip one.

The timeline of one chip: forward ops, then backward ops, back to back on the compute stream (each
op's time from :mod:`hwmodel.cost`). Gradients are all-reduced in buckets (as PyTorch DDP does,
25 MB by default) in the order the backward pass finishes them: a bucket starts when its last
gradient is ready and the previous bucket is done, so communication overlaps the rest of the
backward pass. The optimizer starts when every bucket is reduced. Spill traffic to backing memory
is added on top (not overlapped). The same inputs give the same report, bit for bit: every sum is
sequential or correctly rounded.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hwmodel.collectives import mesh_all_reduce
from hwmodel.cost import OpCosts, exact_sum, op_costs, workload_arrays
from hwmodel.efficiency import EfficiencyTable, efficiency_for
from hwmodel.errors import PlanError
from hwmodel.memory import MemoryFootprint, footprint
from hwmodel.plan import Plan, data_parallel
from hwmodel.precision import MIXED_BF16, Precision
from hwmodel.report import Report
from hwmodel.system import System
from hwmodel.workload import PHASES, Workload, WorkloadSource

DEFAULT_BUCKET_BYTES = 25e6
"""Gradient bucket size: PyTorch DDP's default ``bucket_cap_mb=25``."""
TOP_ENTRIES = 10


def gradient_buckets(workload: Workload, bytes_per_element: float, bucket_bytes: float) -> list[tuple[int, float]]:
    """(op index after which the bucket is ready, bucket bytes), in backward order.

    Parameters that receive no gradient (unused in the step) are skipped.
    """
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
    return buckets


def _resolve(source: Workload | WorkloadSource, plan: Plan) -> tuple[Workload, int]:
    """The per-replica workload of ``plan`` and the global batch it adds up to."""
    if isinstance(source, Workload):
        return source, source.batch_size * plan.data_parallel
    global_batch = source.global_batch
    if global_batch % plan.data_parallel:
        raise PlanError(
            f"global batch {global_batch} does not split over {plan.data_parallel} data-parallel replicas; "
            f"use a batch that is a multiple of {plan.data_parallel}"
        )
    return source.workload(global_batch // plan.data_parallel), global_batch


def _top(names: tuple[str, ...], index: np.ndarray, time_s: np.ndarray) -> list[tuple[str, float]]:
    totals = np.bincount(index, weights=time_s, minlength=len(names))
    order = sorted(range(len(names)), key=lambda i: (-totals[i], names[i]))[:TOP_ENTRIES]
    return [(names[i], float(totals[i])) for i in order if totals[i] > 0]


def simulate(
    source: Workload | WorkloadSource,
    system: System,
    *,
    plan: Plan | None = None,
    precision: Precision = MIXED_BF16,
    efficiency: EfficiencyTable | None = None,
    bucket_bytes: float = DEFAULT_BUCKET_BYTES,
) -> Report:
    """Simulate one training step; ``plan`` defaults to data parallelism over every chip."""
    plan = plan or data_parallel(system.mesh)
    plan.check_fits(system.mesh)
    if plan.tensor_parallel > 1 or plan.pipeline_parallel > 1:
        raise PlanError(f"plan {plan}: only data parallelism is simulated by this version")
    workload, global_batch = _resolve(source, plan)
    table = efficiency or efficiency_for(system.chip.name)
    costs = op_costs(workload, system.chip, table, precision)
    memory = footprint(workload, system.chip, system.fabric, precision)
    return _assemble(workload, system, plan, precision, costs, memory, global_batch, bucket_bytes)


def _assemble(
    workload: Workload,
    system: System,
    plan: Plan,
    precision: Precision,
    costs: OpCosts,
    memory: MemoryFootprint,
    global_batch: int,
    bucket_bytes: float,
) -> Report:
    arrays = workload_arrays(workload)
    phase_time = {phase: exact_sum(costs.time_s[arrays.phase_index == i]) for i, phase in enumerate(PHASES)}
    end_times = np.cumsum(costs.time_s)
    optimizer_ops = np.flatnonzero(arrays.phase_index == PHASES.index("optimizer"))
    backward_end = float(end_times[optimizer_ops[0] - 1]) if len(optimizer_ops) and optimizer_ops[0] > 0 else (
        float(end_times[-1]) if len(end_times) else 0.0
    )

    gradient_bytes = float(workload.parameter_count * precision.gradient_bytes_per_parameter)
    communication_end = 0.0
    communication_total = 0.0
    algorithm = "none"
    buckets = gradient_buckets(workload, precision.gradient_bytes_per_parameter, bucket_bytes) if plan.data_parallel > 1 else []
    for ready_op, size in buckets:
        collective = mesh_all_reduce(system.mesh, system.fabric, size)
        start = max(float(end_times[ready_op]), communication_end)
        communication_end = start + collective.time_s
        communication_total += collective.time_s
        algorithm = collective.algorithm
    exposed_communication = max(0.0, communication_end - backward_end)

    compute_bound = costs.compute_bound
    op_compute = np.where(compute_bound, costs.compute_s, 0.0)
    op_memory = np.where(compute_bound, 0.0, costs.memory_s)
    breakdown = {
        "compute": exact_sum(op_compute),
        "memory": exact_sum(op_memory),
        "overhead": costs.overhead_s * len(costs.time_s),
        "communication": exposed_communication,
        "spill": memory.spill_s,
    }
    step_time = sum(phase_time.values()) + exposed_communication + memory.spill_s
    bound_names = {
        "compute": "compute",
        "memory": system.chip.local_memory_kind,
        "overhead": "latency",
        "communication": "link",
        "spill": "hbm",
    }
    bound = bound_names[max(breakdown, key=lambda part: (breakdown[part], part))]

    replicas = plan.data_parallel
    flops_by_phase = {phase: flops * replicas for phase, flops in workload.flops_by_phase.items()}
    flops_total = exact_sum(np.array(list(flops_by_phase.values())))
    peak = system.peak_bf16_flops_per_s
    achieved = flops_total / step_time if step_time > 0 else 0.0
    return Report(
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
        sram_peak_bytes_per_chip=memory.local_peak_bytes,
        memory_bytes_per_chip=memory.by_category(),
        spilled_bytes_per_chip=memory.spilled_bytes,
        communication={
            "gradient_bytes": gradient_bytes,
            "buckets": len(buckets),
            "all_reduce_algorithm": algorithm,
            "all_reduce_total_s": communication_total,
            "exposed_s": exposed_communication,
        },
        unmodeled_ops=workload.unmodeled_ops,
        top_modules=_top(arrays.module_names, arrays.module_index, costs.time_s),
        top_ops=_top(arrays.op_names, arrays.op_name_index, costs.time_s),
        parameter_count=workload.parameter_count,
    )


def simulate_many(
    sources: Mapping[str, Workload | WorkloadSource], system: System, **options: object
) -> dict[str, Report]:
    """Simulate several workloads on one system (same options for each)."""
    return {name: simulate(source, system, **options) for name, source in sources.items()}  # type: ignore[arg-type]
