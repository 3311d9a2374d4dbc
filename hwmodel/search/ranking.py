"""``plan="auto"``: enumerate the parallel plans that fit a system and rank them by throughput.

Candidates are every ``dp x tp x pp`` that multiplies to the chips and whose groups tile the mesh
(:func:`~hwmodel.search.plans.plan_layout`). A data-parallel degree that does not divide the global
batch is a candidate too: its replicas take shards of ``ceil`` and ``floor`` samples and the step
lasts as long as the largest (:mod:`hwmodel.step.split`), which the ranking counts as it is.

Workloads come from a :class:`~hwmodel.step.workload.WorkloadSource`, which may capture a step per
batch size it is asked for, so the search asks for as few sizes as it can: the per-replica batches
``global / dp`` that the data- and tensor-parallel plans need anyway (their ceilings for degrees
that do not divide the batch), and for pipelines only the micro-batch counts ``m`` (at least ``pp``,
so the bubble stays at most half the step) whose micro-batch is one of those sizes: ``m`` dividing
the replica's batch where the degree divides the global batch, ``m = ceil(shard / size)`` where it
does not. A bare :class:`Workload` is one micro-batch of one replica: the global batch grows with
``dp x m``, and pipelines try ``m = pp`` and ``m = 4 pp``.

Pruning (branch and bound): every candidate first gets a lower bound on its step time from FLOPs
at peak and the collectives it cannot avoid but its tensor-parallel ones
(:func:`~hwmodel.search.bound.peak_bound_s`; those are priced only for a candidate that survives
this bound, as every size they move is a new price). Data parallelism over every chip is
resolved and simulated before any other plan is resolved: cheap to simulate and seldom far from
the best, it gives the bounds a plan to beat from the start (a deep pipeline, whose bound at peak
is low and whose 1F1B schedule is long to simulate, then seldom runs), and a source that is still
producing other sizes (a second process capturing one) can answer its size first, so that it is
simulated meanwhile. The others are taken best bound first; one whose bound cannot reach the
throughput of the best plan simulated so far is dropped unsimulated. One that survives is costed op
by op and bounded again (:func:`~hwmodel.search.bound.busy_bound_s`) before it is placed, fitted and
scheduled. A bound is a true lower bound, so the fastest plan and its report are those of the
exhaustive search (``prune=False``); the dropped plans stay in the ranking, marked ``pruned`` with
their bound.

Before the first plan is resolved, a source that has a ``prepare(batch_sizes)`` method is told
every per-replica batch the candidates will ask for (a source that captures can then capture two
of them in one call and derive the rest); it answers each request as it would without.

Ranking: samples per second, highest first (equal to the shortest step at a fixed global batch);
ties broken by the plan's text, so the result is deterministic; then the pruned plans, best bound
first; then the plans that do not fit, with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache

from hwmodel.errors import HwModelError, PlanError
from hwmodel.search.bound import busy_bound_s, peak_bound_s
from hwmodel.search.collector import collector_paused
from hwmodel.search.plans import Plan, data_parallel, plan_layout
from hwmodel.spec.system import System
from hwmodel.step.op_times import op_times
from hwmodel.step.report import Report
from hwmodel.step.resolve import StepContext, resolve
from hwmodel.step.sections import RankedPlan
from hwmodel.step.simulate import DEFAULT_OPTIONS, StepOptions, evaluate_context
from hwmodel.step.split import split_batch
from hwmodel.step.workload import Workload, WorkloadSource


@dataclass(frozen=True, kw_only=True)
class PlanRanking:
    """The fastest plan's report (with ``plan_ranking`` filled in) and every entry tried.

    ``evaluated`` plans were simulated in full, ``pruned`` were dropped by their lower bound.
    """

    report: Report
    entries: tuple[RankedPlan, ...]
    batch_sizes_requested: tuple[int, ...]
    evaluated: int = 0
    pruned: int = 0


@cache
def _divisors(number: int) -> tuple[int, ...]:
    return tuple(d for d in range(1, number + 1) if number % d == 0)


def _micro_batch_counts(global_batch: int | None, data: int, pipeline: int, chips: int) -> list[int]:
    """The micro-batch counts a pipeline of ``pipeline`` stages under ``data`` replicas tries."""
    if global_batch is None:
        return [pipeline, 4 * pipeline]
    needed = {-(-global_batch // d) for d in _divisors(chips)}
    if global_batch % data == 0:
        replica_batch = global_batch // data
        return [m for m in _divisors(replica_batch) if m >= pipeline and replica_batch // m in needed]
    shard = -(-global_batch // data)
    return sorted({-(-shard // size) for size in needed} & set(range(pipeline, shard + 1)))


def candidate_plans(source: Workload | WorkloadSource, system: System) -> list[Plan]:
    """Every plan worth simulating on ``system`` for ``source``, in a deterministic order."""
    chips = system.num_chips
    global_batch = None if isinstance(source, Workload) else source.global_batch
    plans: list[Plan] = []
    for data in _divisors(chips):
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
            counts = _micro_batch_counts(global_batch, data, pipeline, chips)
            plans.extend(replace(base, micro_batches=m) for m in counts)
    return plans


def requested_batch_sizes(global_batch: int, plans: list[Plan]) -> tuple[int, ...]:
    """The per-replica batches that resolving ``plans`` asks a source for (as
    :func:`~hwmodel.step.resolve.micro_batch_workload` does), ascending; a plan whose batch does
    not split is left out (it fails on its own when resolved)."""
    sizes: set[int] = set()
    for plan in plans:
        try:
            split = split_batch(global_batch, plan.data_parallel, plan.micro_batches)
        except HwModelError:
            continue
        if split is None:
            sizes.add(global_batch // (plan.data_parallel * plan.micro_batches))
            continue
        sizes.add(split.largest_micro_batch)
        if split.smallest_micro_batch > 0:
            sizes.add(split.smallest_micro_batch)
    return tuple(sorted(sizes))


def _prepare(source: WorkloadSource, plans: list[Plan]) -> None:
    """Tell ``source`` the batch sizes ``plans`` will ask for, if it has a ``prepare`` method."""
    prepare = getattr(source, "prepare", None)
    if callable(prepare):
        prepare(requested_batch_sizes(source.global_batch, plans))


class _Recording:
    """Passes requests through to a workload source and notes the batch sizes asked for."""

    def __init__(self, source: WorkloadSource) -> None:
        self.source = source
        self.global_batch = source.global_batch
        self.requested: list[int] = []

    def workload(self, batch_size: int) -> Workload:
        if batch_size not in self.requested:
            self.requested.append(batch_size)
        return self.source.workload(batch_size)


@dataclass(kw_only=True, slots=True)
class _Candidate:
    """A plan on its way through the search: its resolved step and its bound, or why it failed."""

    plan: Plan
    context: StepContext | None = None
    bound_s: float = 0.0
    failure: str | None = None

    def rate_bound(self) -> float:
        """Samples per second the plan could reach at most (infinite without a bound)."""
        if self.context is None:
            return -math.inf
        return self.context.global_batch / self.bound_s if self.bound_s > 0 else math.inf


def _finished(plan: Plan, report: Report) -> RankedPlan:
    strategy = report.memory_strategy.strategy if report.memory_strategy is not None else "none"
    return RankedPlan(
        plan=str(plan),
        fits=True,
        step_time_s=report.step_time_s,
        samples_per_s=report.samples_per_s,
        global_batch=report.global_batch,
        mfu=report.mfu,
        bound=report.bound,
        memory_strategy=strategy,
    )


def _pruned(candidate: _Candidate, bound_s: float, best_rate: float, best_plan: str) -> RankedPlan:
    """The entry of a plan dropped by its bound ``bound_s``, below ``best_plan``'s rate."""
    assert candidate.context is not None
    batch = candidate.context.global_batch
    return RankedPlan(
        plan=str(candidate.plan),
        fits=False,
        global_batch=batch,
        pruned=True,
        step_time_bound_s=bound_s,
        reason=(
            f"pruned: at least {bound_s * 1e3:.6g} ms per step, at most {batch / bound_s:,.6g} samples/s, "
            f"below {best_plan} ({best_rate:,.6g} samples/s)"
        ),
    )


def _resolved(
    plan: Plan, source: Workload | WorkloadSource, system: System, options: StepOptions, prune: bool
) -> _Candidate:
    """``plan`` resolved (its workloads asked for) and bounded at peak, or why it cannot run."""
    try:
        context = resolve(source, system, plan, options, keep_timeline=False)
        bound_s = peak_bound_s(context, tensor_parallel=False) if prune else 0.0
        return _Candidate(plan=plan, context=context, bound_s=bound_s)
    except HwModelError as error:
        return _Candidate(plan=plan, failure=str(error))


def _sort_key(entry: RankedPlan) -> tuple[int, float, str]:
    if entry.fits:
        return 0, -(entry.samples_per_s or 0.0), entry.plan
    if entry.pruned and entry.step_time_bound_s and entry.global_batch:
        return 1, -entry.global_batch / entry.step_time_bound_s, entry.plan
    return 2, 0.0, entry.plan


@dataclass(kw_only=True, slots=True)
class _Search:
    """The plans ranked so far and the fastest simulated one (samples/s, plan text, report)."""

    prune: bool
    entries: list[RankedPlan]
    evaluated: int = 0
    best: tuple[float, str, Report] | None = None

    def beaten(self, context: StepContext, bound_s: float) -> bool:
        """Whether a plan of step time at least ``bound_s`` is slower than the best one so far."""
        return self.best is not None and bound_s > 0 and context.global_batch / bound_s < self.best[0]

    def take(self, candidate: _Candidate) -> None:
        """Rank ``candidate``: drop it by its bounds, or simulate it."""
        context = candidate.context
        if context is None:
            self.entries.append(RankedPlan(plan=str(candidate.plan), fits=False, reason=candidate.failure))
            return
        try:
            if self.beaten(context, candidate.bound_s):
                self.entries.append(self._pruned(candidate, candidate.bound_s))
                return
            if self.prune and context.plan.tensor_parallel > 1:
                bound_s = peak_bound_s(context)
                if self.beaten(context, bound_s):
                    self.entries.append(self._pruned(candidate, bound_s))
                    return
            times = op_times(context)
            bound_s = busy_bound_s(context, times) if self.prune else 0.0
            if self.beaten(context, bound_s):
                self.entries.append(self._pruned(candidate, bound_s))
                return
            self.evaluated += 1
            report = evaluate_context(context, times).report
        except HwModelError as error:
            self.entries.append(RankedPlan(plan=str(candidate.plan), fits=False, reason=str(error)))
            return
        self.entries.append(_finished(candidate.plan, report))
        text = str(candidate.plan)
        if self.best is None or (-report.samples_per_s, text) < (-self.best[0], self.best[1]):
            self.best = (report.samples_per_s, text, report)

    def _pruned(self, candidate: _Candidate, bound_s: float) -> RankedPlan:
        assert self.best is not None
        return _pruned(candidate, bound_s, self.best[0], self.best[1])


def search_plans(
    source: Workload | WorkloadSource,
    system: System,
    *,
    options: StepOptions | None = None,
    prune: bool = True,
) -> PlanRanking:
    """Rank the candidate plans, dropping those whose bound cannot win (unless ``prune`` is False);
    a one-line error if none fits.

    Python's cyclic garbage collector is paused for the duration
    (:func:`~hwmodel.search.collector.collector_paused`).
    """
    with collector_paused():
        return _search_plans(source, system, options=options, prune=prune)


def _search_plans(
    source: Workload | WorkloadSource, system: System, *, options: StepOptions | None, prune: bool
) -> PlanRanking:
    wrapped: Workload | _Recording = source if isinstance(source, Workload) else _Recording(source)
    options = options or DEFAULT_OPTIONS
    plans = candidate_plans(source, system)
    if not isinstance(source, Workload):
        _prepare(source, plans)
    everywhere = data_parallel(system.mesh)
    search = _Search(prune=prune, entries=[])
    for plan in plans:
        if plan == everywhere:
            search.take(_resolved(plan, wrapped, system, options, prune))
    candidates = [_resolved(plan, wrapped, system, options, prune) for plan in plans if plan != everywhere]
    candidates.sort(key=lambda c: (-c.rate_bound(), str(c.plan)))
    for candidate in candidates:
        search.take(candidate)
    if search.best is None:
        reasons = "; ".join(f"{entry.plan}: {entry.reason}" for entry in search.entries[:3])
        raise PlanError(f"no plan fits {system.num_chips} chips of {system.chip.name} on mesh {system.mesh}: {reasons}")
    ranked = tuple(sorted(search.entries, key=_sort_key))
    return PlanRanking(
        report=replace(search.best[2], plan_ranking=ranked),
        entries=ranked,
        batch_sizes_requested=tuple(wrapped.requested) if isinstance(wrapped, _Recording) else (),
        evaluated=search.evaluated,
        pruned=sum(1 for entry in ranked if entry.pruned),
    )
