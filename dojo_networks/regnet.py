"""RegNetX / RegNetY backbones, written from the design-space paper.

The widths and depths of the four stages come from the RegNet parameterization of Radosavovic et
al., "Designing Network Design Spaces" (CVPR 2020), section 3.3: a linear width ramp
``u_j = w_0 + w_a * j`` for block ``j < d``, quantized to powers of ``w_m`` times ``w_0`` (eq. 2-3),
rounded to multiples of 8, then adjusted so that each bottleneck width is a multiple of the group
width. The named presets are the published ones (paper, appendix table; the same numbers are in
pycls' model zoo and timm's ``regnet.py``). RegNetY adds squeeze-excitation whose width is a
quarter of the block's *input* width, as pycls and timm do.

The backbone returns the output of every stage (strides 4, 8, 16, 32 with a stride-2 stem), so a
neck can pick its levels; :class:`RegNetClassifier` adds the ImageNet head (global average pool and
one linear layer) used for the published parameter and MAC counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import conv_norm_activation

__all__ = [
    "REGNET_CONFIGS",
    "RegNet",
    "RegNetClassifier",
    "RegNetConfig",
    "StagePlan",
    "plan_stages",
]


@dataclass(frozen=True, kw_only=True)
class RegNetConfig:
    """One point of the RegNet design space.

    Attributes:
        initial_width: ``w_0``, width of the first block (a multiple of ``width_quantum``).
        width_slope: ``w_a``, slope of the linear width ramp per block.
        width_multiplier: ``w_m``, ratio between the widths of consecutive stages (> 1).
        depth: ``d``, total number of blocks over all stages.
        group_width: channels per group of the 3x3 grouped convolution.
        bottleneck_multiplier: bottleneck width divided by block width (pycls' ``BOT_MUL``;
            1.0 for every published RegNet).
        squeeze_excitation_ratio: SE width as a fraction of the block input width; 0 disables SE
            (RegNetX), 0.25 is RegNetY.
        stem_width: output channels of the stride-2 stem convolution.
        width_quantum: widths are rounded to multiples of this many channels.
    """

    initial_width: int
    width_slope: float
    width_multiplier: float
    depth: int
    group_width: int
    bottleneck_multiplier: float = 1.0
    squeeze_excitation_ratio: float = 0.0
    stem_width: int = 32
    width_quantum: int = 8

    def __post_init__(self) -> None:
        rules = (
            (
                self.initial_width > 0 and self.initial_width % self.width_quantum == 0,
                f"initial_width must be a positive multiple of {self.width_quantum}, got {self.initial_width}",
            ),
            (self.width_slope >= 0, f"width_slope must be >= 0, got {self.width_slope}"),
            (self.width_multiplier > 1, f"width_multiplier must be > 1, got {self.width_multiplier}"),
            (self.depth >= 1, f"depth must be >= 1, got {self.depth}"),
            (self.group_width >= 1, f"group_width must be >= 1, got {self.group_width}"),
            (self.bottleneck_multiplier > 0, f"bottleneck_multiplier must be > 0, got {self.bottleneck_multiplier}"),
            (
                0 <= self.squeeze_excitation_ratio < 1,
                f"squeeze_excitation_ratio must be in [0, 1), got {self.squeeze_excitation_ratio}",
            ),
        )
        for holds, message in rules:
            if not holds:
                raise ValueError(message)


@dataclass(frozen=True, kw_only=True)
class StagePlan:
    """Per-stage widths, depths and group widths after quantization and group compatibility."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    group_widths: tuple[int, ...]
    bottleneck_multiplier: float


def plan_stages(config: RegNetConfig) -> StagePlan:
    """Turn (w_0, w_a, w_m, d) into stage widths and depths (Radosavovic et al. 2020, eq. 2-3).

    >>> plan = plan_stages(REGNET_CONFIGS["regnety_1_6gf"])
    >>> plan.widths, plan.depths
    ((48, 120, 336, 888), (2, 6, 17, 2))
    """
    continuous_widths = [config.initial_width + config.width_slope * block for block in range(config.depth)]
    block_widths = []
    for width in continuous_widths:
        exponent = round(math.log(width / config.initial_width) / math.log(config.width_multiplier))
        quantized = config.initial_width * config.width_multiplier**exponent
        block_widths.append(round(quantized / config.width_quantum) * config.width_quantum)
    widths: list[int] = []
    depths: list[int] = []
    for width in block_widths:
        if widths and widths[-1] == width:
            depths[-1] += 1
        else:
            widths.append(width)
            depths.append(1)
    # Group compatibility (pycls ``adjust_block_compatibility``): the bottleneck width must be a
    # multiple of the group width, and the group width cannot exceed the bottleneck width.
    # NB: Python's ``round`` rounds halves to even, as pycls and timm do; torchvision rounds halves
    # up, so its RegNetY-800MF has 144 channels in stage 2 where these (and timm's 6.26 M
    # parameters) have 128.
    bottleneck_widths = [max(1, int(width * config.bottleneck_multiplier)) for width in widths]
    group_widths = [min(config.group_width, bottleneck) for bottleneck in bottleneck_widths]
    bottleneck_widths = [
        max(group, int(round(bottleneck / group) * group))
        for bottleneck, group in zip(bottleneck_widths, group_widths, strict=True)
    ]
    widths = [int(bottleneck / config.bottleneck_multiplier) for bottleneck in bottleneck_widths]
    return StagePlan(
        widths=tuple(widths),
        depths=tuple(depths),
        group_widths=tuple(group_widths),
        bottleneck_multiplier=config.bottleneck_multiplier,
    )


# Published design points: Radosavovic et al. 2020, appendix (RegNetX/Y at 200MF..32GF); identical
# to pycls' model zoo and timm's ``regnet.py`` model_cfgs. Columns: w_0, w_a, w_m, d, group width.
_PUBLISHED_REGNETX: dict[str, tuple[int, float, float, int, int]] = {
    "regnetx_400mf": (24, 24.48, 2.54, 22, 16),
    "regnetx_1_6gf": (80, 34.01, 2.25, 18, 24),
}
_PUBLISHED_REGNETY: dict[str, tuple[int, float, float, int, int]] = {
    "regnety_400mf": (48, 27.89, 2.09, 16, 8),
    "regnety_800mf": (56, 38.84, 2.4, 14, 16),
    "regnety_1_6gf": (48, 20.71, 2.65, 27, 24),
    "regnety_4_0gf": (96, 31.41, 2.24, 22, 64),
    "regnety_8_0gf": (192, 76.82, 2.19, 17, 56),
    "regnety_16gf": (200, 106.23, 2.48, 18, 112),
}
REGNETY_SQUEEZE_EXCITATION = 0.25
"""RegNetY's SE width as a fraction of the block input width (pycls, timm)."""


def _design_point(
    row: tuple[int, float, float, int, int], *, squeeze_excitation_ratio: float = 0.0, stem_width: int = 32
) -> RegNetConfig:
    initial_width, width_slope, width_multiplier, depth, group_width = row
    return RegNetConfig(
        initial_width=initial_width,
        width_slope=width_slope,
        width_multiplier=width_multiplier,
        depth=depth,
        group_width=group_width,
        squeeze_excitation_ratio=squeeze_excitation_ratio,
        stem_width=stem_width,
    )


REGNET_CONFIGS: dict[str, RegNetConfig] = {
    **{name: _design_point(row) for name, row in _PUBLISHED_REGNETX.items()},
    **{
        name: _design_point(row, squeeze_excitation_ratio=REGNETY_SQUEEZE_EXCITATION)
        for name, row in _PUBLISHED_REGNETY.items()
    },
    # Ours, not published: a narrow RegNetY for the ``small`` presets, which train a real step on a
    # 2-core CPU. Stage widths (16, 32, 64, 128), depths (1, 1, 2, 1).
    "regnety_tiny": _design_point(
        (16, 20.0, 2.0, 5, 8), squeeze_excitation_ratio=REGNETY_SQUEEZE_EXCITATION, stem_width=16
    ),
}


class SqueezeExcitation(nn.Module):
    """Channel gating from globally pooled features (Hu et al. 2018), as in RegNetY."""

    def __init__(self, channels: int, squeezed_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed_channels, 1)
        self.expand = nn.Conv2d(squeezed_channels, channels, 1)

    def forward(self, features: Tensor) -> Tensor:
        pooled = features.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(pooled))))
        return features * gate


class BottleneckBlock(nn.Module):
    """RegNet's X block (1x1, grouped 3x3, 1x1, residual), with SE after the 3x3 for the Y block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        group_width: int,
        bottleneck_multiplier: float,
        squeeze_excitation_ratio: float,
    ) -> None:
        super().__init__()
        bottleneck_channels = round(out_channels * bottleneck_multiplier)
        self.reduce = conv_norm_activation(in_channels, bottleneck_channels, 1)
        self.spatial = conv_norm_activation(
            bottleneck_channels,
            bottleneck_channels,
            3,
            stride=stride,
            groups=bottleneck_channels // group_width,
        )
        self.squeeze_excitation: nn.Module = (
            SqueezeExcitation(bottleneck_channels, round(in_channels * squeeze_excitation_ratio))
            if squeeze_excitation_ratio > 0
            else nn.Identity()
        )
        self.expand = conv_norm_activation(bottleneck_channels, out_channels, 1, activation=None)
        self.shortcut: nn.Module = (
            conv_norm_activation(in_channels, out_channels, 1, stride=stride, activation=None)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, features: Tensor) -> Tensor:
        residual = self.expand(self.squeeze_excitation(self.spatial(self.reduce(features))))
        return F.relu(residual + self.shortcut(features))


class RegNet(nn.Module):
    """Stem plus four stages; returns every stage's output (strides 4, 8, 16, 32).

    Attributes:
        plan: the stage widths and depths this network was built from.
        stage_channels: output channels per stage, for the neck.
        stage_strides: output stride per stage relative to the input image.
    """

    def __init__(self, config: RegNetConfig) -> None:
        super().__init__()
        self.plan = plan_stages(config)
        self.stem = conv_norm_activation(3, config.stem_width, 3, stride=2)
        stages: list[nn.Module] = []
        in_channels = config.stem_width
        for width, depth, group_width in zip(self.plan.widths, self.plan.depths, self.plan.group_widths, strict=True):
            blocks = [
                BottleneckBlock(
                    in_channels if block == 0 else width,
                    width,
                    stride=2 if block == 0 else 1,
                    group_width=group_width,
                    bottleneck_multiplier=config.bottleneck_multiplier,
                    squeeze_excitation_ratio=config.squeeze_excitation_ratio,
                )
                for block in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.stage_channels: tuple[int, ...] = self.plan.widths
        self.stage_strides: tuple[int, ...] = tuple(4 * 2**index for index in range(len(stages)))

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.stem(images)
        outputs = []
        for stage in self.stages:
            features = stage(features)
            outputs.append(features)
        return outputs


class RegNetClassifier(nn.Module):
    """RegNet with the ImageNet head (global average pool, linear): the published configuration."""

    def __init__(self, config: RegNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = RegNet(config)
        self.head = nn.Linear(self.backbone.stage_channels[-1], num_classes)

    def forward(self, images: Tensor) -> Tensor:
        logits: Tensor = self.head(self.backbone(images)[-1].mean(dim=(2, 3)))
        return logits
