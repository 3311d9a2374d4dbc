"""Convolution building blocks shared by the networks, in 2D and 3D.

* :func:`conv_norm_activation`: a bias-free convolution with "same" padding, BatchNorm, and an
  activation (in-place ReLU unless told otherwise, or none);
* :func:`upsample`: a stride-2 transposed convolution that doubles each axis, BatchNorm, ReLU;
* :func:`separable_conv`: EfficientDet's depthwise 3x3 then pointwise 1x1, BatchNorm.

Each returns an ``nn.Sequential`` whose children are the layers, numbered in order. A caller that
wants several blocks as one flat sequence splices them (``nn.Sequential(*block_a, *block_b)``), so
the module paths that reports show (``lane_guidance.3`` is the second convolution) are those of the
layers, with no wrapper in between.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["Activation", "conv_norm_activation", "depthwise_conv", "relu", "separable_conv", "upsample"]

Activation = Callable[[], nn.Module]
"""Makes a fresh activation module (``nn.SiLU``, :func:`relu`, ...)."""

_CONVOLUTIONS: dict[int, type[nn.Conv2d] | type[nn.Conv3d]] = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED: dict[int, type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]] = {
    2: nn.ConvTranspose2d,
    3: nn.ConvTranspose3d,
}
_BATCH_NORMS: dict[int, type[nn.BatchNorm2d] | type[nn.BatchNorm3d]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def relu() -> nn.Module:
    """In-place ReLU, as torchvision's and timm's convolution blocks use."""
    return nn.ReLU(inplace=True)


def conv_norm_activation(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    dims: int = 2,
    activation: Activation | None = relu,
) -> nn.Sequential:
    """Convolution (no bias, padding ``kernel_size // 2``), BatchNorm, then ``activation()`` if any:
    children ``0``, ``1`` and ``2``."""
    layers: list[nn.Module] = [
        _CONVOLUTIONS[dims](
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        _BATCH_NORMS[dims](out_channels),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


def upsample(in_channels: int, out_channels: int, kernel_size: int, *, dims: int = 2) -> nn.Sequential:
    """Transposed convolution of stride 2 (no bias, padding ``(kernel_size - 2) // 2``, so each axis
    doubles exactly), BatchNorm and in-place ReLU."""
    return nn.Sequential(
        _TRANSPOSED[dims](in_channels, out_channels, kernel_size, stride=2, padding=(kernel_size - 2) // 2, bias=False),
        _BATCH_NORMS[dims](out_channels),
        relu(),
    )


def depthwise_conv(channels: int) -> nn.Conv2d:
    """Depthwise 3x3 convolution without bias (one filter per channel)."""
    return nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)


def separable_conv(channels: int, *, pointwise_bias: bool, activation: Activation | None = None) -> nn.Sequential:
    """Depthwise 3x3, pointwise 1x1, BatchNorm, then ``activation()`` if any (EfficientDet, section 3.3)."""
    layers: list[nn.Module] = [
        depthwise_conv(channels),
        nn.Conv2d(channels, channels, 1, bias=pointwise_bias),
        nn.BatchNorm2d(channels),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)
