"""Elementwise kernels: bytes moved at the bandwidth the kernel reaches.

An elementwise kernel streams its inputs and its output once. Its time is the launch floor plus
the bytes at the achieved bandwidth, or the FP32 work at the vector peak when that is longer::

    time = launch + max(bytes / achieved_bandwidth, flops / fp32_peak)
    achieved_bandwidth = memory_bandwidth_fraction x datasheet bandwidth (x l2_bandwidth_multiple
                         when the working set fits L2, as it does when the same kernel runs again
                         on warm data)

so the bandwidth a kernel reaches, bytes / time, rises with the bytes moved from nothing (a kernel
that is all launch floor) to the sustained fraction of peak.

Not modelled: the CTAs of a small grid (they reach the bandwidth once past the launch floor),
non-contiguous strides, broadcasting that re-reads an input (each input is counted once at full
size), type promotion.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.parameters import KernelParameters

Array = NDArray[np.float64]

ELEMENTS_PER_CTA = 512
"""PyTorch's ``vectorized_elementwise_kernel``: 128 threads x 4 elements each."""

TENSORS_MOVED = {
    **dict.fromkeys(("add", "mul", "div", "pow"), 3),
    **dict.fromkeys(("addu", "mulu", "divu", "powu", "relu", "tanh", "gelu"), 2),
}
"""Tensors each op streams: two inputs and an output (binary), or one input and an output (unary,
a Python scalar as the other operand)."""

FLOPS_PER_ELEMENT = {
    **dict.fromkeys(("add", "mul", "addu", "mulu", "relu"), 1.0),
    **dict.fromkeys(("div", "divu"), 4.0),
    "tanh": 20.0,
    "gelu": 24.0,
    "pow": 30.0,
    "powu": 30.0,
}
"""FP32 instructions per element (NB: estimates of the libdevice sequences: an ``erf``-based GELU,
``tanhf``, ``powf`` as ``exp2(y * log2(x))``; division as a reciprocal and a Newton step)."""


def achieved_bandwidth(bytes_moved: Array, device: KernelDevice, parameters: KernelParameters) -> Array:
    """Bytes/s a streaming kernel sustains: the DRAM fraction, or the L2 multiple of it for a
    working set of at most the L2 size."""
    dram = parameters.memory_bandwidth_fraction * device.memory_bytes_per_s
    bandwidth: Array = np.where(bytes_moved <= device.l2_bytes, dram * parameters.l2_bandwidth_multiple, dram)
    return bandwidth


def elementwise_bytes(op: str, elements: Array, bytes_per_element: float = 4.0) -> Array:
    """Bytes an elementwise op moves: every tensor it streams, once."""
    return TENSORS_MOVED[op] * elements * bytes_per_element


def elementwise_seconds(
    op: str,
    elements: Array,
    device: KernelDevice,
    parameters: KernelParameters,
    bytes_per_element: float = 4.0,
) -> Array:
    """Time of ``op`` over ``elements`` elements (one value per row)."""
    elements = np.asarray(elements, dtype=np.float64)
    moved = elementwise_bytes(op, elements, bytes_per_element)
    memory = moved / achieved_bandwidth(moved, device, parameters)
    compute = FLOPS_PER_ELEMENT[op] * elements / device.fp32_flops_per_s
    return parameters.elementwise_launch_s + np.maximum(memory, compute)
