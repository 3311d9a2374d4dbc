"""Simulate one training step of a captured workload on a system under a parallel plan.

Simulation is by equivalence class: every data-parallel replica does the same work, the chips of a
tensor-parallel group are alike, and the chips of one pipeline stage are alike, so the scheduler
(:mod:`hwmodel.step.timeline`) runs once per class (one class, or one per stage) and the mesh enters
through the cost of the collectives (:mod:`hwmodel.collectives.pricing`). A 3,000-chip step costs what a
25-chip one does.

One chip's step under a plan ``dp x tp x pp`` with ``m`` micro-batches:

* **Ops** (:mod:`hwmodel.ops.cost`) in capture order on the compute stream. Tensor parallelism
  shards as Megatron-LM does (:mod:`hwmodel.step.tensor_parallel`): column- and row-parallel pairs
  of matrix ops with the ops between them on the shard (their FLOPs, bytes and activations divided
  by ``tp``), an all-reduce after each row-parallel op forward and each column-parallel input
  gradient backward, the output projection and its loss split by vocabulary; a matrix op in no
  pair splits its output channels and gathers them forward (reduce-scatters backward). Every
  collective blocks the next op. Weights of matrix ops are split ``tp`` ways too (memory,
  optimizer, gradients).
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

A step runs as a short pipeline of stages, each a module of its own: :func:`~hwmodel.step.resolve.resolve`
the workload and plan, :func:`~hwmodel.step.op_times.op_times` (cost every op),
:func:`~hwmodel.step.placement.place` (ops on stages, memory per stage),
:func:`~hwmodel.step.schedule.schedule_step`, and :func:`~hwmodel.step.reporting.build_report`.

The same inputs give the same report, bit for bit: every sum is sequential or correctly rounded.

The records passed between the stages (:class:`~hwmodel.step.resolve.StepContext`,
:class:`~hwmodel.step.op_times.OpTimes`, :class:`~hwmodel.step.placement.StagePlacement`, ...) are
built once per evaluation and only read afterwards; they are slotted rather than frozen because a
frozen dataclass costs measurably more to build, and thousands of evaluations run per plan search.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hwmodel.search.plans import Plan
from hwmodel.spec.system import System
from hwmodel.step.op_times import OpTimes, op_times
from hwmodel.step.placement import fit_memory, place
from hwmodel.step.report import Report
from hwmodel.step.reporting import build_report, build_timeline, link_utilization
from hwmodel.step.resolve import DEFAULT_BUCKET_BYTES, StepContext, StepOptions, resolve
from hwmodel.step.schedule import schedule_step
from hwmodel.step.timeline import Timeline
from hwmodel.step.workload import Workload, WorkloadSource

__all__ = ["DEFAULT_BUCKET_BYTES", "StepOptions", "StepResult", "evaluate", "evaluate_context"]

DEFAULT_OPTIONS = StepOptions()
"""The options of a step when none are given (frozen: shared by every such evaluation)."""


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """A simulated step: its report and, when asked for, its timeline."""

    report: Report
    timeline: Timeline | None = None


def evaluate(
    source: Workload | WorkloadSource,
    system: System,
    plan: Plan,
    options: StepOptions | None = None,
    *,
    keep_timeline: bool = False,
) -> StepResult:
    """Simulate one step of ``source`` on ``system`` under ``plan``; the timeline only on request."""
    context = resolve(source, system, plan, options or DEFAULT_OPTIONS, keep_timeline=keep_timeline)
    return evaluate_context(context, op_times(context))


def evaluate_context(context: StepContext, times: OpTimes) -> StepResult:
    """The rest of :func:`evaluate` once the step is resolved and its ops costed (a plan search
    bounds a plan from its op times before it decides to finish it)."""
    placement = place(context, times)
    fit = fit_memory(context, placement)
    schedule = schedule_step(context, times, placement)
    report = build_report(context, times, placement, fit, schedule)
    if not context.keep_timeline:
        return StepResult(report=report)
    report = replace(report, link_utilization=link_utilization(context, report.step_time_s))
    return StepResult(report=report, timeline=build_timeline(context, schedule, fit, report))
