"""``convolution``: convolutions forward and backward, on the matrix unit.

A class of its own, apart from plain matrix products: convolution kernels reach a different fraction
of peak (im2col or direct algorithms, grouped and depthwise variants) and pay a different fixed cost
per call (a CPU convolution builds a oneDNN primitive), so they get their own efficiency entry.
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

OP_CLASS = OpClass(
    name="convolution",
    order=1,
    unit="matrix",
    packets=frozenset(
        {
            "convolution",
            "convolution_backward",
            "_convolution",
            "conv2d",
            "conv3d",
            "conv_transpose2d",
            "conv_transpose3d",
        }
    ),
    description="Convolutions forward and backward, on the matrix unit.",
)
