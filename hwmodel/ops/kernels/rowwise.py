"""LayerNorm and softmax over the rows of a ``(rows, H)`` tensor: CTAs of rows in waves over the SMs.

Each CTA reduces its rows (mean and variance, or max and sum) before it can write them, so a wave of
CTAs pays dependent round trips to memory besides streaming its bytes::

    ctas  = ceil(rows / rows per CTA)
    waves = ceil(ctas / (SMs * resident CTAs per SM))      resident = 2,048 threads / CTA threads
    time  = launch + max(bytes / achieved bandwidth, waves * rowwise_wave_latency)

(the round trips of one CTA overlap the transfers of the others: a wave's latency binds only when
its rows are too short to keep the memory busy).

Kernel shapes, as PyTorch launches them in FP32: LayerNorm runs one row per CTA of 128 threads
(``vectorized_layer_norm_kernel``); softmax over rows of at most 1,024 elements runs a warp per row
(two rows per warp up to 128 elements) in CTAs of 4 warps (``softmax_warp_forward``), and longer
rows one per CTA of up to 512 threads (``cunn_SoftMaxForward``), whose three passes (max, sum,
write) read the row again from L2, or from memory when the rows in flight overflow the L2 or the
row is longer than :data:`SHARED_MEMORY_ROW` elements. Bytes: the input read and the output written; LayerNorm also
reads gamma and beta, writes each row's mean and 1/std, and reads its rows a second time when the
rows in flight overflow the L2 (its normalizing pass re-reads the row the statistics pass read).

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

LAYERNORM_THREADS = 128
"""Threads of a LayerNorm CTA (one row each)."""

SHARED_MEMORY_ROW = 12288
"""Longest FP32 row the block softmax keeps in shared memory (48 KiB)."""

MAX_SOFTMAX_BLOCK = 512
"""Most threads of a block-softmax CTA (as measured: 256 up to 2,048 elements, 512 above)."""


def layernorm_bytes(rows: Array, width: Array, bytes_per_element: float = 4.0, rereads: Array | float = 0.0) -> Array:
    """Input and output once, gamma and beta once, mean and 1/std per row; plus ``rereads`` more
    reads of the input."""
    return ((2.0 + rereads) * rows * width + 2.0 * width + 2.0 * rows) * bytes_per_element


def layernorm_rereads(width: Array, device: KernelDevice, bytes_per_element: float = 4.0) -> Array:
    """1 where the rows in flight (every SM full of one-row CTAs) overflow the L2, so that the
    normalizing pass reads its row from memory again; else 0 (the statistics pass left it in L2)."""
    in_flight = device.num_sms * (THREADS_PER_SM / LAYERNORM_THREADS) * width * bytes_per_element
    return np.where(in_flight > device.l2_bytes, 1.0, 0.0)


def softmax_bytes(rows: Array, width: Array, bytes_per_element: float = 4.0, rereads: Array | float = 0.0) -> Array:
    """Input and output once, plus ``rereads`` more reads of the input."""
    return (2.0 + rereads) * rows * width * bytes_per_element


def softmax_rereads(width: Array, device: KernelDevice, bytes_per_element: float = 4.0) -> Array:
    """Extra reads of each row by the block softmax (rows over :data:`WARP_SOFTMAX_MAX_ROW`): its
    max and sum passes leave the row in L2 for the next pass unless the rows in flight overflow the
    L2, or the row is longer than :data:`SHARED_MEMORY_ROW`; then two more reads come from memory."""
    _, threads = softmax_launch_shape(width)
    in_flight = device.num_sms * np.floor(THREADS_PER_SM / threads) * width * bytes_per_element
    spills = (in_flight > device.l2_bytes) | (width * 4.0 / bytes_per_element > SHARED_MEMORY_ROW)
    return np.where((width > WARP_SOFTMAX_MAX_ROW) & spills, 2.0, 0.0)


def softmax_launch_shape(width: Array) -> tuple[Array, Array]:
    """(rows per CTA, threads per CTA) of PyTorch's FP32 softmax for rows of ``width`` elements."""
    warp_kernel = width <= WARP_SOFTMAX_MAX_ROW
    rows_per_cta = np.where(warp_kernel, np.where(width <= 128, 8.0, 4.0), 1.0)
    block_threads = np.clip(2.0 ** np.ceil(np.log2(np.maximum(width, 1.0) / 8.0)), 128.0, MAX_SOFTMAX_BLOCK)
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
    bandwidth = achieved_bandwidth(moved, device, parameters)
    seconds: Array = launch_s + np.maximum(moved / bandwidth, wave_count * parameters.rowwise_wave_latency_s)
    return seconds


def layernorm_seconds(
    rows: Array, width: Array, device: KernelDevice, parameters: KernelParameters, bytes_per_element: float = 4.0
) -> Array:
    """``nn.LayerNorm(width)`` over ``rows`` rows."""
    rows, width = np.asarray(rows, dtype=np.float64), np.asarray(width, dtype=np.float64)
    moved = layernorm_bytes(rows, width, bytes_per_element, layernorm_rereads(width, device, bytes_per_element))
    ones = np.ones_like(rows)
    threads = LAYERNORM_THREADS * ones
    return rowwise_seconds(rows, moved, ones, threads, parameters.layernorm_launch_s, device, parameters)


def softmax_seconds(
    rows: Array, width: Array, device: KernelDevice, parameters: KernelParameters, bytes_per_element: float = 4.0
) -> Array:
    """Softmax over the last dimension (``width`` elements) of ``rows`` rows."""
    rows, width = np.asarray(rows, dtype=np.float64), np.asarray(width, dtype=np.float64)
    moved = softmax_bytes(rows, width, bytes_per_element, softmax_rereads(width, device, bytes_per_element))
    rows_per_cta, threads = softmax_launch_shape(width)
    return rowwise_seconds(rows, moved, rows_per_cta, threads, parameters.softmax_launch_s, device, parameters)
