"""Matrix-class ops (matmul, convolution, attention) on a chip with measured GEMM rates.

On such a chip (``ChipSpec.gemm_rates``: the host), every op the capture lowered to GEMMs
(``OpRecord.gemms``: a per-sample convolution, CPU flash attention) is a ``matmul``-class op, since
its kernel is BLAS calls, and takes the time of its GEMMs at the measured rate of each shape, its
bytes at the plain bandwidth of their footprint as a floor. The other matrix ops (oneDNN
convolutions) move their bytes at the nearest cache's rate. Chips known by their datasheet time
matrix ops by ``flops / peak`` in :mod:`hwmodel.ops.cost`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hwmodel.ops.arrays import workload_arrays
from hwmodel.ops.classes.registry import op_classes
from hwmodel.spec.chip import ChipSpec
from hwmodel.step.workload import PHASES, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def class_indices(workload: Workload, chip: ChipSpec) -> IntArray:
    """Op class of every op on ``chip`` (indices into ``op_classes().names``): the op's own class, except that
    on a chip with measured GEMM rates every op lowered to GEMMs (a per-sample convolution, CPU flash
    attention) is a ``matmul``: its kernel is BLAS calls, timed by their shapes."""
    arrays = workload_arrays(workload)
    if chip.gemm_rates is None:
        return arrays.class_index
    matmul = op_classes().names.index("matmul")
    classes: IntArray = np.where(arrays.has_gemms, matmul, arrays.class_index).astype(np.int64)
    return classes


def gemm_timed(workload: Workload, chip: ChipSpec) -> npt.NDArray[np.bool_]:
    """Per op, True where ``chip``'s measured GEMM rates time it: a floating-point matrix op outside
    the optimizer whose GEMMs the capture recorded. Its bytes take no fitted fraction of the
    bandwidth: the measured ``torch.mm`` of each shape already moved and packed its operands, so
    they only set a floor at the bandwidth of the op's footprint."""
    arrays = workload_arrays(workload)
    if chip.gemm_rates is None:
        return np.zeros(len(arrays.flops), dtype=np.bool_)
    optimizer = arrays.phase_index == PHASES.index("optimizer")
    return np.asarray(arrays.has_gemms & arrays.is_matrix & arrays.is_float & ~optimizer, dtype=np.bool_)


def in_cache_matrix(workload: Workload, chip: ChipSpec) -> npt.NDArray[np.bool_]:
    """Per op, True for a floating-point matrix op outside the optimizer that ``chip``'s GEMM rates do
    not time (a oneDNN direct, grouped or depthwise convolution) on a chip with cache tiers. Its
    per-byte work (layout reorders, its inner loops' packing) runs block by block in the nearest
    cache, so it moves its bytes at the smallest tier's rate (times the class's fitted fraction),
    whatever the footprint of the whole op."""
    arrays = workload_arrays(workload)
    if chip.gemm_rates is None or not chip.cache_tiers:
        return np.zeros(len(arrays.flops), dtype=np.bool_)
    optimizer = arrays.phase_index == PHASES.index("optimizer")
    return np.asarray(arrays.is_matrix & arrays.is_float & ~optimizer & ~arrays.has_gemms, dtype=np.bool_)


def cold_operand_bytes(shapes: FloatArray) -> FloatArray:
    """FP32 bytes of the two operands of each GEMM ``(count, m, n, k)``: ``count (m k + k n) 4``.

    >>> cold_operand_bytes(np.array([[1.0, 64, 512, 512], [2.0, 8, 4, 2]])).tolist()
    [1179648.0, 192.0]
    """
    count, m, n, k = shapes[:, 0], shapes[:, 1], shapes[:, 2], shapes[:, 3]
    values: FloatArray = 4.0 * count * (m * k + k * n)
    return values


def gemm_seconds(workload: Workload, chip: ChipSpec, matrix_flops_per_s: float) -> FloatArray:
    """Per op, the time of its recorded GEMMs at ``chip``'s measured rates (0 for ops without any),
    for matrix ops that run at a peak of ``matrix_flops_per_s``.

    Where the chip measured how fast a GEMM fetches operands from beyond its caches
    (``gemm_cold_operand_bytes_per_s``), each GEMM also pays its operands' bytes at that rate: in
    a training step a weight was last touched a whole step ago, an activation a forward pass ago.

    NB: rates are measured in IEEE FP32; another matrix rate (BF16, TF32) scales them by its ratio
    to the chip's FP32 matrix peak (a BF16 GEMM of each shape is assumed as much faster as the
    peak says); operands are counted as FP32 bytes.
    """
    arrays = workload_arrays(workload)
    table = chip.gemm_rates
    if table is None or not len(arrays.gemm_op_index):
        return np.zeros(len(arrays.flops))
    shapes = arrays.gemm_shapes
    dtype_speedup = matrix_flops_per_s / chip.matrix_fp32_flops_per_s
    rates = table.rates(shapes[:, 1], shapes[:, 2], shapes[:, 3]) * dtype_speedup
    seconds = 2.0 * shapes[:, 0] * shapes[:, 1] * shapes[:, 2] * shapes[:, 3] / rates
    if chip.gemm_cold_operand_bytes_per_s is not None:
        seconds = seconds + cold_operand_bytes(shapes) / chip.gemm_cold_operand_bytes_per_s
    per_op = np.bincount(arrays.gemm_op_index, weights=seconds, minlength=len(arrays.flops)).astype(np.float64)
    return per_op
