"""Which implicit GEMMs of a captured step are convolutions cuDNN runs its own way.

A captured convolution records its GEMMs (``OpRecord.implicit_gemms``) and its window
(``OpRecord.conv_window``). Per implicit-GEMM row this module reads:

* ``forward``: the forward of a one-group convolution, which cuDNN runs on its own implicit-GEMM
  tiles, without split-K (:data:`hwmodel.ops.kernels.convolution.CUDNN_TILES`);
* ``winograd``: the convolution Winograd F(4x4, 3x3) could run it as: the forward of an undilated,
  one-group 3 x 3 window at stride 1, or its input gradient (a convolution of the same window from
  the output gradient's channels and size to the input's). The weight gradient stays a GEMM here.

The cost of each algorithm is :mod:`hwmodel.ops.kernels.convolution`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.ops.classes.base import packet_name
from hwmodel.ops.kernels.convolution import ConvShape
from hwmodel.step.workload import OpRecord

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class ConvRows:
    """Per implicit-GEMM row: a one-group convolution's forward (``forward``), and the convolution
    Winograd F(4x4, 3x3) could run it as (``winograd``; the image fields are 0 where it is False)."""

    forward: BoolArray
    winograd: BoolArray
    batch: FloatArray
    in_channels: FloatArray
    out_channels: FloatArray
    height: FloatArray
    width: FloatArray
    out_height: FloatArray
    out_width: FloatArray

    def shape(self, rows: BoolArray, out_channel_share: float = 1.0) -> ConvShape:
        """The :class:`ConvShape` of ``rows`` (Winograd ones), their output channels scaled by a
        tensor-parallel share."""
        three = np.full(int(np.count_nonzero(rows)), 3.0)
        return ConvShape(
            batch=self.batch[rows],
            in_channels=self.in_channels[rows],
            out_channels=self.out_channels[rows] * out_channel_share,
            kernel=three,
            stride=np.ones_like(three),
            height=self.height[rows],
            width=self.width[rows],
            out_height=self.out_height[rows],
            out_width=self.out_width[rows],
        )


WINOGRAD_WINDOW = (3, 3, 1, 1, 1, 1, 1)
"""``conv_window``'s kernel, stride, dilation and groups where Winograd F(4x4, 3x3) applies."""


def conv_rows(ops: Sequence[OpRecord]) -> ConvRows:
    """The :class:`ConvRows` of every implicit GEMM of ``ops``, in order."""
    values: list[tuple[float, ...]] = []
    forward_rows: list[bool] = []
    for op in ops:
        window = op.conv_window
        forward = packet_name(op.name) == "convolution"
        for gemm_shape in op.implicit_gemms:
            values.append(_winograd_image(window, gemm_shape, forward))
            forward_rows.append(bool(window) and forward and gemm_shape[0] == 1)
    table = np.asarray(values, dtype=np.float64).reshape(-1, 8)
    forward_mask = np.asarray(forward_rows, dtype=np.bool_).reshape(-1)
    return ConvRows(forward_mask, table[:, 0] > 0, *(table[:, column] for column in range(1, 8)))


def _winograd_image(window: tuple[int, ...], gemm_shape: tuple[int, int, int, int], forward: bool) -> tuple[float, ...]:
    """``(eligible, batch, in_channels, out_channels, height, width, out_height, out_width)`` of
    one implicit GEMM of a convolution op as a Winograd convolution; zeros if it is none."""
    none = (0.0,) * 8
    if not window or tuple(window[:7]) != WINOGRAD_WINDOW:
        return none
    cin, cout, height, width, out_height, out_width = window[7:]
    count, m, n, k = gemm_shape
    if forward and count == 1 and n == cout and k == cin * 9 and m % (out_height * out_width) == 0:
        return (1.0, m // (out_height * out_width), cin, cout, height, width, out_height, out_width)
    if not forward and count == 1 and n == cin and k == cout * 9 and m % (height * width) == 0:
        # The input gradient: the output gradient's cout channels of out_h x out_w to cin of h x w.
        return (1.0, m // (height * width), cout, cin, out_height, out_width, height, width)
    return none
