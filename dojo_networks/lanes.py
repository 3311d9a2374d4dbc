"""Lanes network: the lane graph decoded autoregressively like a language (Tesla AI Day 2022).

Pipeline (one training sample):

1. Vision: 8 cameras through RegNet + BiFPN and a BEV transformer (the same components as
   :mod:`.hydranet`) give a dense BEV tensor; a small convolutional "lane guidance" module refines
   it, and its cells, LayerNorm-ed, are the memory the language component attends to.
2. Language: a transformer decoder over lane tokens. Each block has causal self-attention over the
   tokens so far, cross-attention to the BEV memory and an MLP. Trained with teacher forcing: the
   input is the target sequence shifted right by one (a start token first), and a causal mask keeps
   position ``i`` from seeing tokens after ``i``, so one forward pass trains every position.

The lane language (ours; Tesla showed its shape, not its vocabulary): ``PAD``, ``START``, ``END``,
``NEW_LANE`` (a lane begins), ``FORK`` and ``MERGE`` (the next point joins an earlier lane), then one
token per cell of a coarse ``token_grid`` over the BEV area (a lane vertex). Besides the next-token
logits, each position regresses the sub-cell offset of the vertex it predicts (in cells, in
[-0.5, 0.5]), which is how a coarse vocabulary still gives fine geometry.

Inputs: ``images [B, cameras, 3, H, W]``, ``lane_tokens [B, L]`` (int64, teacher-forcing input).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import conv_norm_activation
from .layers import SMALL_CAMERA_TRUNK, CameraTrunk, DecoderBlock, published_camera_trunk, to_grid
from .registry import Batch, Device, network, total_loss
from .synthetic import SyntheticBatch

__all__ = [
    "END_TOKEN",
    "FORK_TOKEN",
    "LANES_CONFIGS",
    "MERGE_TOKEN",
    "NEW_LANE_TOKEN",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "START_TOKEN",
    "LanesConfig",
    "LanesNetwork",
    "build_lanes",
    "lanes_loss",
    "lanes_losses",
    "make_lanes_batch",
]

DESCRIPTION = (
    "8 cameras -> RegNetY + BiFPN -> BEV transformer -> lane guidance -> "
    "autoregressive lane-token decoder (teacher forcing)"
)
"""One line for reports and docs: the network's spec carries it."""

PAD_TOKEN = 0
START_TOKEN = 1
END_TOKEN = 2
NEW_LANE_TOKEN = 3
FORK_TOKEN = 4
MERGE_TOKEN = 5
SPECIAL_TOKENS = 6  # vertex tokens are SPECIAL_TOKENS + row * token_grid_width + column


@dataclass(frozen=True, kw_only=True)
class LanesConfig:
    """Sizes of one lanes-network preset. Only the camera count and image size are published.

    Attributes:
        trunk: cameras, backbone, BiFPN and the BEV transformer; ``trunk.dim`` and ``trunk.heads``
            are also the width and heads of the lane decoder.
        bev_height, bev_width: BEV cells (the decoder's memory length is their product).
        token_grid: coarse vertex grid ``(rows, columns)`` defining the vertex vocabulary.
        decoder_layers: decoder blocks; ``max_tokens`` is the sequence length L.
        lanes_per_sample, vertices_per_lane: synthetic lane-graph size.
    """

    trunk: CameraTrunk
    bev_height: int
    bev_width: int
    token_grid: tuple[int, int]
    decoder_layers: int
    max_tokens: int
    lanes_per_sample: int
    vertices_per_lane: int

    @property
    def vocabulary_size(self) -> int:
        rows, columns = self.token_grid
        return SPECIAL_TOKENS + rows * columns


LANES_CONFIGS: dict[str, LanesConfig] = {
    # Published: 8 cameras at 1280x960. Ours: the rest. A 100 x 100 BEV grid (1 m cells, +-50 m);
    # a 20 x 20 vertex grid (5 m cells, 406 tokens with the specials); 256 tokens hold ~12 lanes
    # of ~18 vertices with their topology tokens; 6 decoder blocks of width 256.
    "full": LanesConfig(
        trunk=published_camera_trunk(backbone="regnety_1_6gf", neck_channels=128, lifting_layers=3),
        bev_height=100,
        bev_width=100,
        token_grid=(20, 20),
        decoder_layers=6,
        max_tokens=256,
        lanes_per_sample=12,
        vertices_per_lane=18,
    ),
    "small": LanesConfig(
        trunk=SMALL_CAMERA_TRUNK,
        bev_height=12,
        bev_width=12,
        token_grid=(8, 8),
        decoder_layers=2,
        max_tokens=24,
        lanes_per_sample=3,
        vertices_per_lane=5,
    ),
}


class LanesNetwork(nn.Module):
    """Cameras -> RegNet + BiFPN -> BEV transformer -> lane guidance -> causal lane decoder."""

    def __init__(self, config: LanesConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.trunk.dim
        self.encoder = config.trunk.encoder()
        self.fusion = config.trunk.lifting((config.bev_height, config.bev_width))
        self.lane_guidance = nn.Sequential(*conv_norm_activation(dim, dim, 3), *conv_norm_activation(dim, dim, 3))
        self.memory_norm = nn.LayerNorm(dim)
        self.token_embedding = nn.Embedding(config.vocabulary_size, dim)
        self.position_embedding = nn.Parameter(torch.randn(config.max_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(dim, config.trunk.heads) for _ in range(config.decoder_layers))
        self.output_norm = nn.LayerNorm(dim)
        self.token_head = nn.Linear(dim, config.vocabulary_size)
        self.offset_head = nn.Linear(dim, 2)

    def encode(self, images: Tensor) -> Tensor:
        """BEV memory ``[B, bev_height * bev_width, dim]`` for the decoder."""
        grid = to_grid(self.fusion(self.encoder(images)), (self.config.bev_height, self.config.bev_width))
        memory: Tensor = self.memory_norm(self.lane_guidance(grid).flatten(2).transpose(1, 2))
        return memory

    def decode(self, lane_tokens: Tensor, memory: Tensor) -> dict[str, Tensor]:
        """Next-token logits ``[B, L, vocabulary]`` and vertex offsets ``[B, L, 2]``."""
        length = lane_tokens.shape[1]
        if length > self.config.max_tokens:
            raise ValueError(f"at most {self.config.max_tokens} lane tokens, got {length}")
        tokens = self.token_embedding(lane_tokens) + self.position_embedding[:length]
        for block in self.blocks:
            tokens = block(tokens, memory)
        tokens = self.output_norm(tokens)
        return {
            "token_logits": self.token_head(tokens),
            "vertex_offsets": 0.5 * torch.tanh(self.offset_head(tokens)),
        }

    def forward(self, images: Tensor, lane_tokens: Tensor) -> dict[str, Tensor]:
        return self.decode(lane_tokens, self.encode(images))

    @torch.no_grad()
    def generate(self, images: Tensor, steps: int) -> Tensor:
        """Greedy decoding of ``steps`` tokens after ``START`` (inference; no KV cache).

        Runs a fixed number of steps (no early stop on ``END``), so shapes stay static.
        """
        memory = self.encode(images)
        tokens = torch.full((images.shape[0], 1), START_TOKEN, dtype=torch.int64, device=images.device)
        for _ in range(steps):
            logits = self.decode(tokens, memory)["token_logits"][:, -1]
            tokens = torch.cat([tokens, logits.argmax(dim=-1, keepdim=True)], dim=1)
        return tokens[:, 1:]


def lanes_losses(outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Next-token cross-entropy (``PAD`` ignored) and L1 vertex offsets at vertex positions."""
    offset_mask = targets["offset_mask"]
    offset_error = (outputs["vertex_offsets"] - targets["vertex_offsets"]).abs()
    return {
        "token_logits": F.cross_entropy(
            outputs["token_logits"].transpose(1, 2),
            targets["next_tokens"],
            ignore_index=PAD_TOKEN,
        ),
        "vertex_offsets": (offset_error * offset_mask[..., None]).sum() / (2 * offset_mask.sum()).clamp(min=1),
    }


def lanes_loss(outputs: dict[str, Tensor], targets: Any) -> Tensor:
    """Sum of the per-head losses (unit weights)."""
    return total_loss(lanes_losses(outputs, targets))


def _lane_sequences(data: SyntheticBatch, config: LanesConfig, batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Synthetic lane graphs as token sequences.

    Each lane is ``NEW_LANE`` followed by vertices along a straight line of random heading across
    the vertex grid; every lane after the first starts with ``FORK`` or ``MERGE`` half of the time.
    Returns ``(input_tokens, next_tokens, vertex_offsets, offset_mask)``.
    """
    length = config.max_tokens
    if data.is_meta:
        return (
            torch.empty(batch, length, dtype=torch.int64, device=data.device),
            torch.empty(batch, length, dtype=torch.int64, device=data.device),
            torch.empty(batch, length, 2, device=data.device),
            torch.empty(batch, length, device=data.device),
        )
    rows, columns = config.token_grid
    sequences = torch.full((batch, length + 1), PAD_TOKEN, dtype=torch.int64)
    offsets = torch.zeros(batch, length + 1, 2)
    for sample in range(batch):
        tokens: list[int] = [START_TOKEN]
        vertex_offsets: list[tuple[float, float]] = [(0.0, 0.0)]
        for lane in range(config.lanes_per_sample):
            topology = NEW_LANE_TOKEN
            if lane > 0 and float(torch.rand(1, generator=data.generator)) < 0.5:
                topology = FORK_TOKEN if lane % 2 else MERGE_TOKEN
            tokens.append(topology)
            vertex_offsets.append((0.0, 0.0))
            start_row, start_column = (float(value) for value in torch.rand(2, generator=data.generator))
            heading = float(torch.rand(1, generator=data.generator)) * 2 * math.pi
            step = min(rows, columns) / (config.vertices_per_lane + 1)
            for vertex in range(config.vertices_per_lane):
                row = (start_row * rows + vertex * step * math.sin(heading)) % rows
                column = (start_column * columns + vertex * step * math.cos(heading)) % columns
                tokens.append(SPECIAL_TOKENS + int(row) * columns + int(column))
                vertex_offsets.append((column - int(column) - 0.5, row - int(row) - 0.5))
        tokens.append(END_TOKEN)
        vertex_offsets.append((0.0, 0.0))
        tokens = tokens[: length + 1]
        sequences[sample, : len(tokens)] = torch.tensor(tokens)
        offsets[sample, : len(tokens)] = torch.tensor(vertex_offsets[: len(tokens)])
    next_tokens = sequences[:, 1:]
    offset_mask = (next_tokens >= SPECIAL_TOKENS).float()
    return (
        sequences[:, :-1].to(data.device),
        next_tokens.to(data.device),
        offsets[:, 1:].to(data.device),
        offset_mask.to(data.device),
    )


def make_lanes_batch(size: str, batch_size: int, device: Device, *, seed: int = 0) -> Batch:
    """Synthetic inputs and targets for ``size``; see :class:`~.synthetic.SyntheticBatch`."""
    config = LANES_CONFIGS[size]
    data = SyntheticBatch(device, seed)
    input_tokens, next_tokens, vertex_offsets, offset_mask = _lane_sequences(data, config, batch_size)
    inputs = {
        "images": config.trunk.images(data, batch_size),
        "lane_tokens": input_tokens,
    }
    targets = {
        "next_tokens": next_tokens,
        "vertex_offsets": vertex_offsets,
        "offset_mask": offset_mask,
    }
    return inputs, targets


@network("lanes", description=DESCRIPTION, make_batch=make_lanes_batch, loss=lanes_loss)
def build_lanes(size: str) -> LanesNetwork:
    return LanesNetwork(LANES_CONFIGS[size])
