"""Standard shapes measured beside the suite networks: an MLP, a CNN and a transformer encoder.

Each is a :class:`dojo_networks.NetworkSpec` with ``small`` (a real CPU step in well under a
second) and ``full`` (GPU-sized) presets, so the validation scripts treat them like suite networks.
The sizes are ours, chosen to exercise the matrix unit at three arithmetic intensities: wide GEMMs
(MLP), convolutions with BatchNorm (a ResNet-18-style CNN, He et al. 2016, basic blocks), and
attention plus LayerNorm (a pre-norm encoder, Vaswani et al. 2017).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dojo_networks import Batch, Device, NetworkSpec
from dojo_networks.blocks import conv_norm_activation
from dojo_networks.synthetic import SyntheticBatch

__all__ = ["STANDARD_NETWORKS"]

MakeBatch = Callable[[str, int, Device], Batch]


@dataclass(frozen=True, kw_only=True)
class MlpSize:
    features: int
    hidden: int
    layers: int
    classes: int


MLP_SIZES = {
    "small": MlpSize(features=256, hidden=512, layers=4, classes=10),
    "full": MlpSize(features=1024, hidden=4096, layers=6, classes=1000),
}


class Mlp(nn.Module):
    """``layers`` Linear + GELU blocks and a classifier."""

    def __init__(self, size: MlpSize) -> None:
        super().__init__()
        widths = [size.features] + [size.hidden] * size.layers
        blocks: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            blocks += [nn.Linear(width_in, width_out), nn.GELU()]
        self.body = nn.Sequential(*blocks)
        self.classifier = nn.Linear(size.hidden, size.classes)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {"logits": self.classifier(self.body(features))}


def _make_mlp_batch(size: str, batch_size: int, device: Device) -> Batch:
    preset = MLP_SIZES[size]
    data = SyntheticBatch(device, 0)
    return {"features": data.normal(batch_size, preset.features)}, {"labels": data.integers(preset.classes, batch_size)}


@dataclass(frozen=True, kw_only=True)
class CnnSize:
    image_size: int
    widths: tuple[int, ...]
    classes: int


CNN_SIZES = {
    "small": CnnSize(image_size=32, widths=(16, 32, 64, 128), classes=10),
    "full": CnnSize(image_size=224, widths=(64, 128, 256, 512), classes=1000),
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a (projected) shortcut."""

    def __init__(self, width_in: int, width_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width_in, width_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(width_out)
        self.conv2 = nn.Conv2d(width_out, width_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or width_in != width_out:
            self.shortcut = conv_norm_activation(width_in, width_out, 1, stride=stride, activation=None)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 layout: a 7x7 stem, four stages of two basic blocks, global pooling, classifier."""

    def __init__(self, size: CnnSize) -> None:
        super().__init__()
        stem = size.widths[0]
        self.stem = nn.Sequential(
            *conv_norm_activation(3, stem, 7, stride=2, activation=nn.ReLU), nn.MaxPool2d(3, 2, 1)
        )
        blocks: list[nn.Module] = []
        width_in = stem
        for index, width in enumerate(size.widths):
            stride = 1 if index == 0 else 2
            blocks += [BasicBlock(width_in, width, stride), BasicBlock(width, width, 1)]
            width_in = width
        self.stages = nn.Sequential(*blocks)
        self.classifier = nn.Linear(width_in, size.classes)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.stages(self.stem(images))
        return {"logits": self.classifier(features.mean(dim=(2, 3)))}


def _make_cnn_batch(size: str, batch_size: int, device: Device) -> Batch:
    preset = CNN_SIZES[size]
    data = SyntheticBatch(device, 0)
    images = data.square_images(batch_size, preset.image_size)
    return {"images": images}, {"labels": data.integers(preset.classes, batch_size)}


@dataclass(frozen=True, kw_only=True)
class EncoderSize:
    tokens: int
    dim: int
    heads: int
    layers: int
    vocabulary: int


ENCODER_SIZES = {
    "small": EncoderSize(tokens=64, dim=128, heads=4, layers=2, vocabulary=512),
    "full": EncoderSize(tokens=512, dim=768, heads=12, layers=12, vocabulary=30522),
}


class EncoderBlock(nn.Module):
    """Pre-norm self-attention (``scaled_dot_product_attention``) and a 4x GELU feed-forward."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.projection = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.projection(attended.transpose(1, 2).reshape(batch, tokens, dim))
        output: Tensor = x + self.feed_forward(self.norm2(x))
        return output


class TransformerEncoder(nn.Module):
    """BERT-style encoder trained as a token classifier (masked-LM head over the vocabulary)."""

    def __init__(self, size: EncoderSize) -> None:
        super().__init__()
        self.embedding = nn.Embedding(size.vocabulary, size.dim)
        self.position = nn.Parameter(torch.zeros(size.tokens, size.dim))
        self.blocks = nn.Sequential(*(EncoderBlock(size.dim, size.heads) for _ in range(size.layers)))
        self.norm = nn.LayerNorm(size.dim)
        self.head = nn.Linear(size.dim, size.vocabulary)

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        x = self.embedding(tokens) + self.position
        return {"logits": self.head(self.norm(self.blocks(x)))}


def _make_encoder_batch(size: str, batch_size: int, device: Device) -> Batch:
    preset = ENCODER_SIZES[size]
    data = SyntheticBatch(device, 0)
    tokens = data.integers(preset.vocabulary, batch_size, preset.tokens)
    return {"tokens": tokens}, {"labels": data.integers(preset.vocabulary, batch_size, preset.tokens)}


def _classification_loss(outputs: dict[str, Tensor], targets: Any) -> Tensor:
    logits = outputs["logits"]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets["labels"].reshape(-1))


def _standard(name: str, description: str, build: Callable[[str], nn.Module], make_batch: MakeBatch) -> NetworkSpec:
    return NetworkSpec(
        name=name, description=description, build=build, make_batch=make_batch, loss=_classification_loss
    )


STANDARD_NETWORKS: dict[str, NetworkSpec] = {
    spec.name: spec
    for spec in (
        _standard(
            "mlp", "MLP: Linear+GELU blocks and a classifier", lambda size: Mlp(MLP_SIZES[size]), _make_mlp_batch
        ),
        _standard("cnn", "ResNet-18-style CNN with BatchNorm", lambda size: ResNet18(CNN_SIZES[size]), _make_cnn_batch),
        _standard(
            "transformer",
            "pre-norm transformer encoder with an MLM-style head",
            lambda size: TransformerEncoder(ENCODER_SIZES[size]),
            _make_encoder_batch,
        ),
    )
}
"""Name -> spec of the standard shapes: beside the suite networks, never in :data:`dojo_networks.NETWORKS`."""
