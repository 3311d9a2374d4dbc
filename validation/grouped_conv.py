"""Correct FLOPs for the backward of grouped convolutions while capturing (torch 2.13 flop counter).

``torch.utils.flop_counter.conv_backward_flop`` counts the input gradient of a grouped convolution
as if it were dense: a depthwise 3x3 over 64 channels reports 75.5 MFLOP of backward for 1.2 MFLOP
of forward (32x32 input, batch 1), where the input gradient and the weight gradient each cost what
the forward costs (2 x 1.2 MFLOP). Depthwise networks (EfficientNet, RegNet's group convolutions)
then look tens of times more expensive in backward than they are. Until the capture carries the
fix, :func:`grouped_conv_backward_flops` swaps in a correct formula for the duration of a capture.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.flop_counter import flop_registry

_CONVOLUTION_BACKWARD = torch.ops.aten.convolution_backward


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def convolution_backward_flops(
    grad_out: Any,
    x: Any,
    w: Any,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: Any,
    *,
    out_val: Any = None,
    **_: Any,
) -> int:
    """FLOPs of ``aten.convolution_backward``: each requested gradient costs one forward convolution.

    Forward FLOPs = 2 x (output elements of the non-transposed direction) x (weight elements per
    output channel), which is right for any ``groups`` because the weight already holds
    ``in_channels / groups`` per output channel.
    """
    weight = _shape(w)
    per_output = math.prod(weight[1:])
    out_elements = math.prod(_shape(x)) if transposed else math.prod(_shape(grad_out))
    forward = 2 * out_elements * per_output
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


@contextmanager
def grouped_conv_backward_flops() -> Iterator[None]:
    """Within the block, the flop registry counts grouped convolution backward correctly."""
    previous = flop_registry.get(_CONVOLUTION_BACKWARD)
    flop_registry[_CONVOLUTION_BACKWARD] = convolution_backward_flops
    try:
        yield
    finally:
        if previous is None:
            del flop_registry[_CONVOLUTION_BACKWARD]
        else:
            flop_registry[_CONVOLUTION_BACKWARD] = previous
