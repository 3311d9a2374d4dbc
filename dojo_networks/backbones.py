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

import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Batch, Device, network
from .regnet import REGNET_CONFIGS, RegNetClassifier, plan_stages
from .synthetic import SyntheticBatch

__all__ = [
    "BACKBONE_NETWORKS",
    "BACKBONE_SIZES",
    "BackboneSize",
    "ImageClassifier",
    "classification_loss",
    "make_classification_batch",
]


@dataclass(frozen=True, kw_only=True)
class BackboneSize:
    """Input resolution and classes of one preset."""

    image_size: int
    classes: int


BACKBONE_NETWORKS = ("regnety_1_6gf", "regnety_4_0gf", "regnety_8_0gf")
"""Published RegNets offered on their own, in their ImageNet setting."""

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


def classification_loss(outputs: dict[str, Tensor], targets: Any) -> Tensor:
    """Cross-entropy of the logits against integer labels."""
    return F.cross_entropy(outputs["logits"], targets["labels"])


def make_classification_batch(size: str, batch_size: int, device: Device, *, seed: int = 0) -> Batch:
    """Noise images ``[B, 3, S, S]`` and random labels (a fixed batch the network can memorize)."""
    preset = BACKBONE_SIZES[size]
    data = SyntheticBatch(device, seed)
    images = data.square_images(batch_size, preset.image_size)
    return {"images": images}, {"labels": data.integers(preset.classes, batch_size)}


for _backbone in BACKBONE_NETWORKS:
    network(
        _backbone,
        description=(
            f"{_backbone} backbone with its ImageNet head (224x224, 1000 classes); "
            f"stage widths {plan_stages(REGNET_CONFIGS[_backbone]).widths}"
        ),
        make_batch=make_classification_batch,
        loss=classification_loss,
    )(partial(ImageClassifier, _backbone))
