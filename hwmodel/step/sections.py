"""The sections of a :class:`~hwmodel.step.report.Report`: frozen records with units in their names.

Each section writes the JSON keys reports have always had (:meth:`Section.to_dict`) and reads them
back (:meth:`Section.from_dict`). Where a field name carries a unit the JSON key leaves out (the
keys of ``breakdown_s`` are seconds, those of ``flops_by_phase`` FLOPs), the section's
``json_suffix`` says which. A field that is None is left out of the JSON; an empty section is
``{}``.

>>> PhaseTimes(forward_s=1.0, backward_s=2.0, optimizer_s=0.5).to_dict()
{'forward': 1.0, 'backward': 2.0, 'optimizer': 0.5}
>>> PhaseTimes.from_dict({'forward': 1.0, 'backward': 2.0, 'optimizer': 0.5}).backward_s
2.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self, TypeVar

from hwmodel.errors import WorkloadError

S = TypeVar("S", bound="Section")


@dataclass(frozen=True, kw_only=True)
class Section:
    """A report section; subclasses are frozen keyword-only dataclasses."""

    json_suffix: ClassVar[str] = ""
    tuple_fields: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict under the report's keys; None fields are left out."""
        data: dict[str, Any] = {}
        for key, name in json_names(type(self)):
            value = getattr(self, name)
            if value is not None:
                data[key] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
        """Read :meth:`to_dict` output; an unknown key is a one-line error."""
        names = dict(json_names(cls))
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise WorkloadError(f"report section {cls.__name__} has unknown keys: {', '.join(unknown)}")
        values = {names[key]: tuple(value) if names[key] in cls.tuple_fields else value for key, value in data.items()}
        try:
            return cls(**values)
        except TypeError as error:
            raise WorkloadError(f"malformed report section {cls.__name__}: {error}") from None


_JSON_NAMES: dict[type[Section], tuple[tuple[str, str], ...]] = {}


def json_names(kind: type[Section]) -> tuple[tuple[str, str], ...]:
    """(JSON key, field name) of every field of a section class, in field order (worked out once)."""
    names = _JSON_NAMES.get(kind)
    if names is None:
        names = _JSON_NAMES[kind] = tuple(
            (spec_field.name.removesuffix(kind.json_suffix), spec_field.name) for spec_field in fields(kind)
        )
    return names


def section_or_none(kind: type[S], data: Mapping[str, Any] | None) -> S | None:
    """``kind.from_dict(data)``, or None for an empty (or missing) section."""
    return kind.from_dict(data) if data else None


def section_dict(section: Section | None) -> dict[str, Any]:
    """``section.to_dict()``, or ``{}`` for a missing section."""
    return section.to_dict() if section is not None else {}


@dataclass(frozen=True, kw_only=True)
class PhaseFlops(Section):
    """FLOPs of the step per phase (JSON ``flops_by_phase``)."""

    json_suffix: ClassVar[str] = "_flops"
    forward_flops: float
    backward_flops: float
    optimizer_flops: float


@dataclass(frozen=True, kw_only=True)
class PhaseTimes(Section):
    """Seconds per phase on the critical chip (JSON ``phase_time_s``)."""

    json_suffix: ClassVar[str] = "_s"
    forward_s: float
    backward_s: float
    optimizer_s: float


@dataclass(frozen=True, kw_only=True)
class TimeBreakdown(Section):
    """Disjoint parts of the step time (JSON ``breakdown_s``; see :mod:`hwmodel.step.report`).

    ``ingest_s`` is None unless a data feed was modelled.
    """

    json_suffix: ClassVar[str] = "_s"
    compute_s: float = 0.0
    memory_s: float = 0.0
    overhead_s: float = 0.0
    communication_s: float = 0.0
    spill_s: float = 0.0
    recompute_s: float = 0.0
    tensor_parallel_s: float = 0.0
    batchnorm_sync_s: float = 0.0
    pipeline_bubble_s: float = 0.0
    ingest_s: float | None = None

    def parts(self) -> dict[str, float]:
        """Part name -> seconds, the parts a step has (ingest only when modelled)."""
        return {key: float(value) for key, value in self.to_dict().items()}


@dataclass(frozen=True, kw_only=True)
class MemoryBytes(Section):
    """Bytes per chip by category (JSON ``memory_bytes_per_chip``)."""

    json_suffix: ClassVar[str] = "_bytes"
    weights_bytes: float
    gradients_bytes: float
    optimizer_state_bytes: float
    buffers_bytes: float
    activations_peak_bytes: float


@dataclass(frozen=True, kw_only=True)
class GradientCommunication(Section):
    """The data-parallel gradient all-reduce and the groups (JSON ``communication``)."""

    gradient_bytes: float
    buckets: int
    all_reduce_algorithm: str
    all_reduce_total_s: float
    exposed_s: float
    data_parallel_group: str
    tensor_parallel_group: str


@dataclass(frozen=True, kw_only=True)
class MemoryStrategy(Section):
    """How the working set fits (JSON ``memory_strategy``): none, spill, recompute or both."""

    strategy: str
    stage: int
    working_set_bytes: float
    local_capacity_bytes: float
    spilled_bytes: float
    spill_s: float
    recomputed_bytes: float
    recompute_fraction: float
    recompute_s: float


@dataclass(frozen=True, kw_only=True)
class PipelineSection(Section):
    """Pipeline stages: per-micro-batch times, the bubble and the transfers (JSON ``pipeline``)."""

    tuple_fields: ClassVar[frozenset[str]] = frozenset({"forward_s_per_micro_batch", "backward_s_per_micro_batch"})
    stages: int
    micro_batches: int
    forward_s_per_micro_batch: tuple[float, ...]
    backward_s_per_micro_batch: tuple[float, ...]
    busiest_stage: int
    transfer_bytes: float
    transfer_s: float
    bubble_s: float
    bubble_fraction: float
    ideal_bubble_fraction: float
    pipeline_hops: int


@dataclass(frozen=True, kw_only=True)
class TensorParallelSection(Section):
    """Tensor-parallel collectives per step on a chip of the critical class (JSON ``tensor_parallel``)."""

    degree: int
    collectives: int
    blocking_s: float
    parameter_fraction: float


@dataclass(frozen=True, kw_only=True)
class BatchnormSync(Section):
    """Synchronised batch norm on a chip of the critical class (JSON ``batchnorm_sync``)."""

    enabled: bool
    norm_ops: int
    all_reduces: int
    blocking_s: float


@dataclass(frozen=True, kw_only=True)
class IngestSection(Section):
    """Ingest of the step's samples when a data feed is modelled (JSON ``ingest``)."""

    time_s: float
    bytes_per_step: float
    bound: str
    exposed_s: float


@dataclass(frozen=True, kw_only=True)
class BatchSplit(Section):
    """How a global batch that does not divide evenly was split (JSON ``batch_split``).

    Replicas take shards of ``ceil(b / dp)`` and ``floor(b / dp)`` samples (the first
    ``b mod dp`` the larger), and each shard splits into ``micro_batches`` micro-batches the same
    way; every micro-batch of the step then holds ``ceil(b / (dp m))`` or ``floor(b / (dp m))``
    samples. The step lasts as long as the replica with the largest shard, whose micro-batches each
    take as long as the largest one; the others wait. ``idle_fraction`` is the share of the
    chip-time slots (``dp x m`` micro-batches of the largest size) that hold no sample,
    ``1 - b / (dp m ceil(b / (dp m)))``, counting a sample's time as equal everywhere; replicas
    whose shard is empty (``idle_replicas``, when the batch is smaller than the replica count)
    only wait, then take part in the gradient all-reduce and the optimizer step.
    """

    replicas: int
    micro_batches: int
    largest_shard: int
    largest_shard_replicas: int
    smallest_shard: int
    smallest_shard_replicas: int
    idle_replicas: int
    largest_micro_batch: int
    largest_micro_batch_count: int
    smallest_micro_batch: int
    smallest_micro_batch_count: int
    idle_fraction: float


@dataclass(frozen=True, kw_only=True)
class RankedPlan(Section):
    """One plan tried by ``plan="auto"`` (JSON ``plan_ranking`` entries): its figures, or why not.

    ``fits`` is True for a plan simulated whose working set fits. A plan the search ``pruned``
    (dropped, unsimulated, because its lower bound on the step time, ``step_time_bound_s``, could
    not beat a plan already simulated) has ``fits`` False and says so in ``reason``; ``pruned``
    is written only when True, so rankings from before read back unchanged.
    """

    plan: str
    fits: bool
    step_time_s: float | None = None
    samples_per_s: float | None = None
    global_batch: int | None = None
    mfu: float | None = None
    bound: str | None = None
    memory_strategy: str | None = None
    reason: str | None = None
    pruned: bool = False
    step_time_bound_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``pruned`` only when True."""
        data = super().to_dict()
        if not self.pruned:
            del data["pruned"]
        return data


@dataclass(frozen=True, kw_only=True)
class ClassRate(Section):
    """The peak an op class's arithmetic ran at: ``rate`` names it, ``flops_per_s`` is its value.

    ``rate``: ``"bf16-matrix"`` (BF16 or FP16 on the matrix units: a GPU's tensor cores),
    ``"tf32-matrix"`` (TF32 on them), ``"ieee-fp32-matrix"`` (IEEE FP32 matrix ops: a GPU's CUDA
    cores) or ``"fp32-vector"`` (the vector units' FP32 rate, for every non-matrix class).
    """

    rate: str
    flops_per_s: float


@dataclass(frozen=True, kw_only=True)
class OpClassRates(Section):
    """Per op class of the step, the rate its arithmetic ran at (JSON ``op_class_rates``).

    The JSON is ``{class: {"rate": ..., "flops_per_s": ...}}`` for the classes the step's ops fall
    into, in class order. ``flops_per_s`` is the ceiling before the class's efficiency and
    occupancy. On a chip with measured GEMM rates (``host``) a matrix op whose GEMMs were recorded
    runs at the measured rate of each shape, scaled by this rate over the chip's FP32 matrix rate.

    >>> rates = OpClassRates(classes=(("matmul", ClassRate(rate="tf32-matrix", flops_per_s=1.56e14)),))
    >>> rates.to_dict()
    {'matmul': {'rate': 'tf32-matrix', 'flops_per_s': 156000000000000.0}}
    >>> OpClassRates.from_dict(rates.to_dict()) == rates
    True
    """

    classes: tuple[tuple[str, ClassRate], ...]

    def to_dict(self) -> dict[str, Any]:
        """``{class: {"rate": ..., "flops_per_s": ...}}``."""
        return {name: rate.to_dict() for name, rate in self.classes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`to_dict` output; a malformed entry is a one-line error."""
        if not isinstance(data, Mapping) or not all(isinstance(entry, Mapping) for entry in data.values()):
            raise WorkloadError(f"report section {cls.__name__} must map op classes to {{rate, flops_per_s}}")
        return cls(classes=tuple((str(name), ClassRate.from_dict(entry)) for name, entry in data.items()))


@dataclass(frozen=True, kw_only=True)
class OpCostModel(Section):
    """How the step's ops were costed (JSON ``op_cost_model``).

    ``model``: ``"kernels"`` (the kernel models in hardware terms) or ``"efficiency"`` (the
    roofline scaled by an efficiency row); ``description`` names it for people; ``calibration``
    says where an efficiency row's numbers come from. For the kernel models, ``class_errors`` is
    the leave-one-device-out mean error per op class of the GPU kernel models (a fraction) and
    ``uncertainty`` says what it is (on a chip no kernel was measured on, a GPU-derived proxy);
    ``fallback_ops`` counts matrix ops without GEMM shapes, costed by the roofline at the model's
    fraction of peak. ``execution`` is how the ops ran (``eager`` or ``compiled``) and
    ``fused_groups`` how many fused kernels a compiled step runs.

    >>> section = OpCostModel(model="kernels", description="d", uncertainty="u", class_errors=(("bmm", 0.13),))
    >>> section.to_dict()["class_errors"]
    {'bmm': 0.13}
    >>> OpCostModel.from_dict(section.to_dict()) == section
    True
    """

    model: str
    description: str
    calibration: str | None = None
    uncertainty: str | None = None
    class_errors: tuple[tuple[str, float], ...] = ()
    fallback_ops: int = 0
    execution: str = "eager"
    fused_groups: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``class_errors`` as ``{class: error}``."""
        data = super().to_dict()
        data["class_errors"] = dict(self.class_errors)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read :meth:`to_dict` output; a malformed entry is a one-line error."""
        values = dict(data)
        errors = values.pop("class_errors", {})
        if not isinstance(errors, Mapping):
            raise WorkloadError(f"report section {cls.__name__}: class_errors must map op classes to fractions")
        section = super().from_dict(values)
        return cls(**{**section.__dict__, "class_errors": tuple((str(k), float(v)) for k, v in errors.items())})

    def error_range(self) -> tuple[float, float] | None:
        """Least and largest per-class error, or None without any."""
        values = [error for _, error in self.class_errors]
        return (min(values), max(values)) if values else None


@dataclass(frozen=True, kw_only=True)
class Confidence(Section):
    """How far the simulated step may be off (JSON ``confidence``).

    ``band`` is the largest relative error of the validation that backs it (0.1: within +-10%),
    ``median`` its typical one (both None where nothing backs the step); ``source`` names the
    validation (``step validation``, ``kernel leave-one-device-out``, or for a chip never
    measured, ``GPU leave-one-device-out proxy``), ``basis`` its figures; ``notes`` say what the
    validation does not cover (a precision other than FP32, compiled execution).
    """

    tuple_fields: ClassVar[frozenset[str]] = frozenset({"notes"})

    band: float | None = None
    median: float | None = None
    source: str
    basis: str
    notes: tuple[str, ...] = ()

    def label(self) -> str:
        """``+-12%`` (``?`` without a band), for a table cell."""
        return "?" if self.band is None else f"+-{self.band:.0%}"
