"""The kernel models in the terms of a chip whose SRAM is spread over its compute units (a D1).

The same principles as the GPU models (:mod:`hwmodel.ops.kernels`), with the D1's figures:

* **Tiles over nodes.** A node's matrix unit yields one ``s x s`` output block per pass
  (``matrix_tile_output_elements = s^2``: 8 x 8 on a D1, 512 FLOP/cycle); a GEMM's
  ``count x ceil(m / s) x ceil(n / s)`` blocks are dealt to the ``compute_units`` nodes (354) in
  waves, and the busiest node sets the time::

      compute = ceil(blocks / nodes) x 2 s^2 k / (node matrix rate x efficiency(s x s))

  where ``efficiency`` is the fraction of peak the fitted GEMM curve gives a tile of that
  intensity (:func:`hwmodel.ops.kernels.gemm.tile_efficiency`: 0.63 for an 8 x 8 BF16 block).
* **Bytes from the nodes that hold the work.** Only the nodes holding an op's tiles serve its
  bytes from their SRAM: ``memory = bytes / (SRAM bandwidth x sustained fraction x occupancy)``,
  loads and stores on separate ports (``max``), with the sustained fraction of the fitted
  streaming model (``memory_bandwidth_fraction``); occupancy is the share of node slots the op's
  outputs fill in tiles of ``matrix_tile_output_elements`` (matrix ops) or
  ``vector_tile_output_elements`` (vector ops; LayerNorm and softmax also at most one row per node).
* **No kernel launch, a barrier per op**: ``op_overhead_s`` (the barrier across the node array),
  nothing for a view.
* Vector arithmetic at the FP32 vector peak over the occupied nodes; a matrix op without GEMM
  shapes at the matrix peak times the block's efficiency over its occupied nodes.

Uncertainty: no D1 kernel was measured, so the model's error is stated as a GPU-derived proxy, the
leave-one-device-out mean error per op class of the GPU models (``docs/fidelity.md``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from hwmodel.ops.arrays import WorkloadArrays
from hwmodel.ops.cost import OpCosts, occupancy, scaled_work
from hwmodel.ops.kernel_costs import (
    KernelArrays,
    launched_costs,
    matrix_bytes_per_element,
    op_kinds,
    per_op_sum,
    split_kernel_time,
    work_scale,
)
from hwmodel.ops.kernels import gemm
from hwmodel.ops.kernels.parameters import KernelParameters
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.precision import Precision

FloatArray = npt.NDArray[np.float64]


def node_tile_side(chip: ChipSpec) -> int:
    """Side of the square output block one node's matrix unit yields per pass (8 on a D1)."""
    return max(1, math.isqrt(chip.matrix_tile_output_elements))


def node_gemm_parts(
    kernels: KernelArrays,
    chip: ChipSpec,
    matrix_rate: float,
    parameters: KernelParameters,
    bytes_per_element: float,
    matrix_share: float,
    count: int,
) -> tuple[FloatArray, FloatArray]:
    """Per op, summed over its GEMMs: (seconds of the busiest node's blocks, seconds of the ideal
    arithmetic)."""
    side = node_tile_side(chip)
    units = chip.compute_units
    dims = gemm.GemmDims(kernels.gemm_count, kernels.gemm_m, kernels.gemm_n * matrix_share, kernels.gemm_k)
    blocks = gemm.tile_count(dims, side, side)
    waves = gemm.waves(blocks, units)
    node_rate = matrix_rate / units * gemm.tile_efficiency(side, side, parameters, bytes_per_element)
    seconds = waves * 2.0 * side * side * dims.k / node_rate
    ideal = dims.flops / matrix_rate
    op = kernels.gemm_op
    return per_op_sum(op, seconds, count), per_op_sum(op, ideal, count)


def node_op_costs(
    arrays: WorkloadArrays,
    kernels: KernelArrays,
    chip: ChipSpec,
    precision: Precision,
    parameters: KernelParameters,
    matrix_share: float,
    optimizer_share: float,
) -> OpCosts:
    """Per-op costs on a chip of nodes with their own SRAM (see the module docstring)."""
    count = len(arrays.flops)
    kinds = op_kinds(arrays, kernels)
    scale = work_scale(arrays, matrix_share, optimizer_share)
    bytes_read, bytes_written, flops, output_elements = scaled_work(arrays, precision, scale)
    element_bytes = matrix_bytes_per_element(precision)
    _, matrix_rate = chip.matrix_rate_for(precision)
    side = node_tile_side(chip)
    block_efficiency = gemm.tile_efficiency(side, side, parameters, element_bytes)

    busy = occupancy(output_elements, float(chip.vector_tile_output_elements), chip.compute_units)
    busy = np.where(kinds.rowwise, np.minimum(busy, occupancy(kernels.rows, 1.0, chip.compute_units)), busy)
    matrix_busy = occupancy(output_elements, float(chip.matrix_tile_output_elements), chip.compute_units)
    busy = np.where(kinds.fallback | kinds.gemm, matrix_busy, busy)
    compute_s = flops / (chip.vector_flops_per_s * busy)
    compute_s = np.where(kinds.fallback, flops / (matrix_rate * block_efficiency * matrix_busy), compute_s)

    gemm_s, ideal_s = node_gemm_parts(kernels, chip, matrix_rate, parameters, element_bytes, matrix_share, count)
    bandwidth = parameters.memory_bandwidth_fraction * busy
    read_s = bytes_read / (chip.local_memory_read_bytes_per_s * bandwidth)
    write_s = bytes_written / (chip.local_memory_write_bytes_per_s * bandwidth)
    memory_s = np.maximum(read_s, write_s) if chip.local_memory_full_duplex else read_s + write_s
    compute_s = np.where(kinds.gemm, split_kernel_time(np.maximum(gemm_s, memory_s), ideal_s, memory_s), compute_s)

    return launched_costs(arrays, kinds, chip, 1.0, compute_s, memory_s, flops)
