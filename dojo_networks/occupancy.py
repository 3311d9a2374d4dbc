"""Occupancy network: Tesla's 3D occupancy and flow predictor (CVPR 2022 WAD, AI Day 2022).

Pipeline (one training sample):

1. 8 camera images through one shared RegNet + BiFPN (cameras folded into the batch), then tokens
   with camera, level and image-position embeddings (:class:`~.layers.CameraEncoder`).
2. 3D voxel queries: one learned query per cell of a coarse voxel grid (sinusoidal encoding of the
   cell centre through an MLP) cross-attends to every camera token, lifting the images to an
   occupancy feature volume ``[B, dim, Z, Y, X]``.
3. Temporal alignment: the previous frame's volume (cached, no gradient) is resampled into the
   current frame with ``F.affine_grid`` + ``F.grid_sample`` from the ego motion, then fused with the
   current volume by a 1x1x1 convolution.
4. A deconvolution decoder (two ``ConvTranspose3d`` of stride 2, each followed by a 3x3x3
   convolution) upsamples the volume 4x per axis to the output voxels; 1x1x1 terminals give
   occupancy logits and occupancy flow (m/s, x/y/z).
5. An implicit MLP head: for query points ``(x, y, z)`` in metres, the decoded features are
   sampled trilinearly at the point and, with a Fourier encoding of the point, an MLP predicts the
   point's occupancy and semantic class (sub-voxel geometry and semantics).

Inputs: ``images [B, cameras, 3, H, W]``, ``previous_volume [B, dim, Z, Y, X]``,
``ego_motion [B, 4, 4]`` (homogeneous rigid transform taking a point in the current ego frame, in
metres, to the previous ego frame), ``query_points [B, P, 3]`` (metres, ego frame, x forward, y left,
z up). The volume is centred on ``volume_center_meters`` and spans +-``volume_half_extent_meters``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import conv_norm_activation, upsample
from .layers import SMALL_CAMERA_TRUNK, CameraTrunk, published_camera_trunk, sinusoidal_encoding, to_grid
from .registry import Batch, Device, network, total_loss
from .synthetic import SyntheticBatch

__all__ = [
    "OCCUPANCY_CONFIGS",
    "OccupancyConfig",
    "OccupancyNetwork",
    "build_occupancy",
    "make_occupancy_batch",
    "occupancy_loss",
    "occupancy_losses",
]

DESCRIPTION = (
    "8 cameras -> RegNetY + BiFPN -> 3D voxel queries -> ego-motion-aligned fusion -> "
    "3D deconvolution decoder -> occupancy, flow, implicit point head"
)
"""One line for reports and docs: the network's spec carries it."""

DECODER_UPSAMPLING = 4  # two stride-2 transposed convolutions per axis


@dataclass(frozen=True, kw_only=True)
class OccupancyConfig:
    """Sizes of one occupancy-network preset. Only the camera count and image size are published.

    Attributes:
        trunk: cameras, backbone, BiFPN and the voxel-query transformer (its lifting).
        voxel_grid: coarse query grid ``(Z, Y, X)``; outputs are ``DECODER_UPSAMPLING`` times finer.
        volume_center_meters, volume_half_extent_meters: metric placement ``(x, y, z)`` of the
            volume in the ego frame.
        decoder_channels: channels after the first and the second transposed convolution.
        implicit_hidden: width of the implicit MLP; ``query_points`` is points per sample.
        semantic_classes: classes of occupied points (e.g. ground, vehicle, pedestrian, static).
        objects_per_sample: synthetic boxes per sample.
    """

    trunk: CameraTrunk
    voxel_grid: tuple[int, int, int]
    volume_center_meters: tuple[float, float, float]
    volume_half_extent_meters: tuple[float, float, float]
    decoder_channels: tuple[int, int]
    implicit_hidden: int
    query_points: int
    semantic_classes: int
    objects_per_sample: int
    position_frequencies: int = 6

    @property
    def output_grid(self) -> tuple[int, int, int]:
        depth, height, width = self.voxel_grid
        return (
            depth * DECODER_UPSAMPLING,
            height * DECODER_UPSAMPLING,
            width * DECODER_UPSAMPLING,
        )


OCCUPANCY_CONFIGS: dict[str, OccupancyConfig] = {
    # Published: 8 cameras at 1280x960. Ours: the rest. RegNetY-1.6GF because the network runs at
    # >100 FPS on the car; 4 x 50 x 50 queries of 2 m decoded to 16 x 200 x 200 voxels of 0.5 m
    # covering +-50 m around the car and -2..6 m in height; 8192 implicit queries per sample.
    "full": OccupancyConfig(
        trunk=published_camera_trunk(backbone="regnety_1_6gf", neck_channels=128, lifting_layers=3),
        voxel_grid=(4, 50, 50),
        volume_center_meters=(0.0, 0.0, 2.0),
        volume_half_extent_meters=(50.0, 50.0, 4.0),
        decoder_channels=(64, 32),
        implicit_hidden=256,
        query_points=8192,
        semantic_classes=4,
        objects_per_sample=24,
    ),
    "small": OccupancyConfig(
        trunk=SMALL_CAMERA_TRUNK,
        voxel_grid=(2, 8, 8),
        volume_center_meters=(0.0, 0.0, 2.0),
        volume_half_extent_meters=(16.0, 16.0, 4.0),
        decoder_channels=(32, 16),
        implicit_hidden=32,
        query_points=256,
        semantic_classes=4,
        objects_per_sample=3,
    ),
}


def _upsample3d(in_channels: int, out_channels: int) -> nn.Sequential:
    """Transposed 3D convolution doubling each axis, then a 3x3x3 convolution to smooth it."""
    return nn.Sequential(
        *upsample(in_channels, out_channels, 2, dims=3),
        conv_norm_activation(out_channels, out_channels, 3, dims=3),
    )


class OccupancyNetwork(nn.Module):
    """Cameras -> RegNet + BiFPN -> voxel queries -> ego-motion fusion -> 3D decoder + implicit head."""

    volume_center: Tensor
    volume_half_extent: Tensor

    def __init__(self, config: OccupancyConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.trunk.dim
        self.encoder = config.trunk.encoder()
        self.lifting = config.trunk.lifting(config.voxel_grid)
        self.temporal_fusion = conv_norm_activation(2 * dim, dim, 1, dims=3)
        first, second = config.decoder_channels
        self.decoder = nn.Sequential(_upsample3d(dim, first), _upsample3d(first, second))
        self.occupancy_terminal = nn.Conv3d(second, 1, 1)
        self.flow_terminal = nn.Conv3d(second, 3, 1)
        self.implicit = nn.Sequential(
            nn.Linear(second + 3 * 2 * config.position_frequencies, config.implicit_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.implicit_hidden, config.implicit_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.implicit_hidden, 1 + config.semantic_classes),
        )
        # Metric -> normalized [-1, 1] volume coordinates: (p - center) / half_extent, per axis
        # (x, y, z), the order F.affine_grid and F.grid_sample use.
        self.register_buffer("volume_center", torch.tensor(config.volume_center_meters), persistent=False)
        self.register_buffer("volume_half_extent", torch.tensor(config.volume_half_extent_meters), persistent=False)

    def _normalize(self, points: Tensor) -> Tensor:
        return (points - self.volume_center) / self.volume_half_extent

    def align_previous(self, previous_volume: Tensor, ego_motion: Tensor) -> Tensor:
        """Resample the previous volume into the current frame (zeros where it saw nothing).

        For a current cell at normalized ``u``, its metric point is ``p = S u + c``; the previous
        frame sees it at ``R p + t``, i.e. at normalized ``S^-1 R S u + S^-1 (R c + t - c)``, which
        is the affine ``theta`` that ``F.affine_grid`` takes (S = diag(half extent), c = centre).
        """
        rotation = ego_motion[:, :3, :3]
        translation = ego_motion[:, :3, 3]
        scale = self.volume_half_extent
        theta_rotation = rotation * (scale[None, None, :] / scale[None, :, None])
        theta_translation = (rotation @ self.volume_center + translation - self.volume_center) / scale
        theta = torch.cat([theta_rotation, theta_translation.unsqueeze(-1)], dim=-1)
        grid = F.affine_grid(theta, list(previous_volume.shape), align_corners=False)
        return F.grid_sample(previous_volume, grid, align_corners=False)

    def forward(
        self, images: Tensor, previous_volume: Tensor, ego_motion: Tensor, query_points: Tensor
    ) -> dict[str, Tensor]:
        config = self.config
        expected_volume = (images.shape[0], config.trunk.dim, *config.voxel_grid)
        if tuple(previous_volume.shape) != expected_volume:
            raise ValueError(f"previous_volume must have shape {expected_volume}, got {tuple(previous_volume.shape)}")
        volume = to_grid(self.lifting(self.encoder(images)), config.voxel_grid)
        aligned = self.align_previous(previous_volume, ego_motion)
        features = self.decoder(self.temporal_fusion(torch.cat([volume, aligned], dim=1)))
        normalized_points = self._normalize(query_points)
        sampled = F.grid_sample(features, normalized_points[:, None, None, :, :], align_corners=False)
        point_features = torch.cat(
            [
                sampled.flatten(2).transpose(1, 2),
                sinusoidal_encoding(normalized_points, config.position_frequencies),
            ],
            dim=-1,
        )
        implicit = self.implicit(point_features)
        return {
            "occupancy": self.occupancy_terminal(features).squeeze(1),
            "occupancy_flow": self.flow_terminal(features),
            "point_occupancy": implicit[..., 0],
            "point_semantics": implicit[..., 1:],
        }


def occupancy_losses(outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """One scalar loss per head.

    Occupancy and point occupancy: binary cross-entropy. Flow: L1 over occupied voxels. Point
    semantics: cross-entropy over occupied points only (free space has no class).
    """
    occupied = targets["occupancy"]
    flow_error = (outputs["occupancy_flow"] - targets["occupancy_flow"]).abs() * occupied[:, None]
    point_occupied = targets["point_occupancy"]
    semantic_error = F.cross_entropy(
        outputs["point_semantics"].transpose(1, 2), targets["point_semantics"], reduction="none"
    )
    return {
        "occupancy": F.binary_cross_entropy_with_logits(outputs["occupancy"], occupied),
        "occupancy_flow": flow_error.sum() / (3 * occupied.sum()).clamp(min=1),
        "point_occupancy": F.binary_cross_entropy_with_logits(outputs["point_occupancy"], point_occupied),
        "point_semantics": (semantic_error * point_occupied).sum() / point_occupied.sum().clamp(min=1),
    }


def occupancy_loss(outputs: dict[str, Tensor], targets: Any) -> Tensor:
    """Sum of the per-head losses (unit weights)."""
    return total_loss(occupancy_losses(outputs, targets))


def _ego_motion(data: SyntheticBatch, batch: int) -> Tensor:
    """Rigid transforms of a car between frames: yaw up to +-0.05 rad, up to +-1 m in x and y."""
    if data.is_meta:
        return torch.empty(batch, 4, 4, device=data.device)
    yaw = data.uniform(-0.05, 0.05, batch).cpu()
    shift = data.uniform(-1.0, 1.0, batch, 2).cpu()
    motion = torch.eye(4).repeat(batch, 1, 1)
    motion[:, 0, 0] = yaw.cos()
    motion[:, 0, 1] = -yaw.sin()
    motion[:, 1, 0] = yaw.sin()
    motion[:, 1, 1] = yaw.cos()
    motion[:, :2, 3] = shift
    return motion.to(data.device)


def _scene(data: SyntheticBatch, config: OccupancyConfig, batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Synthetic scene: ground plus boxes, sampled on the output voxels and at query points.

    Returns ``(occupancy, flow, points, point_occupancy, point_semantics)``: the ground (class 0)
    fills the lowest voxel layer; each box (class 1..classes-1) has a random size and velocity.
    """
    grid = config.output_grid
    points_shape = (batch, config.query_points)
    if data.is_meta:
        return (
            torch.empty(batch, *grid, device=data.device),
            torch.empty(batch, 3, *grid, device=data.device),
            torch.empty(*points_shape, 3, device=data.device),
            torch.empty(*points_shape, device=data.device),
            torch.empty(*points_shape, dtype=torch.int64, device=data.device),
        )
    depth, height, width = grid
    center = torch.tensor(config.volume_center_meters)
    half_extent = torch.tensor(config.volume_half_extent_meters)
    # Voxel centres in metres, [Z, Y, X, 3] with (x, y, z) last.
    axes = [torch.linspace(-1 + 1 / size, 1 - 1 / size, size) for size in (depth, height, width)]
    z_axis, y_axis, x_axis = torch.meshgrid(*axes, indexing="ij")
    voxel_centres = torch.stack([x_axis, y_axis, z_axis], dim=-1) * half_extent + center
    points = (torch.rand((*points_shape, 3), generator=data.generator) * 2 - 1) * half_extent
    points = points + center
    ground_top = center[2] - half_extent[2] + 2 * half_extent[2] / depth
    occupancy = torch.zeros(batch, depth, height, width)
    flow = torch.zeros(batch, 3, depth, height, width)
    point_occupancy = torch.zeros(points_shape)
    point_semantics = torch.zeros(points_shape, dtype=torch.int64)
    occupancy[:, 0] = 1.0
    point_occupancy[points[..., 2] < ground_top] = 1.0
    for sample in range(batch):
        for _ in range(config.objects_per_sample):
            box_centre = (torch.rand(3, generator=data.generator) * 2 - 1) * half_extent * 0.8
            box_centre = box_centre + center
            box_half_size = (0.1 + 0.15 * torch.rand(3, generator=data.generator)) * half_extent
            velocity = torch.randn(3, generator=data.generator)
            label = int(torch.randint(1, config.semantic_classes, (1,), generator=data.generator))
            inside_voxels = ((voxel_centres - box_centre).abs() <= box_half_size).all(dim=-1)
            occupancy[sample][inside_voxels] = 1.0
            flow[sample][:, inside_voxels] = velocity[:, None]
            inside_points = ((points[sample] - box_centre).abs() <= box_half_size).all(dim=-1)
            point_occupancy[sample][inside_points] = 1.0
            point_semantics[sample][inside_points] = label
    return tuple(  # type: ignore[return-value]
        tensor.to(data.device) for tensor in (occupancy, flow, points, point_occupancy, point_semantics)
    )


def make_occupancy_batch(size: str, batch_size: int, device: Device, *, seed: int = 0) -> Batch:
    """Synthetic inputs and targets for ``size``; see :class:`~.synthetic.SyntheticBatch`."""
    config = OCCUPANCY_CONFIGS[size]
    data = SyntheticBatch(device, seed)
    occupancy, flow, points, point_occupancy, point_semantics = _scene(data, config, batch_size)
    inputs = {
        "images": config.trunk.images(data, batch_size),
        "previous_volume": data.normal(batch_size, config.trunk.dim, *config.voxel_grid),
        "ego_motion": _ego_motion(data, batch_size),
        "query_points": points,
    }
    targets = {
        "occupancy": occupancy,
        "occupancy_flow": flow,
        "point_occupancy": point_occupancy,
        "point_semantics": point_semantics,
    }
    return inputs, targets


@network("occupancy", description=DESCRIPTION, make_batch=make_occupancy_batch, loss=occupancy_loss)
def build_occupancy(size: str) -> OccupancyNetwork:
    return OccupancyNetwork(OCCUPANCY_CONFIGS[size])
