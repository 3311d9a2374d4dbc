"""The result of simulating one training step: plain data, serializable to JSON.

Times in seconds, sizes in bytes, rates per second. ``breakdown_s`` splits the step time into
disjoint parts that add up to ``step_time_s``:

* ``compute``: ops whose arithmetic sets their time;
* ``memory``: ops whose local-memory traffic sets their time (SRAM on a D1, HBM on a GPU);
* ``overhead``: the fixed per-op cost (launch, barrier);
* ``communication``: collective time not hidden behind compute;
* ``spill``: traffic to backing memory for what does not fit local memory;
* ``recompute``: forward ops run again in the backward pass instead of keeping their activations;
* ``tensor_parallel``: the collectives of tensor-parallel layers (:mod:`hwmodel.step.tensor_parallel`:
  all-reduces of paired layers, gathers and scatters of the others; they block the ops that need them);
* ``batchnorm_sync``: the all-reduces of batch-norm statistics across the data-parallel group;
* ``pipeline_bubble``: time the busiest pipeline stage waits (ramp-up, drain and transfers).

Parts a plan does not use are 0.0.

``op_class_rates`` says, per op class of the step, which peak its arithmetic ran at under the
precision (``{"matmul": {"rate": "tf32-matrix", "flops_per_s": 1.56e14}, "elementwise": {"rate":
"fp32-vector", ...}}``; :class:`~hwmodel.step.sections.OpClassRates`). A report written before the
section existed reads back with it None.

``op_cost_model`` says how the ops were costed (the kernel models or an efficiency row) and, for
the kernel models, their leave-one-device-out error per op class
(:class:`~hwmodel.step.sections.OpCostModel`), and whether they ran ``eager`` or ``compiled``; a
report written before it reads back with it None.

``confidence`` is the step's error band and the validation behind it
(:class:`~hwmodel.step.sections.Confidence`, :mod:`hwmodel.step.confidence`).

``batch_split`` is written only for a step whose global batch does not split evenly over the
replicas and micro-batches (:class:`~hwmodel.step.sections.BatchSplit`): the step is simulated for
the replica with the largest shard, ``samples_per_s`` counts the true global batch, and the
section gives the shard sizes and the idle fraction.

``bound`` names the largest part in hardware terms: compute, sram/hbm, latency, link or hbm (spill).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hwmodel.errors import WorkloadError
from hwmodel.step.sections import (
    BatchnormSync,
    BatchSplit,
    Confidence,
    GradientCommunication,
    IngestSection,
    MemoryBytes,
    MemoryStrategy,
    OpClassRates,
    OpCostModel,
    PhaseFlops,
    PhaseTimes,
    PipelineSection,
    RankedPlan,
    Section,
    TensorParallelSection,
    TimeBreakdown,
    section_dict,
    section_or_none,
)

REPORT_SCHEMA_VERSION = 1
_REQUIRED_SECTIONS: dict[str, type[Section]] = {
    "flops_by_phase": PhaseFlops,
    "breakdown_s": TimeBreakdown,
    "phase_time_s": PhaseTimes,
    "memory_bytes_per_chip": MemoryBytes,
}
_OPTIONAL_SECTIONS: dict[str, type[Section]] = {
    "communication": GradientCommunication,
    "memory_strategy": MemoryStrategy,
    "pipeline": PipelineSection,
    "tensor_parallel": TensorParallelSection,
    "batchnorm_sync": BatchnormSync,
    "ingest": IngestSection,
    "op_class_rates": OpClassRates,
    "op_cost_model": OpCostModel,
    "confidence": Confidence,
}
_WRITTEN_WHEN_PRESENT: dict[str, type[Section]] = {"batch_split": BatchSplit}
"""Sections left out of the JSON when None, so the reports of evenly split steps keep their keys."""


@dataclass(frozen=True, kw_only=True)
class Report:
    """Simulated figures of one training step of ``workload`` on ``num_chips`` chips.

    The sections are frozen records (:mod:`hwmodel.step.sections`); an optional one is None where
    the step has none (its JSON is ``{}``).
    """

    workload: str
    chip: str
    mesh: str
    num_chips: int
    plan: str
    precision: str
    global_batch: int
    step_time_s: float
    samples_per_s: float
    flops_total: float
    flops_by_phase: PhaseFlops
    achieved_flops_per_s: float
    peak_flops_per_s: float
    mfu: float
    bound: str
    breakdown_s: TimeBreakdown
    phase_time_s: PhaseTimes
    sram_peak_bytes_per_chip: float
    memory_bytes_per_chip: MemoryBytes
    spilled_bytes_per_chip: float
    communication: GradientCommunication | None
    unmodeled_ops: dict[str, int]
    top_modules: list[tuple[str, float]] = field(default_factory=list)
    top_ops: list[tuple[str, float]] = field(default_factory=list)
    parameter_count: int = 0
    memory_strategy: MemoryStrategy | None = None
    """How the working set fits: strategy (none/spill/recompute/recompute+spill), bytes and seconds."""
    pipeline: PipelineSection | None = None
    """Pipeline stages: their per-micro-batch times, the bubble (seconds and fraction), transfers."""
    tensor_parallel: TensorParallelSection | None = None
    """Tensor-parallel collectives per step on a chip of the critical class (the busiest stage under
    pipelining): their count, blocking seconds and the share of the parameters each chip holds."""
    batchnorm_sync: BatchnormSync | None = None
    """Synchronised batch norm: whether on, the captured norm ops, and the all-reduces and blocking
    seconds per step on a chip of the critical class."""
    link_utilization: list[list[float]] = field(default_factory=list)
    """Per chip (rows x cols) busy fraction of its busiest link over the step; empty if not modelled."""
    ingest: IngestSection | None = None
    """Ingest of the step's samples when a data feed is modelled: seconds, bytes, bound, exposed part."""
    plan_ranking: tuple[RankedPlan, ...] = ()
    """For ``plan="auto"``: every plan tried, fastest first (plan, step time, samples/s, or why not)."""
    op_class_rates: OpClassRates | None = None
    """Per op class of the step, the peak its arithmetic ran at (``rate`` label and FLOP/s)."""
    op_cost_model: OpCostModel | None = None
    """How the ops were costed: the model, its description and its per-class uncertainty."""
    batch_split: BatchSplit | None = None
    """How a global batch that does not split evenly over the replicas and micro-batches was split:
    shard and micro-batch sizes and counts, idle replicas and the idle fraction; None when even."""
    confidence: Confidence | None = None
    """The error band of the step, from the validation of its chip (:mod:`hwmodel.step.confidence`)."""
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        data: dict[str, Any] = {}
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            if spec_field.name in _WRITTEN_WHEN_PRESENT:
                if value is None:
                    continue
                value = section_dict(value)
            elif spec_field.name in _REQUIRED_SECTIONS or spec_field.name in _OPTIONAL_SECTIONS:
                value = section_dict(value)
            elif spec_field.name in ("top_modules", "top_ops"):
                value = [list(item) for item in value]
            elif spec_field.name == "plan_ranking":
                value = [entry.to_dict() for entry in value]
            elif spec_field.name in ("unmodeled_ops",):
                value = dict(value)
            elif spec_field.name == "link_utilization":
                value = [list(row) for row in value]
            data[spec_field.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict` output; other schema versions are refused."""
        version = data.get("schema_version")
        if version != REPORT_SCHEMA_VERSION:
            raise WorkloadError(
                f"report schema version {version!r} is not supported (expected {REPORT_SCHEMA_VERSION})"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkloadError(f"report has unknown keys: {', '.join(unknown)}")
        try:
            values = dict(data)
            for name, kind in _REQUIRED_SECTIONS.items():
                if name in data:
                    values[name] = kind.from_dict(data[name])
            for name, kind in (_OPTIONAL_SECTIONS | _WRITTEN_WHEN_PRESENT).items():
                if name in data:
                    values[name] = section_or_none(kind, data[name])
            values["top_modules"] = [(str(name), float(seconds)) for name, seconds in data.get("top_modules", [])]
            values["top_ops"] = [(str(name), float(seconds)) for name, seconds in data.get("top_ops", [])]
            values["plan_ranking"] = tuple(RankedPlan.from_dict(entry) for entry in data.get("plan_ranking", []))
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise WorkloadError(f"malformed report: {error}") from None
