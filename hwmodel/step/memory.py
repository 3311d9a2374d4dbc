"""What one chip must hold during a step, and what it does when that does not fit its local memory.

Per chip: the weights (master copy plus a working copy in the compute dtype), the gradients, the
optimizer state and buffers stay for the whole step (an inference step: the stored weights alone);
activations and temporaries live from the op that writes them to the last op that reads them
(captured liveness), so their peak is found by sweeping the op order. Bytes are in the stored
dtypes of the :class:`~hwmodel.spec.precision.Precision` policy; on a GPU a dropout's mask is the
byte an element CUDA keeps, where the CPU capture records a mask as large as its input. A plan
that splits a replica over chips gives each chip a :class:`ChipShare`: the fraction of the
parameter bytes it holds (tensor parallelism splits matrix weights, pipeline stages hold their own
layers) and of the activations it keeps (a pipeline stage keeps the activations of the
micro-batches in flight).

When the working set exceeds local memory (a D1's 440 MB SRAM) there are two remedies, and the
cheaper is taken:

* **spill**: the excess lives in backing memory (DIP HBM at the tile edges), written out once and
  read back once per step at :func:`spill_bytes_per_s`;
* **recompute**: activations are dropped after the forward pass and recomputed in the backward
  pass (activation checkpointing). Freeing a fraction ``f`` of the activation peak costs ``f`` of
  the forward time; only activations can be freed this way, so any excess beyond them still spills.

When the excess exceeds backing memory too, the plan cannot run: a one-line error names what does
not fit and by how much.

NB: the spill model assumes the compiler spills the bytes used least often, each once per step; it
charges no extra traffic for re-reads, and does not overlap spill traffic with compute. Recompute
frees activations in proportion to forward time (uniform activation density over the forward pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.errors import MemoryCapacityError
from hwmodel.ops.gpu_lowering import MASK_BYTES_PER_ELEMENT, gpu_lowering, is_cuda_chip
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import Mesh
from hwmodel.spec.precision import Precision
from hwmodel.spec.units import DTYPE_BYTES, GIB
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.memory_arrays import memory_arrays, tensor_structure
from hwmodel.step.workload import Workload

FloatArray = npt.NDArray[np.float64]


def activation_peak_bytes(workload: Workload, precision: Precision, cuda: bool = False) -> float:
    """Peak bytes of inputs, activations and temporaries alive at once, in stored dtypes.

    A tensor is alive from the op that writes it (or from the start, for inputs) through the last
    op that reads it; one never read after its op is alive during that op only. With ``cuda``, a
    fused dropout's mask (:func:`~hwmodel.ops.gpu_lowering.gpu_lowering`) holds the byte an element
    CUDA's ``native_dropout`` keeps, not the input-sized tensor ATen's CPU dropout records.
    """
    if not workload.ops:
        return 0.0
    key = ("activation_peak", precision, cuda)
    return WORKLOAD_CACHE.get(workload, key, lambda: _activation_peak(workload, precision, cuda))


def _activation_peak(workload: Workload, precision: Precision, cuda: bool) -> float:
    count = len(workload.ops)
    arrays = memory_arrays(workload)
    scale = np.array([precision.activation_scale(name) for name in arrays.dtype_names] or [1.0])
    size = arrays.activation_nbytes * scale[arrays.activation_dtype_index]
    if cuda:
        elements = cuda_mask_elements(workload)
        size = np.where(elements > 0, elements * MASK_BYTES_PER_ELEMENT, size)
    delta = np.bincount(arrays.activation_first, weights=size, minlength=count + 1)
    delta -= np.bincount(arrays.activation_last + 1, weights=size, minlength=count + 1)
    return float(np.cumsum(delta)[:-1].max()) if len(size) else 0.0


def cuda_mask_elements(workload: Workload) -> FloatArray:
    """Per live tensor (the memory arrays' order), its elements if it is a fused dropout's mask, else 0."""

    def build() -> FloatArray:
        masks = gpu_lowering(workload).dropout_masks
        tensors = [workload.tensors[position] for position in tensor_structure(workload).live.tolist()]
        return np.array(
            [t.nbytes / DTYPE_BYTES.get(t.dtype, 1) if t.tensor_id in masks else 0.0 for t in tensors], dtype=np.float64
        ).reshape(len(tensors))

    return WORKLOAD_CACHE.get(workload, "cuda_mask_elements", build)


@dataclass(frozen=True, kw_only=True)
class ChipShare:
    """The part of one replica's state that one chip holds under a plan.

    Attributes:
        parameter_fraction: fraction of the replica's weights, gradients and optimizer state.
        activation_fraction: activation peak held, as a multiple of one (micro-)batch's peak
            (a pipeline stage: its share of the saved activations times the micro-batches in flight).
        recompute_forward_s: forward time per step that recomputing every activation would repeat
            (0 disables recomputation).
    """

    parameter_fraction: float = 1.0
    activation_fraction: float = 1.0
    recompute_forward_s: float = 0.0


WHOLE_REPLICA = ChipShare()


@dataclass(frozen=True, kw_only=True)
class MemoryFootprint:
    """Bytes one chip holds at its peak, by category, and how the excess is handled."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_state_bytes: float
    buffers_bytes: float
    activations_peak_bytes: float
    local_capacity_bytes: float
    spilled_bytes: float
    spill_s: float
    recomputed_bytes: float = 0.0
    recompute_fraction: float = 0.0
    recompute_s: float = 0.0
    strategy: str = "none"

    @property
    def total_bytes(self) -> float:
        """Peak working set of one chip before any remedy."""
        return (
            self.weights_bytes
            + self.gradients_bytes
            + self.optimizer_state_bytes
            + self.buffers_bytes
            + self.activations_peak_bytes
        )

    @property
    def local_peak_bytes(self) -> float:
        """Peak bytes in local memory: the working set less what is recomputed, capped at capacity."""
        return min(self.total_bytes - self.recomputed_bytes, self.local_capacity_bytes)


def spill_bytes_per_s(fabric: FabricSpec, mesh: Mesh | None = None) -> float:
    """Per-chip bandwidth to backing memory when every chip spills at once.

    The fabric gives each chip its share of the DIPs' bandwidth. Interior chips of a tile reach the
    edge DIPs over mesh links: the ``2(r-2) + 2(c-2)`` links into the interior of an ``r x c`` tile
    carry the traffic of its ``(r-2)(c-2)`` interior chips, so the share is also capped at
    ``link_bytes_per_s x links / interior chips``. On a 5x5 tile: 12 links x 2 TB/s / 9 chips =
    2.67 TB/s, above the DIP share (640 GB/s): the DIPs, not the mesh, bound a tile's spill.

    >>> from hwmodel.spec.presets import get_preset
    >>> DOJO_TILE_FABRIC = get_preset("d1").fabric
    >>> spill_bytes_per_s(DOJO_TILE_FABRIC, Mesh(rows=5, cols=5)) / 1e9
    640.0
    """
    share = fabric.backing_memory_bytes_per_s_per_chip
    if mesh is not None:
        share *= fabric.backing_share(mesh.num_chips)
    rows = min(fabric.tile_rows, mesh.rows) if mesh is not None else fabric.tile_rows
    cols = min(fabric.tile_cols, mesh.cols) if mesh is not None else fabric.tile_cols
    interior = max(rows - 2, 0) * max(cols - 2, 0)
    if interior == 0:
        return share
    links_in = 2 * (rows - 2) + 2 * (cols - 2)
    return min(share, fabric.link_bytes_per_s * links_in / interior)


def _remedies(
    excess: float, backing: float, activations: float, share: ChipShare, spill_time: Callable[[float], float]
) -> list[tuple[float, str, float, float, float]]:
    """(seconds, strategy, recomputed bytes, spilled bytes, recompute seconds) of each remedy that fits."""
    if excess == 0:
        return [(0.0, "none", 0.0, 0.0, 0.0)]
    options: list[tuple[float, str, float, float, float]] = []
    if excess <= backing:
        options.append((spill_time(excess), "spill", 0.0, excess, 0.0))
    if share.recompute_forward_s > 0 and activations > 0:
        recomputed = min(excess, activations)
        rest = excess - recomputed
        if rest <= backing:
            recompute_s = recomputed / activations * share.recompute_forward_s
            strategy = "recompute" if rest == 0 else "recompute+spill"
            options.append((recompute_s + spill_time(rest), strategy, recomputed, rest, recompute_s))
    return options


def held_bytes(
    workload: Workload, chip: ChipSpec, precision: Precision, share: ChipShare = WHOLE_REPLICA
) -> dict[str, float]:
    """What one chip holding ``share`` of a replica of ``workload`` holds at its peak, before any
    remedy, by category (keyed by the :class:`MemoryFootprint` field names).

    An inference step keeps no gradients, and its weights only in their stored dtype: under
    ``no_grad`` autocast casts a weight for its op and frees the copy, where training keeps the
    working copy for the backward."""
    arrays = memory_arrays(workload)
    parameters = arrays.parameter_count * share.parameter_fraction
    trains = workload.keeps_gradients
    weight_bytes = precision.weight_bytes_per_parameter if trains else DTYPE_BYTES[precision.master_weight_dtype]
    return {
        "weights_bytes": float(parameters * weight_bytes),
        "gradients_bytes": float(parameters * precision.gradient_bytes_per_parameter) if trains else 0.0,
        "optimizer_state_bytes": arrays.optimizer_state_bytes * share.parameter_fraction,
        "buffers_bytes": arrays.buffer_bytes * share.parameter_fraction,
        "activations_peak_bytes": activation_peak_bytes(workload, precision, is_cuda_chip(chip))
        * share.activation_fraction,
    }


def footprint(
    workload: Workload,
    chip: ChipSpec,
    fabric: FabricSpec,
    precision: Precision,
    share: ChipShare = WHOLE_REPLICA,
    mesh: Mesh | None = None,
) -> MemoryFootprint:
    """The working set of one chip holding ``share`` of a replica of ``workload`` (:func:`held_bytes`),
    and its remedy."""
    held = held_bytes(workload, chip, precision, share)
    activations = held["activations_peak_bytes"]
    total = sum(held.values())
    capacity = chip.local_memory_bytes
    excess = max(0.0, total - capacity)
    backing = fabric.backing_memory_bytes_per_chip * (fabric.backing_share(mesh.num_chips) if mesh else 1.0)
    bandwidth = spill_bytes_per_s(fabric, mesh) if backing > 0 else 0.0

    def spill_time(spilled: float) -> float:
        return 2.0 * spilled / bandwidth if spilled > 0 else 0.0

    options = _remedies(excess, backing, activations, share, spill_time)
    if not options:
        size = f"{capacity / GIB:.1f} GiB" if capacity >= GIB else f"{capacity / 1e6:.0f} MB"  # a GPU's, a D1's
        where = f"{size} {chip.local_memory_kind.upper()}"
        if backing > 0:
            where += f" + {backing / 1e9:.1f} GB backing memory"
        over = excess - backing - (activations if share.recompute_forward_s > 0 else 0.0)
        raise MemoryCapacityError(
            f"{workload.name} at batch {workload.batch_size} needs {total / 1e9:.2f} GB per chip "
            f"(weights {held['weights_bytes'] / 1e9:.2f}, gradients {held['gradients_bytes'] / 1e9:.2f}, "
            f"optimizer state {held['optimizer_state_bytes'] / 1e9:.2f}, activations {activations / 1e9:.2f} GB) "
            f"but {chip.name} has "
            f"{where}: {over / 1e9:.2f} GB over; use more chips or a smaller batch"
        )
    _, strategy, recomputed, spilled, recompute_s = min(options, key=lambda option: (option[0], option[1]))
    return MemoryFootprint(
        **held,
        local_capacity_bytes=capacity,
        spilled_bytes=spilled,
        spill_s=spill_time(spilled),
        recomputed_bytes=recomputed,
        recompute_fraction=recomputed / activations if activations > 0 else 0.0,
        recompute_s=recompute_s,
        strategy=strategy,
    )
