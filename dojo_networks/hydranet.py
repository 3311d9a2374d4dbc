"""HydraNet: Tesla's multi-camera, multi-task perception network, as described at AI Day 2021.

Pipeline (one training sample):

1. 8 camera images ``[8, 3, H, W]`` go through one shared RegNet and a BiFPN (cameras folded into
   the batch). 12-bit raw pixels are modelled as 3-channel float32 images.
2. A transformer lifts all cameras to a bird's-eye-view (BEV) grid: one learned query per BEV cell
   (sinusoidal encoding of the cell centre through an MLP) cross-attends to the tokens of every
   camera, which carry camera, level and image-position embeddings (:mod:`.layers`).
3. The video module: a feature queue of the fused BEV features of the ``T`` previous frames (cached,
   as Tesla caches features; no gradient flows into them) plus the current frame, each with its
   kinematics, runs through a convolutional GRU, a spatial RNN whose hidden state is a 2D lattice
   over the ground. Whether entries are pushed every 27 ms or every metre of travel is the data
   loader's business: the network sees ``T`` entries either way.
4. Task trunks and terminals on the final hidden state: objects (CenterNet heatmaps and box
   regression), traffic controls (classification of the controlling sign or light) and lanes
   (semantic segmentation of a BEV mask at twice the BEV resolution).

Inputs: ``images [B, cameras, 3, H, W]``, ``feature_queue [B, T, dim, bev_height, bev_width]``,
``kinematics [B, T + 1, kinematics_features]`` (oldest first, the current frame last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import conv_norm_activation, upsample
from .layers import SMALL_CAMERA_TRUNK, CameraTrunk, published_camera_trunk, to_grid
from .registry import Batch, Device, network, total_loss
from .synthetic import SyntheticBatch

__all__ = [
    "BOX_PARAMETERS",
    "HYDRANET_CONFIGS",
    "KINEMATICS_FEATURES",
    "ConvGRUCell",
    "HydraNet",
    "HydraNetConfig",
    "build_hydranet",
    "centernet_focal_loss",
    "hydranet_loss",
    "hydranet_losses",
    "make_hydranet_batch",
]

DESCRIPTION = (
    "8 cameras -> RegNetY + BiFPN -> BEV transformer -> feature queue + ConvGRU -> objects, traffic controls, lanes"
)
"""One line for reports and docs: the network's spec carries it."""

# Box parameters regressed at each object centre: sub-cell offset (x, y), height above ground,
# log length, log width, log height, sin(yaw), cos(yaw).
BOX_PARAMETERS = 8
# Kinematics per queue entry: speed, longitudinal and lateral acceleration, yaw rate, distance
# travelled and time elapsed since the previous entry.
KINEMATICS_FEATURES = 6
# CenterNet (Zhou et al. 2019) initial heatmap bias: sigmoid(-2.19) = 0.1, so the focal loss
# starts small instead of being swamped by the negatives.
HEATMAP_PRIOR_BIAS = -2.19


@dataclass(frozen=True, kw_only=True)
class HydraNetConfig:
    """Sizes of one HydraNet preset. Only the camera count and image size are published.

    Attributes:
        trunk: cameras, backbone, BiFPN and the BEV transformer (its lifting); ``trunk.dim`` is also
            the width of the video module's hidden state.
        bev_height, bev_width: BEV grid cells; ``bev_cell_meters`` is their metric size (the
            network itself never uses it; it is what the targets are drawn in).
        queue_length: ``T``, past frames in the feature queue.
        head_channels: width of each task trunk.
        object_classes, traffic_control_classes, lane_classes: outputs of the terminals.
        objects_per_sample, heatmap_sigma: synthetic target density and Gaussian size in cells.
    """

    trunk: CameraTrunk
    bev_height: int
    bev_width: int
    bev_cell_meters: float
    queue_length: int
    head_channels: int
    object_classes: int
    traffic_control_classes: int
    lane_classes: int
    objects_per_sample: int
    heatmap_sigma: float


HYDRANET_CONFIGS: dict[str, HydraNetConfig] = {
    # Published: 8 cameras at 1280x960. Ours: everything else. RegNetY-4.0GF sits in the middle of
    # the 1.6-8 GF class; a 100 x 100 BEV grid of 1 m cells covers +-50 m around the car; a queue
    # of 8 frames is 0.22 s at 36 Hz; 10 object classes as in nuScenes; 8 traffic-control classes
    # (none, stop, yield, red, yellow, green, flashing, unknown); 4 lane classes (background,
    # lane line, road edge, crosswalk) at 0.5 m.
    "full": HydraNetConfig(
        trunk=published_camera_trunk(backbone="regnety_4_0gf", neck_channels=160, lifting_layers=4),
        bev_height=100,
        bev_width=100,
        bev_cell_meters=1.0,
        queue_length=8,
        head_channels=256,
        object_classes=10,
        traffic_control_classes=8,
        lane_classes=4,
        objects_per_sample=32,
        heatmap_sigma=2.0,
    ),
    "small": HydraNetConfig(
        trunk=SMALL_CAMERA_TRUNK,
        bev_height=16,
        bev_width=16,
        bev_cell_meters=6.25,
        queue_length=3,
        head_channels=32,
        object_classes=3,
        traffic_control_classes=8,
        lane_classes=4,
        objects_per_sample=4,
        heatmap_sigma=1.0,
    ),
}


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Ballas et al. 2016): a GRU whose gates are 3x3 convolutions.

    The hidden state is a feature map over the BEV lattice, so memory is local in space: each cell
    updates from its neighbourhood, HydraNet's "spatial RNN".
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)
        self.candidate = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(self, inputs: Tensor, hidden: Tensor) -> Tensor:
        update, reset = torch.sigmoid(self.gates(torch.cat([inputs, hidden], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([inputs, reset * hidden], dim=1)))
        return hidden + update * (candidate - hidden)


class HydraNet(nn.Module):
    """Cameras -> RegNet + BiFPN -> BEV transformer -> feature queue + ConvGRU -> task heads."""

    def __init__(self, config: HydraNetConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.trunk.dim
        self.encoder = config.trunk.encoder()
        self.fusion = config.trunk.lifting((config.bev_height, config.bev_width))
        self.kinematics = nn.Linear(KINEMATICS_FEATURES, dim)
        self.video = ConvGRUCell(dim)
        channels = config.head_channels
        self.object_trunk = nn.Sequential(
            conv_norm_activation(dim, channels, 3), conv_norm_activation(channels, channels, 3)
        )
        self.object_heatmap = nn.Conv2d(channels, config.object_classes, 1)
        self.object_heatmap.bias = nn.Parameter(torch.full((config.object_classes,), HEATMAP_PRIOR_BIAS))
        self.object_boxes = nn.Conv2d(channels, BOX_PARAMETERS, 1)
        self.traffic_control_trunk = conv_norm_activation(dim, channels, 3, stride=2)
        self.traffic_control_terminal = nn.Sequential(
            nn.Linear(channels, channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, config.traffic_control_classes),
        )
        self.lane_trunk = nn.Sequential(conv_norm_activation(dim, channels, 3), *upsample(channels, channels, 4))
        self.lane_terminal = nn.Conv2d(channels, config.lane_classes, 1)

    def forward(self, images: Tensor, feature_queue: Tensor, kinematics: Tensor) -> dict[str, Tensor]:
        config = self.config
        grid = (config.bev_height, config.bev_width)
        expected_queue = (images.shape[0], config.queue_length, config.trunk.dim, *grid)
        if tuple(feature_queue.shape) != expected_queue:
            raise ValueError(f"feature_queue must have shape {expected_queue}, got {tuple(feature_queue.shape)}")
        current = to_grid(self.fusion(self.encoder(images)), grid)
        motion = self.kinematics(kinematics)
        frames = [*feature_queue.unbind(1), current]
        hidden = torch.zeros_like(current)
        for step, frame in enumerate(frames):
            hidden = self.video(frame + motion[:, step, :, None, None], hidden)
        objects = self.object_trunk(hidden)
        traffic = self.traffic_control_trunk(hidden).mean(dim=(2, 3))
        return {
            "object_heatmap": self.object_heatmap(objects),
            "object_boxes": self.object_boxes(objects),
            "traffic_controls": self.traffic_control_terminal(traffic),
            "lane_segmentation": self.lane_terminal(self.lane_trunk(hidden)),
        }


def centernet_focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """Penalty-reduced pixel-wise focal loss of CenterNet (Zhou et al. 2019, eq. 1).

    Positives are the cells where the target is exactly 1; negatives near a centre are down-weighted
    by ``(1 - target)^beta``. Normalized by the number of positives (at least 1).
    """
    positive = target.eq(1).to(logits.dtype)
    probability = torch.sigmoid(logits)
    positive_loss = positive * (1 - probability).pow(alpha) * F.logsigmoid(logits)
    negative_loss = (1 - positive) * (1 - target).pow(beta) * probability.pow(alpha) * F.logsigmoid(-logits)
    return -(positive_loss.sum() + negative_loss.sum()) / positive.sum().clamp(min=1)


def hydranet_losses(outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """One scalar loss per head (the box loss is L1 at object centres, per box parameter)."""
    box_mask = targets["object_box_mask"]
    box_error = (outputs["object_boxes"] - targets["object_boxes"]).abs() * box_mask
    return {
        "object_heatmap": centernet_focal_loss(outputs["object_heatmap"], targets["object_heatmap"]),
        "object_boxes": box_error.sum() / (box_mask.sum() * BOX_PARAMETERS).clamp(min=1),
        "traffic_controls": F.cross_entropy(outputs["traffic_controls"], targets["traffic_controls"]),
        "lane_segmentation": F.cross_entropy(outputs["lane_segmentation"], targets["lane_segmentation"]),
    }


def hydranet_loss(outputs: dict[str, Tensor], targets: Any) -> Tensor:
    """Sum of the per-head losses (unit weights)."""
    return total_loss(hydranet_losses(outputs, targets))


def make_hydranet_batch(size: str, batch_size: int, device: Device, *, seed: int = 0) -> Batch:
    """Synthetic inputs and targets for ``size``; see :class:`~.synthetic.SyntheticBatch`."""
    config = HYDRANET_CONFIGS[size]
    data = SyntheticBatch(device, seed)
    inputs = {
        "images": config.trunk.images(data, batch_size),
        "feature_queue": data.normal(
            batch_size, config.queue_length, config.trunk.dim, config.bev_height, config.bev_width
        ),
        "kinematics": data.normal(batch_size, config.queue_length + 1, KINEMATICS_FEATURES),
    }
    heatmap, boxes, box_mask = data.object_heatmaps(
        batch_size,
        config.object_classes,
        config.bev_height,
        config.bev_width,
        objects=config.objects_per_sample,
        sigma=config.heatmap_sigma,
    )
    targets = {
        "object_heatmap": heatmap,
        "object_boxes": boxes,
        "object_box_mask": box_mask,
        "traffic_controls": data.integers(config.traffic_control_classes, batch_size),
        "lane_segmentation": data.lane_masks(
            batch_size,
            config.lane_classes,
            2 * config.bev_height,
            2 * config.bev_width,
            lanes=3,
        ),
    }
    return inputs, targets


@network("hydranet", description=DESCRIPTION, make_batch=make_hydranet_batch, loss=hydranet_loss)
def build_hydranet(size: str) -> HydraNet:
    return HydraNet(HYDRANET_CONFIGS[size])
