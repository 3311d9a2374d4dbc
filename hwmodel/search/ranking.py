"""``plan="auto"``: enumerate the parallel plans that fit a system and rank them by throughput.

Candidates are every ``dp x tp x pp`` that multiplies to the chips and whose groups tile the mesh
(:func:`~hwmodel.search.plans.plan_layout`), with the global batch splitting evenly into replicas and
micro-batches. Each candidate is simulated (:func:`~hwmodel.step.simulate.evaluate`); those whose
working set fits neither local nor backing memory are kept in the ranking with the reason.

Workloads come from a :class:`~hwmodel.step.workload.WorkloadSource`, which may capture a step per
batch size it is asked for, so the search asks for as few sizes as it can: the per-replica batches
``global / dp`` that the data- and tensor-parallel plans need anyway, and for pipelines only the
micro-batch counts ``m`` whose micro-batch ``global / (dp x m)`` is one of those sizes (at least
``pp`` micro-batches, so the bubble stays at most half the step). A bare :class:`Workload` is one
micro-batch of one replica: the global batch grows with ``dp x m``, and pipelines try
``m = pp`` and ``m = 4 pp``.

Ranking: samples per second, highest first (equal to the shortest step at a fixed global batch);
ties broken by the plan's text, so the result is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hwmodel.errors import HwModelError, PlanError
from hwmodel.search.plans import Plan, plan_layout
from hwmodel.spec.system import System
from hwmodel.step.report import Report
from hwmodel.step.sections import RankedPlan
from hwmodel.step.simulate import StepOptions, evaluate
from hwmodel.step.workload import Workload, WorkloadSource


@dataclass(frozen=True, kw_only=True)
class PlanRanking:
    """The fastest plan's report (with ``plan_ranking`` filled in) and every entry tried."""

    report: Report
    entries: tuple[RankedPlan, ...]
    batch_sizes_requested: tuple[int, ...]


def _divisors(number: int) -> list[int]:
    return [d for d in range(1, number + 1) if number % d == 0]


def candidate_plans(source: Workload | WorkloadSource, system: System) -> list[Plan]:
    """Every plan worth simulating on ``system`` for ``source``, in a deterministic order."""
    chips = system.num_chips
    global_batch = None if isinstance(source, Workload) else source.global_batch
    plans: list[Plan] = []
    for data in _divisors(chips):
        if global_batch is not None and global_batch % data:
            continue
        for tensor in _divisors(chips // data):
            pipeline = chips // (data * tensor)
            base = Plan(data_parallel=data, tensor_parallel=tensor, pipeline_parallel=pipeline)
            try:
                plan_layout(base, system.mesh)
            except PlanError:
                continue
            if pipeline == 1:
                plans.append(base)
                continue
            if global_batch is None:
                counts = [pipeline, 4 * pipeline]
            else:
                replica_batch = global_batch // data
                needed = {global_batch // d for d in _divisors(chips) if global_batch % d == 0}
                counts = [m for m in _divisors(replica_batch) if m >= pipeline and replica_batch // m in needed]
            plans.extend(replace(base, micro_batches=m) for m in counts)
    return plans


def _rank(
    plan: Plan, source: Workload | WorkloadSource, system: System, options: StepOptions | None
) -> tuple[RankedPlan, Report | None]:
    """The ranking entry of one plan, and its report (None when the plan does not fit)."""
    try:
        report = evaluate(source, system, plan, options).report
    except HwModelError as error:
        return RankedPlan(plan=str(plan), fits=False, reason=str(error)), None
    strategy = report.memory_strategy.strategy if report.memory_strategy is not None else "none"
    entry = RankedPlan(
        plan=str(plan),
        fits=True,
        step_time_s=report.step_time_s,
        samples_per_s=report.samples_per_s,
        global_batch=report.global_batch,
        mfu=report.mfu,
        bound=report.bound,
        memory_strategy=strategy,
    )
    return entry, report


def search_plans(
    source: Workload | WorkloadSource, system: System, *, options: StepOptions | None = None
) -> PlanRanking:
    """Simulate every candidate plan and rank them; a one-line error if none fits."""
    requested: list[int] = []

    class _Recording:
        """Passes requests through to ``source`` and notes the batch sizes asked for."""

        global_batch = 0 if isinstance(source, Workload) else source.global_batch

        def workload(self, batch_size: int) -> Workload:
            if batch_size not in requested:
                requested.append(batch_size)
            assert not isinstance(source, Workload)
            return source.workload(batch_size)

    wrapped: Workload | WorkloadSource = source if isinstance(source, Workload) else _Recording()
    ranked = [_rank(plan, wrapped, system, options) for plan in candidate_plans(source, system)]
    if not any(entry.fits for entry, _ in ranked):
        reasons = "; ".join(f"{entry.plan}: {entry.reason}" for entry, _ in ranked[:3])
        raise PlanError(f"no plan fits {system.num_chips} chips of {system.chip.name} on mesh {system.mesh}: {reasons}")
    ranked.sort(key=lambda pair: (not pair[0].fits, -(pair[0].samples_per_s or 0.0), pair[0].plan))
    entries = tuple(entry for entry, _ in ranked)
    best = ranked[0][1]
    assert best is not None  # the first entry fits: fitting plans sort first
    return PlanRanking(
        report=replace(best, plan_ranking=entries), entries=entries, batch_sizes_requested=tuple(requested)
    )
