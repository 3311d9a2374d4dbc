"""One way in: the time of a measured operator (``OPName`` and its shape columns) on a device.

Shape columns as the GPU kernel measurement files name them (``docs/fidelity.md``): ``B, M, N, K``
for ``bmm`` and ``linear`` (N is the reduction dimension: ``bmm(B x M x N, B x N x K)``,
``Linear(N, K)`` on ``B x M x N``); ``B, Input_Channel, Output_Channel, Kernel_Szie, Input_Size,
Stride, Padding`` for ``conv``; ``B, H`` for the elementwise ops, ``ln`` and ``softmax``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from hwmodel.errors import HwModelError
from hwmodel.ops.kernels import convolution, gemm, memory_bound, rowwise
from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.parameters import KernelParameters

Array = NDArray[np.float64]

ELEMENTWISE_OPS = tuple(memory_bound.TENSORS_MOVED)
KNOWN_OPS = ("bmm", "linear", "conv", *ELEMENTWISE_OPS, "ln", "softmax")
"""Operator names :func:`predict_seconds` knows."""

REQUIRED_COLUMNS = {
    "bmm": ("B", "M", "N", "K"),
    "linear": ("B", "M", "N", "K"),
    "conv": ("B", "Input_Channel", "Output_Channel", "Kernel_Szie", "Input_Size", "Stride", "Padding"),
    **dict.fromkeys((*ELEMENTWISE_OPS, "ln", "softmax"), ("B", "H")),
}
"""Shape columns each operator reads."""


def predict_seconds(op: str, shapes: Mapping[str, Array], device: KernelDevice, parameters: KernelParameters) -> Array:
    """Seconds of ``op`` for each row of ``shapes`` (column name -> array) on ``device``."""
    if op not in REQUIRED_COLUMNS:
        raise HwModelError(f"unknown operator {op!r}; known: {', '.join(KNOWN_OPS)}")
    s = {name: np.asarray(shapes[name], dtype=np.float64) for name in REQUIRED_COLUMNS[op]}
    if op == "bmm":
        return gemm.gemm_seconds(_gemm_dims(op, s), device, parameters, batched=True)
    if op == "linear":
        return gemm.gemm_seconds(_gemm_dims(op, s), device, parameters, launch_s=parameters.linear_launch_s)
    if op == "conv":
        return convolution.convolution_seconds(_conv_shape(s), device, parameters)
    if op == "ln":
        return rowwise.layernorm_seconds(s["B"], s["H"], device, parameters)
    if op == "softmax":
        return rowwise.softmax_seconds(s["B"], s["H"], device, parameters)
    return memory_bound.elementwise_seconds(op, s["B"] * s["H"], device, parameters)


def _gemm_dims(op: str, s: Mapping[str, Array]) -> gemm.GemmDims:
    """The GEMM an operator of the matrix kind runs, from its shape columns (``bmm``: N is the
    reduction dimension; ``conv`` as implicit GEMM)."""
    if op == "bmm":
        return gemm.bmm_dims(s["B"], s["M"], s["K"], s["N"])
    if op == "linear":
        return gemm.linear_dims(s["B"], s["M"], s["N"], s["K"])
    return _conv_shape(s).implicit_gemm()


def _conv_shape(s: Mapping[str, Array]) -> convolution.ConvShape:
    return convolution.conv_shape(
        s["B"], s["Input_Channel"], s["Output_Channel"], s["Kernel_Szie"], s["Input_Size"], s["Stride"], s["Padding"]
    )


def roofline_seconds(op: str, shapes: Mapping[str, Array], device: KernelDevice) -> Array:
    """The plain roofline: ``max(FLOPs / peak, bytes / datasheet bandwidth)``, nothing fitted."""
    s = {name: np.asarray(shapes[name], dtype=np.float64) for name in REQUIRED_COLUMNS[op]}
    if op in ("bmm", "linear", "conv"):
        dims = _gemm_dims(op, s)
        result: Array = np.maximum(
            dims.flops / device.matrix_flops_per_s, dims.bytes_moved() / device.memory_bytes_per_s
        )
        return result
    if op == "ln":
        moved = rowwise.layernorm_bytes(s["B"], s["H"])
    elif op == "softmax":
        moved = rowwise.softmax_bytes(s["B"], s["H"])
    else:
        moved = memory_bound.elementwise_bytes(op, s["B"] * s["H"])
    flops = memory_bound.FLOPS_PER_ELEMENT.get(op, 5.0) * s["B"] * s["H"]
    bound: Array = np.maximum(flops / device.fp32_flops_per_s, moved / device.memory_bytes_per_s)
    return bound
