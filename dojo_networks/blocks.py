"""Convolution building blocks shared by the networks, in 2D and 3D.

* :func:`conv_norm_layers` / :class:`ConvNormActivation`: a bias-free convolution with "same"
  padding, BatchNorm, and an activation (in-place ReLU unless told otherwise, or none);
* :func:`upsample_layers`: a stride-2 transposed convolution that doubles each axis, BatchNorm, ReLU;
* :func:`separable_conv_layers`: EfficientDet's depthwise 3x3 then pointwise 1x1, BatchNorm.

They return plain lists of layers (or an ``nn.Sequential`` of them), so a caller can splice several
into one ``nn.Sequential`` and its children stay numbered in order: the module paths that reports
show (``lane_guidance.3`` is the second convolution) are those of the layers, not of a wrapper.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = [
    "Activation",
    "ConvNormActivation",
    "conv_norm_layers",
    "depthwise_conv",
    "relu",
    "separable_conv_layers",
    "upsample_layers",
]

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


def conv_norm_layers(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    dims: int = 2,
    activation: Activation | None = relu,
) -> list[nn.Module]:
    """Convolution (no bias, padding ``kernel_size // 2``), BatchNorm, then ``activation()`` if any."""
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
    return layers


class ConvNormActivation(nn.Sequential):
    """:func:`conv_norm_layers` as one module: ``0`` the convolution, ``1`` the norm, ``2`` the activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        dims: int = 2,
        activation: Activation | None = relu,
    ) -> None:
        super().__init__(
            *conv_norm_layers(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                groups=groups,
                dims=dims,
                activation=activation,
            )
        )


def upsample_layers(in_channels: int, out_channels: int, kernel_size: int, *, dims: int = 2) -> list[nn.Module]:
    """Transposed convolution of stride 2 (no bias, padding ``(kernel_size - 2) // 2``, so each axis
    doubles exactly), BatchNorm and in-place ReLU."""
    return [
        _TRANSPOSED[dims](in_channels, out_channels, kernel_size, stride=2, padding=(kernel_size - 2) // 2, bias=False),
        _BATCH_NORMS[dims](out_channels),
        relu(),
    ]


def depthwise_conv(channels: int) -> nn.Conv2d:
    """Depthwise 3x3 convolution without bias (one filter per channel)."""
    return nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)


def separable_conv_layers(
    channels: int, *, pointwise_bias: bool, activation: Activation | None = None
) -> list[nn.Module]:
    """Depthwise 3x3, pointwise 1x1, BatchNorm, then ``activation()`` if any (EfficientDet, section 3.3)."""
    layers: list[nn.Module] = [
        depthwise_conv(channels),
        nn.Conv2d(channels, channels, 1, bias=pointwise_bias),
        nn.BatchNorm2d(channels),
    ]
    if activation is not None:
        layers.append(activation())
    return layers
