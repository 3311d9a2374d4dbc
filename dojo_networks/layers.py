"""Building blocks shared by the camera networks: positional encodings, attention, the camera trunk.

The three camera networks share one trunk, sized by a :class:`CameraTrunk`: cameras -> RegNet +
BiFPN -> camera tokens (:class:`CameraEncoder`) -> learned queries that lift them to an output grid
(:class:`GridQueryLifting`), which each network reshapes with :func:`to_grid` and feeds its heads.

Every shape here is a static function of the input shapes, and no Python branch looks at tensor
values, so the full-size networks run under ``FakeTensorMode`` (no storage, no arithmetic).
Attention goes through ``F.scaled_dot_product_attention`` so the capture sees one fused attention op
per call (on the CPU build: ``aten._scaled_dot_product_flash_attention_for_cpu``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bifpn import BiFPN
from .regnet import REGNET_CONFIGS, RegNet, RegNetConfig
from .synthetic import SyntheticBatch

__all__ = [
    "SMALL_CAMERA_TRUNK",
    "CameraEncoder",
    "CameraTrunk",
    "CrossAttentionBlock",
    "DecoderBlock",
    "FeedForward",
    "GridQueryLifting",
    "MultiHeadAttention",
    "grid_coordinates",
    "published_camera_trunk",
    "sinusoidal_encoding",
    "to_grid",
]


def grid_coordinates(shape: Sequence[int], *, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """Cell centres of a regular grid in normalized coordinates [-1, 1].

    Returns ``[prod(shape), len(shape)]``: one row per cell in row-major order of ``shape``
    (e.g. ``(Z, Y, X)``), columns ordered fastest axis first (``x, y, z``), which is the
    convention of ``F.grid_sample`` with ``align_corners=False``.

    >>> grid_coordinates((1, 2), device=torch.device("cpu")).tolist()
    [[-0.5, 0.0], [0.5, 0.0]]
    """
    axes = [torch.linspace(-1 + 1 / size, 1 - 1 / size, size, device=device, dtype=dtype) for size in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([axis.reshape(-1) for axis in reversed(mesh)], dim=-1)


def sinusoidal_encoding(coordinates: Tensor, num_frequencies: int) -> Tensor:
    """Fourier features ``sin/cos(pi * 2^k * c)`` for k < num_frequencies (NeRF, Mildenhall 2020).

    ``[..., dims]`` in [-1, 1] becomes ``[..., dims * 2 * num_frequencies]``.
    """
    frequencies = math.pi * 2.0 ** torch.arange(num_frequencies, device=coordinates.device, dtype=coordinates.dtype)
    angles = (coordinates.unsqueeze(-1) * frequencies).flatten(-2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FeedForward(nn.Sequential):
    """Transformer MLP: Linear, GELU, Linear (hidden width ``multiplier * dim``)."""

    def __init__(self, dim: int, multiplier: int = 4) -> None:
        super().__init__(
            nn.Linear(dim, multiplier * dim),
            nn.GELU(),
            nn.Linear(multiplier * dim, dim),
        )


class MultiHeadAttention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``.

    Keys and values share one projection (one matmul instead of two) since they always come from
    the same tokens here.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.output = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, memory: Tensor, *, is_causal: bool = False) -> Tensor:
        batch, num_queries, dim = queries.shape
        num_keys = memory.shape[1]
        head_dim = dim // self.heads
        query = self.query(queries).view(batch, num_queries, self.heads, head_dim).transpose(1, 2)
        key, value = (
            self.key_value(memory).view(batch, num_keys, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        )
        attended = F.scaled_dot_product_attention(query, key, value, is_causal=is_causal)
        output: Tensor = self.output(attended.transpose(1, 2).reshape(batch, num_queries, dim))
        return output


class CrossAttentionBlock(nn.Module):
    """Pre-LayerNorm block: cross-attention to (already normalized) memory, then an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, heads)
        self.feedforward_norm = nn.LayerNorm(dim)
        self.feedforward = FeedForward(dim)

    def forward(self, tokens: Tensor, memory: Tensor) -> Tensor:
        tokens = tokens + self.attention(self.attention_norm(tokens), memory)
        output: Tensor = tokens + self.feedforward(self.feedforward_norm(tokens))
        return output


class DecoderBlock(nn.Module):
    """Pre-LayerNorm decoder block: causal self-attention, cross-attention to memory, MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(dim)
        self.self_attention = MultiHeadAttention(dim, heads)
        self.cross_attention = CrossAttentionBlock(dim, heads)

    def forward(self, tokens: Tensor, memory: Tensor) -> Tensor:
        normalized = self.self_attention_norm(tokens)
        tokens = tokens + self.self_attention(normalized, normalized, is_causal=True)
        output: Tensor = self.cross_attention(tokens, memory)
        return output


class CameraEncoder(nn.Module):
    """Per-camera RegNet + BiFPN, then one token sequence over all cameras for cross-attention.

    Cameras are folded into the batch for the backbone and the neck (one backbone, shared
    weights, as in HydraNet). Tokens come from the ``token_levels`` coarsest BiFPN levels; each
    token gets a learned camera embedding, a learned level embedding and a projected sinusoidal
    encoding of its position in the image, so attention can tell cameras and places apart without
    calibration. The result is projected to ``dim`` and LayerNorm-ed once (the memory of every
    cross-attention layer downstream).

    Input ``[batch, cameras, 3, height, width]``; output ``[batch, cameras * tokens, dim]``.
    """

    def __init__(
        self,
        *,
        cameras: int,
        backbone: RegNetConfig,
        neck_channels: int,
        neck_repeats: int,
        dim: int,
        token_levels: int = 2,
        position_frequencies: int = 8,
    ) -> None:
        super().__init__()
        self.cameras = cameras
        self.token_levels = token_levels
        self.position_frequencies = position_frequencies
        self.backbone = RegNet(backbone)
        # Stages at strides 8, 16 and 32 feed the neck, which adds stride 64 (the levels quoted
        # for HydraNet: docs/reference/autopilot-networks.md, "HydraNet": backbone feature scales [U]).
        self.neck = BiFPN(self.backbone.stage_channels[1:], channels=neck_channels, repeats=neck_repeats)
        if not 1 <= token_levels <= self.neck.num_levels:
            raise ValueError(f"token_levels must be in [1, {self.neck.num_levels}], got {token_levels}")
        self.camera_embedding = nn.Parameter(torch.randn(cameras, neck_channels) * 0.02)
        self.level_embedding = nn.Parameter(torch.randn(token_levels, neck_channels) * 0.02)
        self.image_position = nn.Linear(2 * 2 * position_frequencies, neck_channels)
        self.projection = nn.Linear(neck_channels, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: Tensor) -> Tensor:
        batch, cameras = images.shape[:2]
        if cameras != self.cameras:
            raise ValueError(f"expected {self.cameras} cameras, got images of shape {images.shape}")
        levels = self.neck(self.backbone(images.flatten(0, 1))[1:])
        per_level = []
        for index, features in enumerate(levels[-self.token_levels :]):
            height, width = features.shape[-2:]
            position = sinusoidal_encoding(
                grid_coordinates((height, width), device=features.device, dtype=features.dtype),
                self.position_frequencies,
            )
            tokens = features.flatten(2).transpose(1, 2)
            tokens = tokens + self.image_position(position) + self.level_embedding[index]
            per_level.append(tokens.reshape(batch, cameras, height * width, -1))
        tokens = torch.cat(per_level, dim=2) + self.camera_embedding[:, None, :]
        output: Tensor = self.norm(self.projection(tokens.flatten(1, 2)))
        return output


class GridQueryLifting(nn.Module):
    """Lift camera tokens to an output-space grid with learned queries (HydraNet's fusion).

    The query of each grid cell is an MLP of the sinusoidal encoding of the cell centre, as
    described for HydraNet's BEV transformer; ``layers`` cross-attention blocks let every cell
    attend to every camera token. Not modelled: self-attention among the cells (quadratic in the
    number of cells; Tesla did not describe one).

    Output ``[batch, prod(grid_shape), dim]`` in row-major order of ``grid_shape``.
    """

    def __init__(
        self,
        *,
        grid_shape: Sequence[int],
        dim: int,
        heads: int,
        layers: int,
        position_frequencies: int = 8,
    ) -> None:
        super().__init__()
        self.grid_shape = tuple(grid_shape)
        self.position_frequencies = position_frequencies
        self.query_mlp = nn.Sequential(
            nn.Linear(len(self.grid_shape) * 2 * position_frequencies, dim),
            nn.GELU(),
            nn.Linear(dim, dim),
        )
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, camera_tokens: Tensor) -> Tensor:
        position = sinusoidal_encoding(
            grid_coordinates(self.grid_shape, device=camera_tokens.device, dtype=camera_tokens.dtype),
            self.position_frequencies,
        )
        queries = self.query_mlp(position).expand(camera_tokens.shape[0], -1, -1)
        for block in self.blocks:
            queries = block(queries, camera_tokens)
        output: Tensor = self.norm(queries)
        return output


def to_grid(tokens: Tensor, grid_shape: Sequence[int]) -> Tensor:
    """``[batch, prod(grid_shape), dim]`` grid tokens as a feature map ``[batch, dim, *grid_shape]``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid_shape)


@dataclass(frozen=True, kw_only=True)
class CameraTrunk:
    """Sizes of the camera trunk. Only the camera count and image size are published.

    Attributes:
        cameras: surround cameras (8 published).
        image_height, image_width: pixels per camera (960 x 1280 published).
        backbone: key of :data:`~dojo_networks.regnet.REGNET_CONFIGS` (the variant is not
            published).
        neck_channels, neck_repeats: BiFPN width and number of layers.
        dim: width of the camera tokens and of the grid queries.
        heads, lifting_layers: attention heads and cross-attention blocks of the lifting.
    """

    cameras: int
    image_height: int
    image_width: int
    backbone: str
    neck_channels: int
    neck_repeats: int
    dim: int
    heads: int
    lifting_layers: int

    def encoder(self) -> CameraEncoder:
        """The per-camera RegNet + BiFPN and the camera tokens."""
        return CameraEncoder(
            cameras=self.cameras,
            backbone=REGNET_CONFIGS[self.backbone],
            neck_channels=self.neck_channels,
            neck_repeats=self.neck_repeats,
            dim=self.dim,
        )

    def lifting(self, grid_shape: Sequence[int]) -> GridQueryLifting:
        """Learned queries over ``grid_shape`` cross-attending to the camera tokens."""
        return GridQueryLifting(grid_shape=grid_shape, dim=self.dim, heads=self.heads, layers=self.lifting_layers)

    def images(self, data: SyntheticBatch, batch: int) -> Tensor:
        """Synthetic camera images ``[batch, cameras, 3, image_height, image_width]``."""
        return data.normal(batch, self.cameras, 3, self.image_height, self.image_width)


def published_camera_trunk(*, backbone: str, neck_channels: int, lifting_layers: int) -> CameraTrunk:
    """The published rig (8 cameras at 1280 x 960) with our widths: 3 BiFPN layers, 256-wide tokens
    and queries, 8 heads; the backbone, the neck width and the lifting depth vary by network."""
    return CameraTrunk(
        cameras=8,
        image_height=960,
        image_width=1280,
        backbone=backbone,
        neck_channels=neck_channels,
        neck_repeats=3,
        dim=256,
        heads=8,
        lifting_layers=lifting_layers,
    )


SMALL_CAMERA_TRUNK = CameraTrunk(
    cameras=8,
    image_height=48,
    image_width=64,
    backbone="regnety_tiny",
    neck_channels=32,
    neck_repeats=2,
    dim=32,
    heads=4,
    lifting_layers=2,
)
"""For a real training step on a 2-core CPU: the same structure, 8 cameras at 64x48, narrow widths."""
