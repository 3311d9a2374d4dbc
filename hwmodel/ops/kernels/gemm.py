"""GEMM, batched GEMM, linear and convolution (as implicit GEMM), in CTA tiles over the SMs.

A GEMM ``C[b] (m x n) = A[b] (m x k) @ B[b] (k x n)`` runs as CTAs that each own a ``tile_m x
tile_n`` block of C, as cuBLAS's SGEMM kernels do (``sgemm_128x128``, ``128x64``, ``64x64``,
``32x128``, ``32x32``...). For each candidate tile and split-K factor ``s``::

    ctas        = b * ceil(m / tile_m) * ceil(n / tile_n) * s
    per SM      = ceil(ctas / SMs)                      (wave quantization: the busiest SM)
    tile time   = 2 * tile_m * tile_n * ceil(k / s) / (SM matrix rate * efficiency(tile))
    SM rate     = min(peak, power limit / (fp32_energy_per_flop_nm * process nm)) / SMs
                  (CUDA-core FP32 GEMMs on a board whose power limit caps the clock: T4 at 70 W, P4)
    efficiency  = gemm_peak_fraction * I / (I + gemm_half_intensity)
    I           = 2 * tile_m * tile_n / ((tile_m + tile_n) * bytes per element)   (FLOP per byte
                  a tile loads from L2 per step of k: small tiles starve the FP32 pipes)
    memory      = (A + B + C bytes + 2 * s * C bytes for a split's partial sums) / achieved bandwidth
    time        = launch + max(per SM * tile time, memory)

and the kernel's time is the least over the candidates, as a heuristic that knows the costs would
pick. Padding is paid: a 20 x 20 output in 32 x 32 tiles costs a whole tile. A convolution is the
implicit GEMM ``m = B*Ho*Wo, n = Cout, k = Cin*kh*kw`` (:mod:`hwmodel.ops.kernels.convolution`, which
also prices cuDNN's Winograd). The backward shapes are plain functions (:func:`linear_backward_dims`,
:func:`conv_backward_dims`).

Not modelled: the K loop's prologue and epilogue, L2 reuse across CTAs beyond reading A, B and C once,
cuDNN's FFT algorithms (Winograd: :mod:`hwmodel.ops.kernels.convolution`), tensor-core tile shapes
(the same tile set is used at every precision).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.memory_bound import achieved_bandwidth
from hwmodel.ops.kernels.parameters import KernelParameters

Array = NDArray[np.float64]

TILES = ((128, 128), (128, 64), (64, 128), (64, 64), (128, 32), (32, 128), (32, 32))
"""CTA tiles (rows x columns of C) of cuBLAS's SGEMM kernels (``sgemm_AxB`` has B rows, A columns)."""

SPLITS = (1, 2, 4, 8, 16)
"""Split-K factors a heuristic may choose."""

BATCHED_TILES = ((128, 128), (64, 128))
"""Tiles of the strided-batched kernels: large ones only, without split-K (the batch fills the SMs).
NB: measured ``torch.bmm`` in FP32 runs ``sgemm_128x128`` on A100 and ``sgemm_128x64`` on P100 and
P4 whatever the shape; Volta and Turing also pick 64 x 64 and 32 x 128 tiles, which this set omits."""

MIN_SPLIT_DEPTH = 128
"""Least depth of k a split's slice costs: a slice's K loop has a prologue and epilogue whatever its depth."""


@dataclass(frozen=True)
class GemmDims:
    """``batch`` GEMMs of ``(m x k) @ (k x n)``, one value per row."""

    batch: Array
    m: Array
    n: Array
    k: Array

    @property
    def flops(self) -> Array:
        return 2.0 * self.batch * self.m * self.n * self.k

    def select(self, rows: NDArray[np.bool_]) -> GemmDims:
        """The GEMMs of ``rows``."""
        return GemmDims(self.batch[rows], self.m[rows], self.n[rows], self.k[rows])

    def bytes_moved(self, bytes_per_element: float = 4.0) -> Array:
        """A, B and C once each."""
        return self.batch * (self.m * self.k + self.k * self.n + self.m * self.n) * bytes_per_element


def _array(value: Array | float) -> Array:
    return np.asarray(value, dtype=np.float64)


def bmm_dims(batch: Array, m: Array, n: Array, k: Array) -> GemmDims:
    """``torch.bmm(A (batch, m, k), B (batch, k, n))``."""
    return GemmDims(_array(batch), _array(m), _array(n), _array(k))


def linear_dims(batch: Array, rows: Array, in_features: Array, out_features: Array) -> GemmDims:
    """``nn.Linear(in_features, out_features)`` on ``(batch, rows, in_features)``: one GEMM with
    ``m = batch * rows`` (the bias is added in the GEMM's epilogue)."""
    return GemmDims(
        np.ones_like(_array(batch)), _array(batch) * _array(rows), _array(out_features), _array(in_features)
    )


def conv_output_size(size: Array, kernel: Array, stride: Array, padding: Array) -> Array:
    """Output height (or width) of a convolution: ``floor((size + 2 padding - kernel) / stride) + 1``."""
    return np.floor((_array(size) + 2 * _array(padding) - _array(kernel)) / _array(stride)) + 1


def linear_backward_dims(forward: GemmDims) -> tuple[GemmDims, GemmDims]:
    """``(dX, dW)`` of ``Y = X W``: ``dX (m x k) = dY (m x n) @ W^T (n x k)`` and
    ``dW (k x n) = X^T (k x m) @ dY (m x n)``, summed over the batch when W is shared."""
    f = forward
    grad_input = GemmDims(f.batch, f.m, f.k, f.n)
    grad_weight = GemmDims(f.batch, f.k, f.n, f.m)
    return grad_input, grad_weight


def conv_backward_dims(
    batch: Array, in_channels: Array, out_channels: Array, kernel: Array, size: Array, stride: Array, padding: Array
) -> tuple[GemmDims, GemmDims]:
    """``(dX, dW)`` of a square ``Conv2d`` as implicit GEMMs: the input gradient has
    ``m = B*H*W, n = Cin, k = Cout*kh*kw``; the weight gradient ``m = Cout, n = Cin*kh*kw,
    k = B*Ho*Wo`` (a deep, narrow GEMM: the split-K case)."""
    out = conv_output_size(size, kernel, stride, padding)
    ones = np.ones_like(_array(batch))
    taps = _array(kernel) ** 2
    grad_input = GemmDims(ones, _array(batch) * _array(size) ** 2, _array(in_channels), _array(out_channels) * taps)
    grad_weight = GemmDims(ones, _array(out_channels), _array(in_channels) * taps, _array(batch) * out * out)
    return grad_input, grad_weight


def tile_count(dims: GemmDims, tile_m: int, tile_n: int) -> Array:
    """CTAs of one split: ``batch * ceil(m / tile_m) * ceil(n / tile_n)``."""
    return dims.batch * np.ceil(dims.m / tile_m) * np.ceil(dims.n / tile_n)


def waves(ctas: Array, num_sms: int, ctas_per_sm: int = 1) -> Array:
    """Waves of ``ctas`` over ``num_sms`` SMs holding ``ctas_per_sm`` each: ``ceil(ctas / (SMs * per SM))``."""
    return np.ceil(ctas / (num_sms * ctas_per_sm))


def tile_efficiency(tile_m: int, tile_n: int, parameters: KernelParameters, bytes_per_element: float = 4.0) -> float:
    """Fraction of the SM's matrix peak a CTA of this tile reaches."""
    intensity = 2.0 * tile_m * tile_n / ((tile_m + tile_n) * bytes_per_element)
    return parameters.gemm_peak_fraction * intensity / (intensity + parameters.gemm_half_intensity)


def sustained_matrix_flops_per_s(device: KernelDevice, parameters: KernelParameters) -> float:
    """The matrix rate a long GEMM holds: the datasheet peak, or on the CUDA cores of a board with a
    power limit, at most ``power_limit / (fp32_energy_per_flop_nm * process_nm)`` (the clock drops
    to stay in budget; NB: energy per FLOP taken as proportional to the feature size, a crude scaling)."""
    if device.power_limit_w is None or device.process_nm is None or device.matrix_on_tensor_cores:
        return device.matrix_flops_per_s
    joules_per_flop = parameters.fp32_energy_per_flop_nm_j * device.process_nm
    return min(device.matrix_flops_per_s, device.power_limit_w / joules_per_flop)


def compute_seconds(
    dims: GemmDims,
    tile: tuple[int, int],
    split: int,
    device: KernelDevice,
    parameters: KernelParameters,
    bytes_per_element: float = 4.0,
) -> Array:
    """The arithmetic of one (tile, split-K) choice: waves of CTAs over the SMs, each CTA's tile at
    the SM's rate times the tile's efficiency."""
    tile_m, tile_n = tile
    ctas = tile_count(dims, tile_m, tile_n) * split
    depth = np.ceil(dims.k / split) if split == 1 else np.maximum(np.ceil(dims.k / split), MIN_SPLIT_DEPTH)
    tile_flops = 2.0 * tile_m * tile_n * depth
    rate = (
        sustained_matrix_flops_per_s(device, parameters)
        / device.num_sms
        * tile_efficiency(tile_m, tile_n, parameters, bytes_per_element)
    )
    seconds: Array = waves(ctas, device.num_sms) * tile_flops / rate
    return seconds


def best_compute_seconds(
    dims: GemmDims,
    device: KernelDevice,
    parameters: KernelParameters,
    bytes_per_element: float = 4.0,
    tiles: tuple[tuple[int, int], ...] = BATCHED_TILES,
) -> Array:
    """Least arithmetic time over ``tiles`` (no split-K): a fused kernel's GEMMs, whose operands
    stay on chip (:mod:`hwmodel.ops.gpu_lowering`, fused attention)."""
    best = np.full(np.shape(dims.m), np.inf)
    for tile in tiles:
        best = np.minimum(best, compute_seconds(dims, tile, 1, device, parameters, bytes_per_element))
    return best


def candidate_seconds(
    dims: GemmDims,
    tile: tuple[int, int],
    split: int,
    device: KernelDevice,
    parameters: KernelParameters,
    bytes_per_element: float = 4.0,
) -> Array:
    """Time without the launch floor of one (tile, split-K) choice (a split's slices of k are at least
    :data:`MIN_SPLIT_DEPTH` deep: a shallower slice is padded)."""
    compute = compute_seconds(dims, tile, split, device, parameters, bytes_per_element)
    partials = 0.0 if split == 1 else 2.0 * split * dims.batch * dims.m * dims.n * bytes_per_element
    moved = dims.bytes_moved(bytes_per_element) + partials
    memory = moved / achieved_bandwidth(moved, device, parameters)
    seconds: Array = np.maximum(compute, memory)
    return seconds


def best_choice(
    dims: GemmDims,
    device: KernelDevice,
    parameters: KernelParameters,
    bytes_per_element: float = 4.0,
    tiles: tuple[tuple[int, int], ...] = TILES,
    splits: tuple[int, ...] = SPLITS,
) -> tuple[Array, NDArray[np.int64], NDArray[np.int64]]:
    """Least time (without launch) over ``tiles`` and ``splits``, the index into ``tiles`` of the
    chosen tile and the chosen split factor, per row."""
    best = np.full(np.shape(dims.m), np.inf)
    tile_index = np.zeros(np.shape(dims.m), dtype=np.int64)
    split_factor = np.ones(np.shape(dims.m), dtype=np.int64)
    for index, tile in enumerate(tiles):
        for split in splits:
            seconds = candidate_seconds(dims, tile, split, device, parameters, bytes_per_element)
            better = seconds < best
            best = np.where(better, seconds, best)
            tile_index = np.where(better, index, tile_index)
            split_factor = np.where(better, split, split_factor)
    return best, tile_index, split_factor


def gemm_seconds(
    dims: GemmDims,
    device: KernelDevice,
    parameters: KernelParameters,
    launch_s: float | None = None,
    bytes_per_element: float = 4.0,
    *,
    batched: bool = False,
) -> Array:
    """Time of the GEMMs ``dims`` (one per row): the launch floor plus the best tile and split
    (:data:`BATCHED_TILES` and no split for a strided-batched call)."""
    floor = parameters.gemm_launch_s if launch_s is None else launch_s
    tiles, splits = (BATCHED_TILES, (1,)) if batched else (TILES, SPLITS)
    return floor + best_choice(dims, device, parameters, bytes_per_element, tiles, splits)[0]
