"""What one chip must hold during a step, and what does not fit its local memory.

Per chip (one data-parallel replica): the weights (master copy plus a working copy in the compute
dtype), the gradients, the optimizer state and buffers stay for the whole step; activations and
temporaries live from the op that writes them to the last op that reads them (captured liveness),
so their peak is found by sweeping the op order. Bytes are in the stored dtypes of the
:class:`~hwmodel.precision.Precision` policy.

When the working set exceeds local memory (a D1's 440 MB SRAM), the excess is spilled to backing
memory (DIP HBM): written out once and read back once per step, at the chip's share of that
memory's bandwidth. When it exceeds local plus backing memory, the plan cannot run.

NB: the spill model assumes the compiler spills the bytes used least often, each once per step;
it charges no extra traffic for re-reads, and does not overlap spill traffic with compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodel.errors import MemoryCapacityError
from hwmodel.fabric import FabricSpec
from hwmodel.chip import ChipSpec
from hwmodel.precision import Precision
from hwmodel.workload import Workload


@dataclass(frozen=True, kw_only=True)
class MemoryFootprint:
    """Bytes one chip holds at its peak, by category, and what spills."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_state_bytes: float
    buffers_bytes: float
    activations_peak_bytes: float
    local_capacity_bytes: float
    spilled_bytes: float
    spill_s: float

    @property
    def total_bytes(self) -> float:
        """Peak working set of one chip."""
        return (
            self.weights_bytes + self.gradients_bytes + self.optimizer_state_bytes + self.buffers_bytes
            + self.activations_peak_bytes
        )

    @property
    def local_peak_bytes(self) -> float:
        """Peak bytes in local memory (the working set, capped at the capacity)."""
        return min(self.total_bytes, self.local_capacity_bytes)

    def by_category(self) -> dict[str, float]:
        """Category -> bytes, for reports."""
        return {
            "weights": self.weights_bytes,
            "gradients": self.gradients_bytes,
            "optimizer_state": self.optimizer_state_bytes,
            "buffers": self.buffers_bytes,
            "activations_peak": self.activations_peak_bytes,
        }


def activation_peak_bytes(workload: Workload, precision: Precision) -> float:
    """Peak bytes of inputs, activations and temporaries alive at once, in stored dtypes.

    A tensor is alive from the op that writes it (or from the start, for inputs) through the last
    op that reads it; one never read after its op is alive during that op only.
    """
    count = len(workload.ops)
    if count == 0:
        return 0.0
    delta = np.zeros(count + 1, dtype=np.float64)
    for tensor in workload.tensors:
        if tensor.kind not in ("activation", "input"):
            continue
        first = max(tensor.first_op, 0)
        last = max(tensor.last_op, first)
        size = tensor.nbytes * precision.activation_scale(tensor.dtype)
        delta[first] += size
        delta[last + 1] -= size
    return float(np.cumsum(delta)[:-1].max())


def footprint(workload: Workload, chip: ChipSpec, fabric: FabricSpec, precision: Precision) -> MemoryFootprint:
    """The per-chip working set of one replica of ``workload``, and its spill to backing memory."""
    parameters = workload.parameter_count
    static = {"optimizer_state": 0.0, "buffer": 0.0}
    for tensor in workload.tensors:
        if tensor.kind in static:
            static[tensor.kind] += tensor.nbytes
    weights = float(parameters * precision.weight_bytes_per_parameter)
    gradients = float(parameters * precision.gradient_bytes_per_parameter)
    activations = activation_peak_bytes(workload, precision)
    total = weights + gradients + static["optimizer_state"] + static["buffer"] + activations
    capacity = chip.local_memory_bytes
    spilled = max(0.0, total - capacity)
    backing = fabric.backing_memory_bytes_per_chip
    if spilled > backing:
        where = f"{capacity / 1e6:.0f} MB {chip.local_memory_kind.upper()}"
        if backing > 0:
            where += f" + {backing / 1e9:.1f} GB backing memory"
        raise MemoryCapacityError(
            f"{workload.name} at batch {workload.batch_size} needs {total / 1e9:.2f} GB per chip "
            f"(weights {weights / 1e9:.2f}, gradients {gradients / 1e9:.2f}, optimizer state "
            f"{static['optimizer_state'] / 1e9:.2f}, activations {activations / 1e9:.2f} GB) but {chip.name} has "
            f"{where}: {(spilled - backing) / 1e9:.2f} GB over; use more chips or a smaller batch"
        )
    spill_s = 2.0 * spilled / fabric.backing_memory_bytes_per_s_per_chip if spilled > 0 else 0.0
    return MemoryFootprint(
        weights_bytes=weights,
        gradients_bytes=gradients,
        optimizer_state_bytes=static["optimizer_state"],
        buffers_bytes=static["buffer"],
        activations_peak_bytes=activations,
        local_capacity_bytes=capacity,
        spilled_bytes=spilled,
        spill_s=spill_s,
    )
