"""Time of every op of a workload on one chip: compute, local-memory traffic and occupancy.

For each op (vectorised over the whole workload with numpy):

* ``compute_s = flops / (peak x efficiency x occupancy)``: matrix ops (matmul, convolution,
  attention) run at the precision's matrix rate (:meth:`~hwmodel.spec.chip.ChipSpec.matrix_rate_for`:
  BF16 on the matrix units, TF32 on them, or IEEE FP32), every other op on the vector units.
* Occupancy: the op's output is cut into work tiles of ``*_tile_output_elements``; tiles are dealt to
  the chip's ``compute_units`` in waves, and the last wave leaves units idle:
  ``occupancy = tiles / (ceil(tiles / units) x units)``. An op too small to give every unit a tile
  cannot use the whole chip: a roofline alone would miss that.
* ``memory_s``: bytes read and written over the local memory's bandwidth, or, on a chip with
  measured cache tiers (the host), over the rate of a copy of the op's footprint (bytes read plus
  written), interpolated between the measured footprints (:func:`tiered_bandwidth`). With SRAM
  spread over the units (D1) only the occupied units' SRAM ports serve the op, so occupancy scales
  it too; with one shared HBM it does not. Full-duplex memory overlaps loads and stores (``max``),
  shared memory adds them.
* GEMM shapes (:mod:`hwmodel.ops.matrix`): on a chip with measured GEMM rates (``ChipSpec.gemm_rates``), a matrix
  op whose GEMMs the capture recorded (``OpRecord.gemms``) takes their time at the measured rate of
  each shape instead of ``flops / peak``, its bytes only a floor at the plain bandwidth (the
  measured product moved and packed them), and every op lowered to GEMMs (a per-sample
  convolution, CPU flash attention) is then a ``matmul``-class op: its kernel is BLAS calls. The
  other matrix ops there (oneDNN convolutions) move their bytes at the nearest cache's rate.
* Element functions (:mod:`hwmodel.ops.element_rates`): on a chip that measured them
  (``ChipSpec.element_rates``: the host's ``sqrt``, ``exp``, ``gelu``...), an op of such a function
  computes for its output elements at the measured rate, which needs no fitted efficiency.
* ``time_s = max(compute_s, memory_s) + overhead_s``: a kernel overlaps its own arithmetic and
  data movement, and pays a fixed launch or barrier cost: the chip's ``op_overhead_s`` times its
  class's calibrated overhead factor, once per kernel (a ``_foreach_`` op over ``n`` tensors is
  ``n`` kernels on a chip without multi-tensor kernels).

Each aten op reads and writes its operands here (eager execution); compiled execution fuses them
afterwards (:mod:`hwmodel.ops.fusion`). Not modelled: which data an earlier op left in a cache
(an op's footprint alone picks its tier), data-dependent sparsity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.ops.arrays import WorkloadArrays, workload_arrays
from hwmodel.ops.classes.registry import op_classes
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.ops.element_rates import element_timed_seconds
from hwmodel.ops.matrix import class_indices, gemm_seconds, gemm_timed, in_cache_matrix
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.precision import Precision
from hwmodel.step.workload import PHASES, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class OpCosts:
    """Per-op times on one chip (seconds), aligned with ``workload.ops``."""

    compute_s: FloatArray
    memory_s: FloatArray
    overhead_s: FloatArray
    time_s: FloatArray
    flops: FloatArray

    @property
    def compute_bound(self) -> npt.NDArray[np.bool_]:
        """True where arithmetic, not memory traffic, sets the op's time."""
        return np.asarray(self.compute_s >= self.memory_s)


def occupancy(output_elements: FloatArray, tile_elements: float | FloatArray, units: int) -> FloatArray:
    """Fraction of ``units`` busy on average when ``output_elements`` are cut into tiles.

    >>> occupancy(np.array([64.0, 64.0 * 354, 64.0 * 355, 0.0]), 64, 354).round(4).tolist()
    [0.0028, 1.0, 0.5014, 1.0]
    """
    tiles = np.ceil(output_elements / tile_elements)
    waves = np.ceil(tiles / units)
    with np.errstate(invalid="ignore", divide="ignore"):
        busy = np.where(tiles > 0, tiles / (waves * units), 1.0)
    return np.asarray(busy, dtype=np.float64)


def tiered_bandwidth(chip: ChipSpec, footprint_bytes: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Read and write bandwidth of ops whose bytes read plus written are ``footprint_bytes``.

    The cache tiers are rates measured at a few footprints: at or below the smallest, its rate;
    between two, interpolated in log footprint and log rate (a working set between two measured
    ones runs between their rates, not at the slower one); beyond the largest, local memory's.

    >>> from dataclasses import replace
    >>> from hwmodel.spec.presets import get_preset
    >>> D1 = get_preset("d1").chip
    >>> chip = replace(D1, cache_tiers=((1e6, 5e11), (1e7, 2e11)))
    >>> [(rate / 1e9).round(3).tolist() for rate in tiered_bandwidth(chip, np.array([1e5, 10**6.5, 1e9]))][0]
    [500.0, 316.228, 141600.0]
    """
    read = np.full(len(footprint_bytes), chip.local_memory_read_bytes_per_s)
    write = np.full(len(footprint_bytes), chip.local_memory_write_bytes_per_s)
    if not chip.cache_tiers:
        return read, write
    sizes = np.log([size for size, _ in chip.cache_tiers])
    rates = np.log([rate for _, rate in chip.cache_tiers])
    inside = footprint_bytes <= chip.cache_tiers[-1][0]
    cached = np.exp(np.interp(np.log(np.maximum(footprint_bytes, 1.0)), sizes, rates))
    return np.where(inside, cached, read), np.where(inside, cached, write)


def op_bandwidth(workload: Workload, chip: ChipSpec, footprint_bytes: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Read and write bandwidth of each op: its footprint's (:func:`tiered_bandwidth`; a ``_foreach_``
    op's is its whole list, since each of its kernels sweeps its tensor after the others'), except
    the smallest tier's for matrix ops whose per-byte work runs in the nearest cache
    (:func:`~hwmodel.ops.matrix.in_cache_matrix`)."""
    read, write = tiered_bandwidth(chip, footprint_bytes)
    nearest = in_cache_matrix(workload, chip)
    if not np.any(nearest):
        return read, write
    rate = chip.cache_tiers[0][1]
    return np.where(nearest, rate, read), np.where(nearest, rate, write)


def scaled_work(
    arrays: WorkloadArrays, precision: Precision, work_scale: FloatArray | None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Bytes read, bytes written, FLOPs and output elements of each op on one chip.

    Forward and backward tensors are stored in the compute dtype; the optimizer works on the FP32
    master copy, as captured. ``work_scale`` (per op, or None) is the share one chip runs.
    """
    optimizer = arrays.phase_index == PHASES.index("optimizer")
    dtype_scale = np.array([precision.activation_scale(name) for name in arrays.dtype_names])
    bytes_scale = np.where(optimizer, 1.0, dtype_scale[arrays.dtype_index]) if len(arrays.flops) else np.ones(0)
    bytes_read = arrays.bytes_read * bytes_scale
    bytes_written = arrays.bytes_written * bytes_scale
    flops = arrays.flops
    output_elements = arrays.output_elements
    if work_scale is not None:
        bytes_read = bytes_read * work_scale
        bytes_written = bytes_written * work_scale
        flops = flops * work_scale
        output_elements = output_elements * work_scale
    return bytes_read, bytes_written, flops, output_elements


def op_costs(
    workload: Workload,
    chip: ChipSpec,
    efficiency: EfficiencyTable,
    precision: Precision,
    work_scale: FloatArray | None = None,
) -> OpCosts:
    """Time of each op of ``workload`` on ``chip`` under ``precision``.

    ``work_scale`` (per op) is the share of each op one chip runs: a tensor-parallel group of ``k``
    splits a matrix op's FLOPs, bytes and output ``k`` ways (and so its occupancy too).
    """
    efficiency.check_classes(op_classes().names)
    arrays = workload_arrays(workload)
    optimizer = arrays.phase_index == PHASES.index("optimizer")
    bytes_read, bytes_written, flops, output_elements = scaled_work(arrays, precision, work_scale)

    _, matrix_rate = chip.matrix_rate_for(precision)
    uses_matrix = arrays.is_matrix & arrays.is_float & ~optimizer
    peak = np.where(uses_matrix, matrix_rate, chip.vector_flops_per_s)
    classes = class_indices(workload, chip)
    compute_efficiency = np.asarray(efficiency.compute)[classes]
    timed_by_shape = gemm_timed(workload, chip)
    memory_efficiency = np.where(timed_by_shape, 1.0, np.asarray(efficiency.memory)[classes])
    tile = np.where(uses_matrix, chip.matrix_tile_output_elements, chip.vector_tile_output_elements)
    busy = occupancy(output_elements, tile, chip.compute_units)

    compute_s = flops / (peak * compute_efficiency * busy)
    if np.any(timed_by_shape):
        gemm_s = gemm_seconds(workload, chip, matrix_rate)
        if work_scale is not None:
            gemm_s = gemm_s * work_scale
        compute_s = np.where(timed_by_shape, gemm_s / (compute_efficiency * busy), compute_s)
    timed_by_element, element_s = element_timed_seconds(workload, chip, output_elements, flops)
    compute_s = np.where(timed_by_element, element_s / busy, compute_s)
    memory_busy = busy if chip.local_memory_kind == "sram" else 1.0
    read_rate, write_rate = op_bandwidth(workload, chip, bytes_read + bytes_written)
    read_s = bytes_read / (read_rate * memory_efficiency * memory_busy)
    write_s = bytes_written / (write_rate * memory_efficiency * memory_busy)
    memory_s = np.maximum(read_s, write_s) if chip.local_memory_full_duplex else read_s + write_s
    kernels = 1.0 if chip.multi_tensor_kernels else arrays.tensor_lists
    overhead_s = chip.op_overhead_s * np.asarray(efficiency.overhead)[classes] * kernels
    time_s = np.maximum(compute_s, memory_s) + overhead_s
    return OpCosts(compute_s=compute_s, memory_s=memory_s, overhead_s=overhead_s, time_s=time_s, flops=flops)


def ordered_sum(values: FloatArray) -> float:
    """Sum in index order (``add.accumulate`` never reorders, unlike ``np.sum``'s pairwise SIMD
    blocks): identical on every IEEE-754 machine, and several times faster than ``math.fsum``.

    >>> ordered_sum(np.array([1e16, 1.0, -1e16]))
    0.0
    """
    if len(values) == 0:
        return 0.0
    return float(np.add.accumulate(values)[-1])
