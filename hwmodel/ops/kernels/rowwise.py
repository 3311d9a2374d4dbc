"""LayerNorm and softmax over the rows of a ``(rows, H)`` tensor: CTAs of rows in waves over the SMs.

Each CTA reduces its rows (mean and variance, or max and sum) before it can write them, so a wave of
CTAs pays dependent round trips to memory besides streaming its bytes::

    ctas     = ceil(rows / rows per CTA)
    resident = max threads per SM / CTA threads        (2,048 per SM; 1,024 on Turing)
    waves    = ceil(ctas / (SMs * resident))
    time     = launch + bytes / achieved bandwidth + waves * round trips * rowwise_wave_latency

(a wave's round trips add to the streaming: they are what a CTA waits for between its loads).

Kernel shapes, as PyTorch launches them in FP32: LayerNorm runs one row per CTA of 128 threads
(``vectorized_layer_norm_kernel``, one round trip); softmax over rows of at most 1,024 elements runs
a warp per row (two rows per warp up to 128 elements) in CTAs of 4 warps (``softmax_warp_forward``,
which loads its row at once: one round trip), and longer rows one per CTA of up to 512 threads
(``cunn_SoftMaxForward``), which makes three passes over its row (max, sum, write), each a loop of
4-element vector loads, then single elements for the rest of the row, and one more load for the
unaligned head of a row whose length is not a multiple of 4 (:func:`softmax_round_trips`). Its max
and sum passes leave the row for the next pass in the SM's L1 while the rows of the SM's resident
CTAs fit a share of it (``l1_row_fraction``), and read it again from memory as they overflow
(:func:`softmax_rereads`). Bytes: the input read and the output written; LayerNorm also reads gamma
and beta, writes each row's mean and 1/std, and reads its rows a second time when the rows in
flight overflow the L2 (its normalizing pass re-reads the row the statistics pass read).

Not modelled: a softmax over a dimension other than the last, LayerNorm's Welford arithmetic (it
never binds on these GPUs), the memory controllers' achievable fraction per generation (P100, P4
and T4 stream about 20% slower than V100 and A100 against one fitted fraction).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.memory_bound import achieved_bandwidth
from hwmodel.ops.kernels.parameters import KernelParameters, load_parameters

Array = NDArray[np.float64]

THREADS_PER_SM = 2048
"""Resident threads per SM that LayerNorm's L2 rule counts on every device (NB: as fitted; counting
Turing's 1,024 (:attr:`KernelDevice.max_threads_per_sm`) there puts T4's LayerNorm 26% off, not 18%)."""

WARP_SOFTMAX_MAX_ROW = 1024
"""Longest row ``softmax_warp_forward`` takes; longer rows go one per CTA."""

LAYERNORM_THREADS = 128
"""Threads of a LayerNorm CTA (one row each)."""

SHARED_MEMORY_ROW = 12288
"""Longest FP32 row the block softmax keeps in shared memory (48 KiB)."""

VECTOR_ELEMENTS = 4
"""FP32 elements of one 16-byte vector load."""

SOFTMAX_PASSES = 3
"""Passes of the block softmax over its row: max, sum of exponentials, write."""

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


def resident_ctas(threads_per_cta: Array, device: KernelDevice) -> Array:
    """CTAs of ``threads_per_cta`` threads one SM holds at once: ``floor(max threads per SM /
    threads)``, at least one (1,024 threads on Turing, 2,048 elsewhere)."""
    resident: Array = np.maximum(np.floor(device.max_threads_per_sm / np.asarray(threads_per_cta)), 1.0)
    return resident


def softmax_rereads(
    width: Array,
    device: KernelDevice,
    bytes_per_element: float = 4.0,
    parameters: KernelParameters | None = None,
) -> Array:
    """Extra reads of each row from memory by the block softmax (rows over
    :data:`WARP_SOFTMAX_MAX_ROW`), between 0 and 2: its max and sum passes leave the row for the
    next pass in the SM's L1 while the rows of the SM's resident CTAs fit ``l1_row_fraction`` of it,
    and lose it to memory in proportion as they overflow, all of it at twice that share::

        miss = clip(resident rows' bytes / (l1_row_fraction * L1 per SM) - 1, 0, 1)

    A device without an L1 figure falls back on the L2: two more reads when the rows in flight
    overflow it, or the row is longer than :data:`SHARED_MEMORY_ROW`."""
    width = np.asarray(width, dtype=np.float64)
    _, threads = softmax_launch_shape(width)
    resident_bytes = resident_ctas(threads, device) * width * bytes_per_element
    if device.l1_bytes_per_sm > 0:
        fraction = (parameters or load_parameters()).l1_row_fraction
        miss = np.clip(resident_bytes / (fraction * device.l1_bytes_per_sm) - 1.0, 0.0, 1.0)
    else:
        in_flight = device.num_sms * resident_bytes
        spills = (in_flight > device.l2_bytes) | (width * 4.0 / bytes_per_element > SHARED_MEMORY_ROW)
        miss = np.where(spills, 1.0, 0.0)
    rereads: Array = np.where(width > WARP_SOFTMAX_MAX_ROW, 2.0 * miss, 0.0)
    return rereads


def softmax_launch_shape(width: Array) -> tuple[Array, Array]:
    """(rows per CTA, threads per CTA) of PyTorch's FP32 softmax for rows of ``width`` elements."""
    warp_kernel = width <= WARP_SOFTMAX_MAX_ROW
    rows_per_cta = np.where(warp_kernel, np.where(width <= 128, 8.0, 4.0), 1.0)
    block_threads = np.clip(2.0 ** np.ceil(np.log2(np.maximum(width, 1.0) / 8.0)), 128.0, MAX_SOFTMAX_BLOCK)
    threads = np.where(warp_kernel, 128.0, block_threads)
    return rows_per_cta, threads


def softmax_round_trips(width: Array) -> Array:
    """Dependent memory round trips of one softmax CTA. The warp softmax loads its row at once
    (one). The block softmax makes three passes over its row (max, sum, write), each a loop of
    loads: ``ceil(vector part / (threads x 4))`` loads of 4 elements per thread, then the
    remainder one element per thread (``ceil(rest / threads)``), and one more for the unaligned
    head of a row whose length is not a multiple of 4 (a 16-byte vector load needs alignment)."""
    width = np.asarray(width, dtype=np.float64)
    _, threads = softmax_launch_shape(width)
    chunk = threads * VECTOR_ELEMENTS
    vector_loads = np.floor(width / chunk)
    scalar_loads = np.ceil((width - vector_loads * chunk) / threads)
    head = np.where(np.mod(width, VECTOR_ELEMENTS) > 0, 1.0, 0.0)
    block = SOFTMAX_PASSES * (vector_loads + scalar_loads + head)
    trips: Array = np.where(width <= WARP_SOFTMAX_MAX_ROW, 1.0, block)
    return trips


def rowwise_seconds(
    rows: Array,
    moved: Array,
    rows_per_cta: Array,
    threads_per_cta: Array,
    launch_s: float,
    device: KernelDevice,
    parameters: KernelParameters,
    round_trips: Array | float = 1.0,
) -> Array:
    """Time of a row-reduction kernel moving ``moved`` bytes over ``rows`` rows, each CTA making
    ``round_trips`` dependent round trips to memory."""
    ctas = np.ceil(rows / rows_per_cta)
    wave_count = np.ceil(ctas / (device.num_sms * resident_ctas(threads_per_cta, device)))
    bandwidth = achieved_bandwidth(moved, device, parameters)
    latency = wave_count * round_trips * parameters.rowwise_wave_latency_s
    seconds: Array = launch_s + moved / bandwidth + latency
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
    rereads = softmax_rereads(width, device, bytes_per_element, parameters)
    moved = softmax_bytes(rows, width, bytes_per_element, rereads)
    rows_per_cta, threads = softmax_launch_shape(width)
    trips = softmax_round_trips(width)
    return rowwise_seconds(rows, moved, rows_per_cta, threads, parameters.softmax_launch_s, device, parameters, trips)
