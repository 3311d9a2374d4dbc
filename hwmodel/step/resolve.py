"""The first stage of a simulated step: resolve what is simulated into a :class:`StepContext`.

The workload of one micro-batch of one replica, the plan's groups on the mesh, the efficiency row
(None where the kernel models cost the ops),
the precision, and the per-op arrays every later stage reads (:mod:`hwmodel.ops.cost`,
:mod:`hwmodel.step.memory`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwmodel.ops.arrays import WorkloadArrays, workload_arrays
from hwmodel.ops.cost_model import chip_table
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.search.plans import Plan, PlanLayout, plan_layout
from hwmodel.spec.precision import MIXED_BF16, Precision
from hwmodel.spec.system import System
from hwmodel.step.memory_arrays import MemoryArrays, memory_arrays
from hwmodel.step.sections import BatchSplit
from hwmodel.step.split import split_batch
from hwmodel.step.workload import Workload, WorkloadSource
from hwmodel.studies.ingest import DataFeed

DEFAULT_BUCKET_BYTES = 25e6
"""Gradient bucket size: PyTorch DDP's default ``bucket_cap_mb=25``."""


@dataclass(frozen=True, kw_only=True)
class StepOptions:
    """What else shapes a step besides the workload, the system and the plan.

    Attributes:
        precision: the mixed-precision policy.
        efficiency: fractions of peak per op class that cost every op on the roofline (default:
            the chip's own model, :attr:`~hwmodel.spec.chip.ChipSpec.op_cost_model`).
        bucket_bytes: gradient bucket size of the data-parallel all-reduce.
        sync_batchnorm: synchronise batch-norm statistics across data-parallel replicas; ``None``
            follows the chip (:attr:`~hwmodel.spec.chip.ChipSpec.sync_batchnorm`).
        recompute: allow activation recomputation as a remedy when memory does not fit.
        ingest: the data feed whose per-step ingest is overlapped with the step (None: free).
        execution: ``"eager"`` or ``"compiled"`` (:mod:`hwmodel.ops.fusion`); ``None`` follows the
            chip (:attr:`~hwmodel.spec.chip.ChipSpec.default_execution`).
    """

    precision: Precision = MIXED_BF16
    efficiency: EfficiencyTable | None = None
    bucket_bytes: float = DEFAULT_BUCKET_BYTES
    sync_batchnorm: bool | None = None
    recompute: bool = True
    ingest: DataFeed | None = None
    execution: str | None = None


@dataclass(eq=False, kw_only=True, slots=True)
class StepContext:
    """Everything the later stages of a step read, resolved once.

    Attributes:
        workload: one micro-batch of one replica (the largest, when the batch does not split evenly).
        global_batch: samples per step over every replica and micro-batch.
        split: how an uneven global batch was split (None when it splits evenly).
        smaller_workload: the smaller micro-batch of an uneven split (None when even or empty).
        tp_parameter_fraction: share of the parameters one chip of a tensor-parallel group holds
            (matrix weights split ``tp`` ways, the rest replicated).
        sync_batchnorm: whether batch-norm statistics are all-reduced over the data-parallel group.
        gradient_bytes: gradient bytes one chip all-reduces per step (its parameter share).
    """

    workload: Workload
    global_batch: int
    split: BatchSplit | None
    smaller_workload: Workload | None
    system: System
    plan: Plan
    layout: PlanLayout
    options: StepOptions
    table: EfficiencyTable | None
    arrays: WorkloadArrays
    memory: MemoryArrays
    tp_parameter_fraction: float
    sync_batchnorm: bool
    gradient_bytes: float
    keep_timeline: bool

    @property
    def precision(self) -> Precision:
        """The mixed-precision policy of the step."""
        return self.options.precision

    @property
    def execution(self) -> str:
        """How the step's ops run: the options' mode, else the chip's default."""
        return self.options.execution or self.system.chip.default_execution

    @property
    def single_stage(self) -> bool:
        """One stage and one micro-batch: the data-parallel (and tensor-parallel) schedule."""
        return self.plan.pipeline_parallel == 1 and self.plan.micro_batches == 1


@dataclass(frozen=True, kw_only=True, slots=True)
class MicroBatches:
    """What one step simulates of a global batch: the largest micro-batch's workload, the batch and
    its split (None when even), and the workload of the smaller micro-batches of a ragged split
    (None when even, or when they are empty)."""

    workload: Workload
    global_batch: int
    split: BatchSplit | None = None
    smaller: Workload | None = None


def micro_batch_workload(source: Workload | WorkloadSource, plan: Plan) -> MicroBatches:
    """The workload of one micro-batch of one replica under ``plan``, and the global batch.

    A :class:`Workload` given directly is taken as one micro-batch of one replica; a
    :class:`WorkloadSource` is asked for ``global_batch / (data_parallel x micro_batches)``, or,
    when that does not divide (:func:`~hwmodel.step.split.split_batch`), for its ceiling (the
    micro-batch that sets the step's time) and its floor (for the step's FLOPs).
    """
    if isinstance(source, Workload):
        return MicroBatches(workload=source, global_batch=source.batch_size * plan.data_parallel * plan.micro_batches)
    global_batch = source.global_batch
    split = split_batch(global_batch, plan.data_parallel, plan.micro_batches)
    if split is None:
        return MicroBatches(
            workload=source.workload(global_batch // (plan.data_parallel * plan.micro_batches)),
            global_batch=global_batch,
        )
    smaller = source.workload(split.smallest_micro_batch) if split.smallest_micro_batch > 0 else None
    return MicroBatches(
        workload=source.workload(split.largest_micro_batch), global_batch=global_batch, split=split, smaller=smaller
    )


def resolve(
    source: Workload | WorkloadSource, system: System, plan: Plan, options: StepOptions, *, keep_timeline: bool
) -> StepContext:
    """The context of one step of ``source`` on ``system`` under ``plan``."""
    layout = plan_layout(plan, system.mesh)
    micro = micro_batch_workload(source, plan)
    workload = micro.workload
    memory = memory_arrays(workload)
    matrix_fraction = 0.0
    if memory.parameter_bytes > 0:
        matrix_fraction = memory.matrix_parameter_bytes / memory.parameter_bytes
    sync_batchnorm = options.sync_batchnorm if options.sync_batchnorm is not None else system.chip.sync_batchnorm
    tp_parameter_fraction = 1.0 - matrix_fraction + matrix_fraction / plan.tensor_parallel
    gradient_bytes = 0.0
    if workload.keeps_gradients:
        gradient_bytes = float(memory.parameter_count * options.precision.gradient_bytes_per_parameter)
    return StepContext(
        workload=workload,
        global_batch=micro.global_batch,
        split=micro.split,
        smaller_workload=micro.smaller,
        system=system,
        plan=plan,
        layout=layout,
        options=options,
        table=chip_table(system.chip, options.efficiency),
        arrays=workload_arrays(workload),
        memory=memory,
        tp_parameter_fraction=tp_parameter_fraction,
        sync_batchnorm=sync_batchnorm,
        gradient_bytes=gradient_bytes * tp_parameter_fraction,
        keep_timeline=keep_timeline,
    )
