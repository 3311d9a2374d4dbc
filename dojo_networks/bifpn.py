"""BiFPN: the weighted bidirectional feature pyramid of EfficientDet (Tan et al., CVPR 2020).

Each layer runs a top-down pass (coarse to fine) then a bottom-up pass (fine to coarse) over the
pyramid levels, and every node fuses its inputs with *fast normalized fusion* (section 3.3):
``out = conv(act(sum_i w_i * x_i / (eps + sum_j w_j)))`` with ``w_i = relu(learned_i)``. The node
convolution is depthwise-separable with BatchNorm, as in the paper. Layers are repeated.

Levels that the backbone does not produce (stride 64 for a RegNet whose last stage has stride 32)
are made as EfficientDet makes P6/P7: a 1x1 projection of the coarsest input, then 3x3 max pooling
with stride 2. Resampling uses the target level's exact size, so odd feature sizes (a 48-pixel-high
image has a 2-cell stride-32 level and a 1-cell stride-64 level) need no special case.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import conv_norm_activation, separable_conv

__all__ = ["BiFPN", "BiFPNLayer"]

FUSION_EPSILON = 1e-4  # EfficientDet section 3.3: keeps the normalized weights finite.


class FastNormalizedFusion(nn.Module):
    """Learned non-negative weights, normalized by their sum, then SiLU and the node convolution."""

    def __init__(self, num_inputs: int, channels: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(num_inputs))
        # EfficientDet's node convolution: depthwise 3x3, pointwise 1x1, BatchNorm.
        self.convolution = separable_conv(channels, pointwise_bias=False)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        weights = F.relu(self.weights)
        normalized = weights / (weights.sum() + FUSION_EPSILON)
        fused = inputs[0] * normalized[0]
        for index in range(1, len(inputs)):
            fused = fused + inputs[index] * normalized[index]
        output: Tensor = self.convolution(F.silu(fused))
        return output


def _resize_to(features: Tensor, reference: Tensor) -> Tensor:
    """Nearest-neighbour upsampling to ``reference``'s spatial size."""
    return F.interpolate(features, size=reference.shape[-2:], mode="nearest")


def _downsample(features: Tensor) -> Tensor:
    """3x3 max pooling with stride 2 and padding 1: output size ceil(n / 2), like a stride-2 conv."""
    return F.max_pool2d(features, kernel_size=3, stride=2, padding=1)


class BiFPNLayer(nn.Module):
    """One top-down plus bottom-up pass over ``num_levels`` levels of ``channels`` channels."""

    def __init__(self, num_levels: int, channels: int) -> None:
        super().__init__()
        if num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {num_levels}")
        # Top-down nodes for levels num_levels-2 .. 0 (the coarsest level has no top-down node).
        self.top_down = nn.ModuleList(FastNormalizedFusion(2, channels) for _ in range(num_levels - 1))
        # Bottom-up nodes for levels 1 .. num_levels-1: three inputs, except the coarsest (two).
        self.bottom_up = nn.ModuleList(
            FastNormalizedFusion(2 if level == num_levels - 1 else 3, channels) for level in range(1, num_levels)
        )

    def forward(self, levels: Sequence[Tensor]) -> list[Tensor]:
        num_levels = len(levels)
        top_down: list[Tensor] = [levels[-1]]
        for level in range(num_levels - 2, -1, -1):
            node = self.top_down[num_levels - 2 - level]
            top_down.append(node([levels[level], _resize_to(top_down[-1], levels[level])]))
        top_down.reverse()
        outputs: list[Tensor] = [top_down[0]]
        for level in range(1, num_levels):
            node = self.bottom_up[level - 1]
            below = _downsample(outputs[-1])
            if level == num_levels - 1:
                outputs.append(node([levels[level], below]))
            else:
                outputs.append(node([levels[level], top_down[level], below]))
        return outputs


class BiFPN(nn.Module):
    """Projects backbone levels to a common width, adds coarser levels, and repeats BiFPN layers.

    Attributes:
        num_levels: input levels plus extra levels; outputs are ordered finest first.
        channels: width of every output level.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        *,
        channels: int,
        repeats: int,
        extra_levels: int = 1,
    ) -> None:
        super().__init__()
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.channels = channels
        self.num_levels = len(in_channels) + extra_levels
        self.input_projections = nn.ModuleList(
            conv_norm_activation(width, channels, 1, activation=None) for width in in_channels
        )
        self.extra_projection: nn.Module = (
            conv_norm_activation(in_channels[-1], channels, 1, activation=None) if extra_levels > 0 else nn.Identity()
        )
        self.extra_levels = extra_levels
        self.layers = nn.ModuleList(BiFPNLayer(self.num_levels, channels) for _ in range(repeats))

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        levels = [projection(level) for projection, level in zip(self.input_projections, features, strict=True)]
        if self.extra_levels > 0:
            coarser = _downsample(self.extra_projection(features[-1]))
            levels.append(coarser)
            for _ in range(1, self.extra_levels):
                coarser = _downsample(coarser)
                levels.append(coarser)
        for layer in self.layers:
            levels = layer(levels)
        return levels
