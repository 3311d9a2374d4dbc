"""Matrix multiplies by shape: the GEMMs a kernel runs and how fast a measured chip runs each shape.

A GEMM is ``(count, m, n, k)``: ``count`` independent products of an ``m x k`` by a ``k x n``
matrix, ``2 m n k`` FLOPs each. A matrix op's kernel is one or more GEMMs, and their shapes, not
only their FLOPs, set its speed: a BLAS kernel tiles ``m`` and ``n`` into register blocks and
streams ``k``, so a product with a short side wastes most of each block, and one with small
matrices is dominated by packing and call costs. On the host CPU ``(336 x 336) @ (336 x 4)`` runs
at 7 GFLOP/s, ``(336 x 336) @ (336 x 16)`` at 73 and ``(512 x 128) @ (128 x 512)`` at 95.

:class:`GemmRateTable` holds rates measured at a grid of shapes (``pytest_dojo.hostbench``); any
other shape is interpolated in log space between the eight grid shapes around it and clamped at
the grid's edges. The lowering functions say which GEMMs a kernel runs; they are pure shape math,
one per kernel family, citing the kernel they follow:

* :func:`per_sample_convolution_gemms`: ATen's ``slow_conv2d`` (``Slow2d``), which loops over the
  batch and runs one GEMM per sample on an unfolded input (``aten/src/ATen/native/ConvolutionMM2d.cpp``);
* :func:`flash_attention_gemms`: ATen's CPU flash attention, which tiles queries and keys into
  blocks and runs two GEMMs per block pair forward and five backward
  (``aten/src/ATen/native/cpu/FlashAttentionKernel.cpp``).

Not modelled: the layout (transposed operands), alignment, which of several kernels a BLAS library
picks for a shape: all of that is in the measured rate of the nearest grid shapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.errors import SpecError

Gemm = tuple[int, int, int, int]
"""``(count, m, n, k)``: ``count`` products of an ``m x k`` and a ``k x n`` matrix."""

FloatArray = npt.NDArray[np.float64]


def gemm_flops(gemms: Iterable[Gemm]) -> float:
    """FLOPs of a list of GEMMs: ``2 m n k`` per product.

    >>> gemm_flops([(8, 336, 4, 336), (1, 2, 2, 2)])
    7225360.0
    """
    return float(sum(2 * count * m * n * k for count, m, n, k in gemms))


@dataclass(frozen=True, kw_only=True)
class GemmRateTable:
    """Measured FLOP/s of one GEMM of each grid shape ``(m, n, k)``, every axis on ``dims``.

    ``flops_per_s[(i * len(dims) + j) * len(dims) + l]`` is the rate of an ``dims[i] x dims[l]``
    by ``dims[l] x dims[j]`` product (``m = dims[i]``, ``n = dims[j]``, ``k = dims[l]``): its FLOPs
    over the time of one call. NB: that time includes the call's own cost (about a microsecond on
    the host), so a tiny GEMM inside a fused kernel is charged a call it may not pay in full.

    >>> table = GemmRateTable(dims=(1, 4), flops_per_s=(1e9,) * 7 + (16e9,))
    >>> sizes = np.array([1.0, 4.0, 2.0])
    >>> (table.rates(sizes, sizes, sizes) / 1e9).round(3).tolist()  # (2, 2, 2): 16^(1/8)
    [1.0, 16.0, 1.414]
    """

    dims: tuple[int, ...]
    flops_per_s: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.dims) < 2 or any(b <= a for a, b in zip(self.dims, self.dims[1:], strict=False)):
            raise SpecError(f"GEMM rate table: dims must be at least two rising sizes, got {self.dims}")
        if self.dims[0] < 1:
            raise SpecError(f"GEMM rate table: dims must be >= 1, got {self.dims}")
        if len(self.flops_per_s) != len(self.dims) ** 3:
            raise SpecError(
                f"GEMM rate table: needs {len(self.dims) ** 3} rates for {len(self.dims)} dims, "
                f"got {len(self.flops_per_s)}"
            )
        if not all(rate > 0 and math.isfinite(rate) for rate in self.flops_per_s):
            raise SpecError("GEMM rate table: every rate must be a finite FLOP/s > 0")

    def rates(self, m: FloatArray, n: FloatArray, k: FloatArray) -> FloatArray:
        """FLOP/s of GEMMs of shapes ``(m, n, k)`` (arrays): trilinear in log size and log rate."""
        size = len(self.dims)
        log_dims = np.log(np.asarray(self.dims, dtype=np.float64))
        log_rates = np.log(np.asarray(self.flops_per_s, dtype=np.float64)).reshape(size, size, size)
        lower = []
        weight = []
        for values in (m, n, k):
            position = np.interp(np.log(np.maximum(values, 1.0)), log_dims, np.arange(size, dtype=np.float64))
            index = np.minimum(np.floor(position).astype(np.int64), size - 2)
            lower.append(index)
            weight.append(position - index)
        result = np.zeros(len(m))
        for corner_m in (0, 1):
            for corner_n in (0, 1):
                for corner_k in (0, 1):
                    share = (
                        (weight[0] if corner_m else 1 - weight[0])
                        * (weight[1] if corner_n else 1 - weight[1])
                        * (weight[2] if corner_k else 1 - weight[2])
                    )
                    result += share * log_rates[lower[0] + corner_m, lower[1] + corner_n, lower[2] + corner_k]
        return np.asarray(np.exp(result), dtype=np.float64)


def matmul_gemms(batch: int, m: int, n: int, k: int) -> tuple[Gemm, ...]:
    """``mm``/``addmm`` (``batch`` = 1) and ``bmm``/``baddbmm``: one GEMM per batch entry."""
    return ((batch, m, n, k),) if batch and m and n and k else ()


def per_sample_convolution_gemms(
    *,
    batch: int,
    in_channels: int,
    out_channels: int,
    kernel_elements: int,
    output_pixels: int,
    forward: bool,
    input_grad: bool = False,
    weight_grad: bool = False,
) -> tuple[Gemm, ...]:
    """GEMMs of a convolution run one sample at a time on unfolded (im2col) columns.

    Per sample, with ``K = in_channels x kernel_elements`` rows of columns and ``P`` output pixels:
    forward ``out (C_out x P) = W (C_out x K) @ columns (K x P)``; input gradient ``dcolumns
    (K x P) = W^T (K x C_out) @ dout (C_out x P)``; weight gradient ``dW (C_out x K) += dout
    (C_out x P) @ columns^T (P x K)``. Ungrouped only (ATen picks this kernel for ``groups = 1``).

    >>> per_sample_convolution_gemms(batch=8, in_channels=336, out_channels=336, kernel_elements=1,
    ...                              output_pixels=4, forward=False, input_grad=True, weight_grad=True)
    ((8, 336, 4, 336), (8, 336, 336, 4))
    """
    depth = in_channels * kernel_elements
    gemms: list[Gemm] = []
    if forward:
        gemms.append((batch, out_channels, output_pixels, depth))
    if input_grad:
        gemms.append((batch, depth, output_pixels, out_channels))
    if weight_grad:
        gemms.append((batch, out_channels, depth, output_pixels))
    return tuple(gemm for gemm in gemms if all(gemm))


def flash_attention_split_sizes(length_q: int, length_k: int) -> tuple[int, int]:
    """Query and key block sizes of ATen's CPU flash attention (torch 2.x ``cpu_flash_attention``):
    256 queries from 768 on, 64 from 192, else 32; 512 keys, or all of them if fewer [U: read from
    the kernel's source, not measured].

    >>> flash_attention_split_sizes(256, 40), flash_attention_split_sizes(1024, 4096)
    ((64, 40), (256, 512))
    """
    query_block = 256 if length_q >= 768 else 64 if length_q >= 192 else 32
    return query_block, min(512, length_k)


def flash_attention_gemms(
    *, batch_heads: int, length_q: int, length_k: int, dim_qk: int, dim_v: int, backward: bool
) -> tuple[Gemm, ...]:
    """GEMMs of ATen's CPU flash attention, per (query block, key block) pair of every batch x head.

    Forward: ``S = Q_b K_b^T`` (``q x kv x D``) and ``O += P V_b`` (``q x Dv x kv``). Backward
    recomputes ``S`` and runs ``dV += P^T dO``, ``dP = dO V^T``, ``dQ += dS K``, ``dK += dS^T Q``.
    The FLOPs equal :func:`hwmodel.ops.flops.attention_forward_flops` and ``attention_backward_flops``.

    >>> flash_attention_gemms(batch_heads=8, length_q=256, length_k=40, dim_qk=8, dim_v=8, backward=False)
    ((32, 64, 40, 8), (32, 64, 8, 40))
    """
    query_block, key_block = flash_attention_split_sizes(length_q, length_k)
    gemms: list[Gemm] = []
    for queries, query_blocks in _blocks(length_q, query_block):
        for keys, key_blocks in _blocks(length_k, key_block):
            count = batch_heads * query_blocks * key_blocks
            gemms.append((count, queries, keys, dim_qk))
            if backward:
                gemms += [
                    (count, keys, dim_v, queries),
                    (count, queries, keys, dim_v),
                    (count, queries, dim_qk, keys),
                    (count, keys, dim_qk, queries),
                ]
            else:
                gemms.append((count, queries, dim_v, keys))
    return tuple(gemm for gemm in gemms if all(gemm))


def _blocks(length: int, block: int) -> list[tuple[int, int]]:
    """``(block length, how many)`` of full blocks and the last partial one."""
    full, rest = divmod(length, block)
    return [(size, count) for size, count in ((block, full), (rest, 1)) if size and count]
