"""Backbone-only entries: a published RegNet with its ImageNet head, as a suite network.

``full`` is the setting the backbone was published in (ImageNet, 224x224, 1000 classes), where
parameter and MAC counts are known (timm's tables, pycls), so the simulator can be checked
against a network whose cost is not ours to choose. ``small`` is the *same* architecture (same
layers, same parameters but for a 10-class head) at 32x32, so a real CPU step trains exactly the
layer shapes the simulator sees, only at a smaller spatial size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .regnet import REGNET_CONFIGS, RegNetClassifier
from .synthetic import SyntheticBatch

__all__ = [
    "BACKBONE_SIZES",
    "BackboneSize",
    "ImageClassifier",
    "build_backbone",
    "classification_loss",
    "make_classification_batch",
]


@dataclass(frozen=True, kw_only=True)
class BackboneSize:
    """Input resolution and classes of one preset."""

    image_size: int
    classes: int


BACKBONE_SIZES: dict[str, BackboneSize] = {
    "full": BackboneSize(image_size=224, classes=1000),
    "small": BackboneSize(image_size=32, classes=10),
}


class ImageClassifier(nn.Module):
    """``RegNetClassifier`` with the suite calling convention: ``model(images=...)`` -> dict."""

    def __init__(self, backbone: str, size: str) -> None:
        super().__init__()
        self.network = RegNetClassifier(REGNET_CONFIGS[backbone], num_classes=BACKBONE_SIZES[size].classes)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return {"logits": self.network(images)}


def build_backbone(backbone: str, size: str) -> ImageClassifier:
    return ImageClassifier(backbone, size)


def classification_loss(outputs: dict[str, Tensor], targets: Any) -> Tensor:
    """Cross-entropy of the logits against integer labels."""
    return F.cross_entropy(outputs["logits"], targets["labels"])


def make_classification_batch(
    size: str, batch_size: int, device: str | torch.device, *, seed: int = 0
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Noise images ``[B, 3, S, S]`` and random labels (a fixed batch the network can memorize)."""
    preset = BACKBONE_SIZES[size]
    data = SyntheticBatch(device, seed)
    inputs = {"images": data.normal(batch_size, 3, preset.image_size, preset.image_size)}
    return inputs, {"labels": data.integers(preset.classes, batch_size)}


def backbone_builder(backbone: str) -> partial[ImageClassifier]:
    """``build(size)`` for one named RegNet."""
    return partial(build_backbone, backbone)
