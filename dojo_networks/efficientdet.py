"""EfficientDet-D0 (Tan, Pang and Le, "EfficientDet", CVPR 2020), written from the paper.

* Backbone: EfficientNet-B0 (Tan and Le, ICML 2019, table 1): a 3x3 stride-2 stem of 32 channels,
  then seven stages of MBConv blocks (expansion, depthwise kxk, squeeze-excitation with a quarter of
  the block's input width, linear projection, residual when shapes match), SiLU and BatchNorm
  throughout. Levels P3, P4, P5 are the outputs of stages 3, 5 and 7 (40, 112, 320 channels at
  strides 8, 16, 32).
* Neck: the suite's :class:`~dojo_networks.bifpn.BiFPN` with D0's settings (EfficientDet table 1:
  64 channels, 3 layers) and two extra levels P6, P7 made from P5 (section 3.3, as in the paper).
* Heads: class and box networks shared across levels (table 1: 3 layers for D0), each layer a
  depthwise-separable 3x3 conv with BatchNorm and SiLU; 9 anchors per cell (3 scales x 3 ratios);
  90 classes as in NVIDIA's DeepLearningExamples COCO setting.
* Loss: sigmoid focal loss (Lin et al. 2017, alpha 0.25, gamma 1.5 as in EfficientDet) over every
  anchor, plus a Huber box loss on positive anchors, each normalised by the number of positives.

``full`` is the published 512x512 input; ``small`` is the same architecture at 128x128 with 8
classes, for a real CPU step (P7 is 1x1 there: train it at batch >= 2, or BatchNorm has one value
per channel). Not included: stochastic depth (drop-connect) in the backbone, anchor
matching (targets are synthetic dense per-anchor tensors), the per-level BatchNorm of the heads
(one BatchNorm per layer is shared across levels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bifpn import BiFPN
from .blocks import conv_norm_activation, depthwise_conv, separable_conv
from .registry import Batch, Device, network
from .synthetic import SyntheticBatch

__all__ = ["EFFICIENTDET_CONFIGS", "EfficientDet", "build_efficientdet", "efficientdet_loss", "make_efficientdet_batch"]

DESCRIPTION = "EfficientDet-D0: EfficientNet-B0 -> BiFPN (64 ch x 3) -> class/box heads, 512x512 (published)"
"""One line for reports and docs: the network's spec carries it."""

# EfficientNet-B0, table 1 of Tan and Le 2019: (expansion, kernel, stride, output channels, blocks).
EFFICIENTNET_B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
PYRAMID_STAGES = (2, 4, 6)  # indices of the stages giving P3, P4, P5
ANCHORS_PER_CELL = 9  # EfficientDet: 3 scales x 3 aspect ratios
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 1.5  # EfficientDet's focal loss gamma (official implementation)
POSITIVE_FRACTION = 0.01  # synthetic targets: share of anchors that hold an object


@dataclass(frozen=True, kw_only=True)
class EfficientDetConfig:
    """One EfficientDet preset: image size, classes, BiFPN width and depth, head depth."""

    image_size: int
    classes: int
    bifpn_channels: int
    bifpn_layers: int
    head_layers: int


EFFICIENTDET_CONFIGS = {
    # EfficientDet table 1, D0: 512 input, BiFPN 64 channels x 3 layers, 3 head layers.
    "full": EfficientDetConfig(image_size=512, classes=90, bifpn_channels=64, bifpn_layers=3, head_layers=3),
    # Ours: the same network at 128x128 (P7 is 1x1) with 8 classes.
    "small": EfficientDetConfig(image_size=128, classes=8, bifpn_channels=64, bifpn_layers=3, head_layers=3),
}


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, squeeze-excitation, 1x1 projection."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand: nn.Module = (
            conv_norm_activation(in_channels, hidden, 1, activation=nn.SiLU) if expansion != 1 else nn.Identity()
        )
        self.depthwise = conv_norm_activation(hidden, hidden, kernel, stride=stride, groups=hidden, activation=nn.SiLU)
        squeezed = max(1, in_channels // 4)
        self.squeeze = nn.Conv2d(hidden, squeezed, 1)
        self.excite = nn.Conv2d(squeezed, hidden, 1)
        self.project = conv_norm_activation(hidden, out_channels, 1, activation=None)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.depthwise(self.expand(x))
        scale = torch.sigmoid(self.excite(F.silu(self.squeeze(y.mean(dim=(2, 3), keepdim=True)))))
        projected: Tensor = self.project(y * scale)
        return x + projected if self.residual else projected


class EfficientNetB0(nn.Module):
    """The backbone; returns P3, P4, P5."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_norm_activation(3, 32, 3, stride=2, activation=nn.SiLU)
        stages = []
        width = 32
        for expansion, kernel, stride, out_channels, blocks in EFFICIENTNET_B0_STAGES:
            layers = [
                MBConv(width if i == 0 else out_channels, out_channels, expansion, kernel, stride if i == 0 else 1)
                for i in range(blocks)
            ]
            stages.append(nn.Sequential(*layers))
            width = out_channels
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(EFFICIENTNET_B0_STAGES[i][3] for i in PYRAMID_STAGES)

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.stem(images)
        levels = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in PYRAMID_STAGES:
                levels.append(x)
        return levels


class HeadNetwork(nn.Module):
    """``layers`` separable conv + BatchNorm + SiLU, then a separable conv to ``outputs`` per cell."""

    def __init__(self, channels: int, layers: int, outputs: int, bias_prior: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            separable_conv(channels, pointwise_bias=True, activation=nn.SiLU) for _ in range(layers)
        )
        self.depthwise = depthwise_conv(channels)
        self.output = nn.Conv2d(channels, outputs, 1)
        self.output.bias = nn.Parameter(torch.full((outputs,), bias_prior))

    def forward(self, levels: list[Tensor]) -> list[Tensor]:
        results = []
        for level in levels:
            x = level
            for layer in self.layers:
                x = layer(x)
            results.append(self.output(self.depthwise(x)))
        return results


class EfficientDet(nn.Module):
    """EfficientNet-B0 + BiFPN + class/box heads; ``model(images=...)`` -> per-level outputs."""

    def __init__(self, config: EfficientDetConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = EfficientNetB0()
        self.bifpn = BiFPN(
            self.backbone.out_channels, channels=config.bifpn_channels, repeats=config.bifpn_layers, extra_levels=2
        )
        # RetinaNet prior: sigmoid(bias) = 0.01 at the start of training.
        prior = -4.595
        self.class_head = HeadNetwork(
            config.bifpn_channels, config.head_layers, ANCHORS_PER_CELL * config.classes, prior
        )
        self.box_head = HeadNetwork(config.bifpn_channels, config.head_layers, ANCHORS_PER_CELL * 4)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        levels = self.bifpn(self.backbone(images))
        outputs = {}
        for index, (classes, boxes) in enumerate(zip(self.class_head(levels), self.box_head(levels), strict=True)):
            outputs[f"class_p{index + 3}"] = classes
            outputs[f"box_p{index + 3}"] = boxes
        return outputs


def _level_sizes(image_size: int) -> list[int]:
    """Cells per side of P3..P7: ceil-halving as stride-2 convs and pools give."""
    sizes = []
    cells = image_size
    for stride_step in range(7):
        cells = (cells + 1) // 2
        if stride_step >= 2:
            sizes.append(cells)
    return sizes


def make_efficientdet_batch(size: str, batch_size: int, device: Device, *, seed: int = 0) -> Batch:
    """Noise images, and per level dense anchor targets: one-hot classes and box offsets."""
    config = EFFICIENTDET_CONFIGS[size]
    data = SyntheticBatch(device, seed)
    inputs = {"images": data.square_images(batch_size, config.image_size)}
    targets: dict[str, Tensor] = {}
    for index, cells in enumerate(_level_sizes(config.image_size)):
        level = index + 3
        shape = (batch_size, ANCHORS_PER_CELL * config.classes, cells, cells)
        occupancy = data.uniform(0.0, 1.0, batch_size, ANCHORS_PER_CELL, 1, cells, cells)
        labels = data.integers(config.classes, batch_size, ANCHORS_PER_CELL, 1, cells, cells)
        if data.is_meta:
            targets[f"class_p{level}"] = torch.empty(shape, device=data.device)
            targets[f"positive_p{level}"] = torch.empty(
                (batch_size, ANCHORS_PER_CELL, 1, cells, cells), device=data.device
            )
        else:
            positive = (occupancy < POSITIVE_FRACTION).float()
            one_hot = F.one_hot(labels.squeeze(2), config.classes).permute(0, 1, 4, 2, 3).float() * positive
            targets[f"class_p{level}"] = one_hot.reshape(shape)
            targets[f"positive_p{level}"] = positive
        targets[f"box_p{level}"] = data.normal(batch_size, ANCHORS_PER_CELL * 4, cells, cells)
    return inputs, targets


def efficientdet_loss(outputs: dict[str, Tensor], targets: Any) -> Tensor:
    """Focal classification loss plus Huber box loss over every level, per positive anchor."""
    class_total = outputs["class_p3"].new_zeros(())
    box_total = outputs["class_p3"].new_zeros(())
    positives = outputs["class_p3"].new_ones(())
    for level in range(3, 8):
        logits = outputs[f"class_p{level}"].float()
        target = targets[f"class_p{level}"]
        probability = torch.sigmoid(logits)
        cross_entropy = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = probability * target + (1 - probability) * (1 - target)
        alpha_t = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
        class_total = class_total + (alpha_t * (1 - p_t) ** FOCAL_GAMMA * cross_entropy).sum()
        positive = targets[f"positive_p{level}"]
        boxes = outputs[f"box_p{level}"].float()
        batch, _, height, width = boxes.shape
        box_error = F.huber_loss(boxes, targets[f"box_p{level}"], reduction="none", delta=0.1)
        box_total = box_total + (box_error.view(batch, ANCHORS_PER_CELL, 4, height, width) * positive).sum()
        positives = positives + positive.sum()
    return class_total / positives + 50.0 * box_total / (4 * positives)


@network("efficientdet_d0", description=DESCRIPTION, make_batch=make_efficientdet_batch, loss=efficientdet_loss)
def build_efficientdet(size: str) -> EfficientDet:
    return EfficientDet(EFFICIENTDET_CONFIGS[size])
