"""LayerNorm and softmax over the rows of a ``(rows, H)`` tensor: CTAs of rows in waves over the SMs.

Each CTA reduces its rows (mean and variance, or max and sum) before it can write them, so a wave of
CTAs pays dependent round trips to memory besides streaming its bytes::

    ctas  = ceil(rows / rows per CTA)
    waves = ceil(ctas / (SMs * resident CTAs per SM))      resident = 2,048 threads / CTA threads
    time  = launch + waves * rowwise_wave_latency + bytes / achieved bandwidth

Kernel shapes, as PyTorch launches them in FP32: LayerNorm runs one row per CTA of 128 threads
(``vectorized_layer_norm_kernel``); softmax over rows of at most 1,024 elements runs a warp per row
(two rows per warp up to 128 elements) in CTAs of 4 warps (``softmax_warp_forward``), and longer
rows one per CTA of up to 1,024 threads (``cunn_SoftMaxForward``). Bytes: the input read and the
output written; LayerNorm also reads gamma and beta and writes each row's mean and 1/std.

Not modelled: the re-reads of a long softmax row (served by L1/L2), a softmax over a dimension other
than the last, LayerNorm's Welford arithmetic (it never binds on these GPUs).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.memory_bound import achieved_bandwidth
from hwmodel.ops.kernels.parameters import KernelParameters

Array = NDArray[np.float64]

THREADS_PER_SM = 2048
"""Resident threads per SM (Pascal, Volta, Ampere, Hopper; NB: Turing holds 1,024)."""

WARP_SOFTMAX_MAX_ROW = 1024
"""Longest row ``softmax_warp_forward`` takes; longer rows go one per CTA."""


def layernorm_bytes(rows: Array, width: Array, bytes_per_element: float = 4.0) -> Array:
    """Input and output once, gamma and beta once, mean and 1/std per row."""
    return (2.0 * rows * width + 2.0 * width + 2.0 * rows) * bytes_per_element


def softmax_bytes(rows: Array, width: Array, bytes_per_element: float = 4.0) -> Array:
    """Input and output once."""
    return 2.0 * rows * width * bytes_per_element


def softmax_launch_shape(width: Array) -> tuple[Array, Array]:
    """(rows per CTA, threads per CTA) of PyTorch's FP32 softmax for rows of ``width`` elements."""
    warp_kernel = width <= WARP_SOFTMAX_MAX_ROW
    rows_per_cta = np.where(warp_kernel, np.where(width <= 128, 8.0, 4.0), 1.0)
    block_threads = np.clip(2.0 ** np.ceil(np.log2(np.maximum(width, 1.0) / 8.0)), 128.0, 1024.0)
    threads = np.where(warp_kernel, 128.0, block_threads)
    return rows_per_cta, threads


def rowwise_seconds(
    rows: Array,
    moved: Array,
    rows_per_cta: Array,
    threads_per_cta: Array,
    launch_s: float,
    device: KernelDevice,
    parameters: KernelParameters,
) -> Array:
    """Time of a row-reduction kernel moving ``moved`` bytes over ``rows`` rows."""
    ctas = np.ceil(rows / rows_per_cta)
    resident = np.maximum(np.floor(THREADS_PER_SM / threads_per_cta), 1.0)
    wave_count = np.ceil(ctas / (device.num_sms * resident))
    bandwidth = achieved_bandwidth(moved, ctas, moved / ctas, device, parameters)
    return launch_s + wave_count * parameters.rowwise_wave_latency_s + moved / bandwidth


def layernorm_seconds(
    rows: Array, width: Array, device: KernelDevice, parameters: KernelParameters, bytes_per_element: float = 4.0
) -> Array:
    """``nn.LayerNorm(width)`` over ``rows`` rows."""
    rows, width = np.asarray(rows, dtype=np.float64), np.asarray(width, dtype=np.float64)
    moved = layernorm_bytes(rows, width, bytes_per_element)
    ones = np.ones_like(rows)
    return rowwise_seconds(rows, moved, ones, 128.0 * ones, parameters.layernorm_launch_s, device, parameters)


def softmax_seconds(
    rows: Array, width: Array, device: KernelDevice, parameters: KernelParameters, bytes_per_element: float = 4.0
) -> Array:
    """Softmax over the last dimension (``width`` elements) of ``rows`` rows."""
    rows, width = np.asarray(rows, dtype=np.float64), np.asarray(width, dtype=np.float64)
    moved = softmax_bytes(rows, width, bytes_per_element)
    rows_per_cta, threads = softmax_launch_shape(width)
    return rowwise_seconds(rows, moved, rows_per_cta, threads, parameters.softmax_launch_s, device, parameters)
