"""The result of simulating one training step: plain data, serializable to JSON.

Times in seconds, sizes in bytes, rates per second. ``breakdown_s`` splits the step time into
disjoint parts that add up to ``step_time_s``:

* ``compute``: ops whose arithmetic sets their time;
* ``memory``: ops whose local-memory traffic sets their time (SRAM on a D1, HBM on a GPU);
* ``overhead``: the fixed per-op cost (launch, barrier);
* ``communication``: collective time not hidden behind compute;
* ``spill``: traffic to backing memory for what does not fit local memory;
* ``recompute``: forward ops run again in the backward pass instead of keeping their activations;
* ``tensor_parallel``: the all-gathers and reduce-scatters of tensor-parallel layers (they block
  the ops that need them);
* ``batchnorm_sync``: the all-reduces of batch-norm statistics across the data-parallel group;
* ``pipeline_bubble``: time the busiest pipeline stage waits (ramp-up, drain and transfers).

Parts a plan does not use are 0.0.

``bound`` names the largest part in hardware terms: compute, sram/hbm, latency, link or hbm (spill).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hwmodel.errors import WorkloadError

REPORT_SCHEMA_VERSION = 1
BREAKDOWN_PARTS = (
    "compute",
    "memory",
    "overhead",
    "communication",
    "spill",
    "recompute",
    "tensor_parallel",
    "batchnorm_sync",
    "pipeline_bubble",
)


@dataclass(frozen=True, kw_only=True)
class Report:
    """Simulated figures of one training step of ``workload`` on ``num_chips`` chips."""

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
    flops_by_phase: dict[str, float]
    achieved_flops_per_s: float
    peak_flops_per_s: float
    mfu: float
    bound: str
    breakdown_s: dict[str, float]
    phase_time_s: dict[str, float]
    sram_peak_bytes_per_chip: float
    memory_bytes_per_chip: dict[str, float]
    spilled_bytes_per_chip: float
    communication: dict[str, Any]
    unmodeled_ops: dict[str, int]
    top_modules: list[tuple[str, float]] = field(default_factory=list)
    top_ops: list[tuple[str, float]] = field(default_factory=list)
    parameter_count: int = 0
    memory_strategy: dict[str, Any] = field(default_factory=dict)
    """How the working set fits: ``strategy`` (none/spill/recompute/recompute+spill), bytes and seconds."""
    pipeline: dict[str, Any] = field(default_factory=dict)
    """Pipeline stages: their per-micro-batch times, the bubble (seconds and fraction), transfers."""
    tensor_parallel: dict[str, Any] = field(default_factory=dict)
    """Tensor-parallel collectives per step on a chip of the critical class (the busiest stage under
    pipelining): their count, blocking seconds and the share of the parameters each chip holds."""
    batchnorm_sync: dict[str, Any] = field(default_factory=dict)
    """Synchronised batch norm: whether on, the captured norm ops, and the all-reduces and blocking
    seconds per step on a chip of the critical class."""
    link_utilization: list[list[float]] = field(default_factory=list)
    """Per chip (rows x cols) busy fraction of its busiest link over the step; empty if not modelled."""
    ingest: dict[str, Any] = field(default_factory=dict)
    """Ingest of the step's samples when a data feed is modelled: seconds, bytes, bound, exposed part."""
    plan_ranking: list[dict[str, Any]] = field(default_factory=list)
    """For ``plan="auto"``: every plan tried, fastest first (plan, step time, samples/s, or why not)."""
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        data = asdict(self)
        data["top_modules"] = [list(item) for item in self.top_modules]
        data["top_ops"] = [list(item) for item in self.top_ops]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
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
            values["top_modules"] = [(str(name), float(seconds)) for name, seconds in data.get("top_modules", [])]
            values["top_ops"] = [(str(name), float(seconds)) for name, seconds in data.get("top_ops", [])]
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise WorkloadError(f"malformed report: {error}") from None
