"""Simulate one step under a given plan, or under the fastest plan that fits (``plan="auto"``)."""

from __future__ import annotations

from hwmodel.errors import PlanError
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.search.plans import Plan, data_parallel
from hwmodel.search.ranking import search_plans
from hwmodel.spec.precision import MIXED_BF16, Precision
from hwmodel.spec.system import System
from hwmodel.step.report import Report
from hwmodel.step.simulate import DEFAULT_BUCKET_BYTES, StepOptions, evaluate
from hwmodel.step.workload import Workload, WorkloadSource
from hwmodel.studies.ingest import DataFeed


def simulate(
    source: Workload | WorkloadSource,
    system: System,
    *,
    plan: Plan | str | None = None,
    precision: Precision = MIXED_BF16,
    efficiency: EfficiencyTable | None = None,
    bucket_bytes: float = DEFAULT_BUCKET_BYTES,
    sync_batchnorm: bool | None = None,
    recompute: bool = True,
    ingest: DataFeed | None = None,
    execution: str | None = None,
) -> Report:
    """Simulate one training step; ``plan`` defaults to data parallelism over every chip.

    ``plan="auto"`` searches the plans that fit (:func:`hwmodel.search.ranking.search_plans`) and returns
    the fastest one's report, with the ranking in ``report.plan_ranking``. ``execution``: ``"eager"``
    or ``"compiled"`` (:mod:`hwmodel.ops.fusion`); None follows the chip's ``default_execution``.
    """
    options = StepOptions(
        precision=precision,
        efficiency=efficiency,
        bucket_bytes=bucket_bytes,
        sync_batchnorm=sync_batchnorm,
        recompute=recompute,
        ingest=ingest,
        execution=execution,
    )
    if isinstance(plan, str):
        if plan.strip().lower() != "auto":
            raise PlanError(f'plan must be a Plan or "auto", got {plan!r}')
        ranking = search_plans(source, system, options=options)
        return ranking.report
    return evaluate(source, system, plan or data_parallel(system.mesh), options).report
