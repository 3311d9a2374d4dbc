"""Deterministic synthetic batches: real values on the CPU, storage-free tensors on ``meta``.

The networks train on synthetic data: inputs are seeded noise, targets are seeded *structured*
labels (Gaussian object peaks, straight lane strokes, occupied boxes) so that a small network can
fit a fixed batch and a falling loss means the step really trains. On the ``meta`` device every
builder returns an empty tensor of the same shape and dtype, for capture at full size without
memory.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SyntheticBatch"]


class SyntheticBatch:
    """Builds the tensors of one batch from a seeded ``torch.Generator``.

    Values are drawn on the CPU and then moved, so the same seed gives the same batch on any
    device; on ``meta`` nothing is drawn and the generator is not advanced.
    """

    def __init__(self, device: str | torch.device, seed: int) -> None:
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def is_meta(self) -> bool:
        return self.device.type == "meta"

    def _place(self, values: Tensor) -> Tensor:
        return values.to(self.device)

    def _empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return torch.empty(shape, dtype=dtype, device=self.device)

    def normal(self, *shape: int) -> Tensor:
        """Standard normal noise (float32)."""
        if self.is_meta:
            return self._empty(shape, torch.float32)
        return self._place(torch.randn(shape, generator=self.generator))

    def square_images(self, batch: int, image_size: int) -> Tensor:
        """Noise RGB images ``[batch, 3, image_size, image_size]`` (float32)."""
        return self.normal(batch, 3, image_size, image_size)

    def uniform(self, low: float, high: float, *shape: int) -> Tensor:
        """Uniform values in [low, high) (float32)."""
        if self.is_meta:
            return self._empty(shape, torch.float32)
        return self._place(low + (high - low) * torch.rand(shape, generator=self.generator))

    def integers(self, high: int, *shape: int) -> Tensor:
        """Uniform integers in [0, high) (int64), e.g. class labels."""
        if self.is_meta:
            return self._empty(shape, torch.int64)
        return self._place(torch.randint(high, shape, generator=self.generator))

    def object_heatmaps(
        self, batch: int, classes: int, height: int, width: int, *, objects: int, sigma: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """CenterNet targets: class heatmaps, box parameters and the box mask.

        Each sample gets ``objects`` objects at random cells with random classes; the heatmap is
        the per-class maximum of Gaussians of ``sigma`` cells, exactly 1 at each centre (which the
        focal loss takes as positives). Box parameters are noise, supervised only at centres.

        Returns ``([B, classes, H, W], [B, 8, H, W], [B, 1, H, W])``.
        """
        if self.is_meta:
            return (
                self._empty((batch, classes, height, width), torch.float32),
                self._empty((batch, 8, height, width), torch.float32),
                self._empty((batch, 1, height, width), torch.float32),
            )
        rows = torch.arange(height, dtype=torch.float32)[:, None]
        columns = torch.arange(width, dtype=torch.float32)[None, :]
        heatmap = torch.zeros(batch, classes, height, width)
        mask = torch.zeros(batch, 1, height, width)
        centre_rows = torch.randint(height, (batch, objects), generator=self.generator)
        centre_columns = torch.randint(width, (batch, objects), generator=self.generator)
        object_classes = torch.randint(classes, (batch, objects), generator=self.generator)
        for sample in range(batch):
            for index in range(objects):
                row = int(centre_rows[sample, index])
                column = int(centre_columns[sample, index])
                label = int(object_classes[sample, index])
                distance_squared = (rows - row) ** 2 + (columns - column) ** 2
                peak = torch.exp(-distance_squared / (2 * sigma**2))
                heatmap[sample, label] = torch.maximum(heatmap[sample, label], peak)
                mask[sample, 0, row, column] = 1.0
        boxes = torch.randn((batch, 8, height, width), generator=self.generator)
        return self._place(heatmap), self._place(boxes), self._place(mask)

    def lane_masks(self, batch: int, classes: int, height: int, width: int, *, lanes: int) -> Tensor:
        """Per-cell lane classes (0 is background): ``lanes`` straight strokes per sample.

        Each stroke is a line of random angle and offset, two cells wide, with a random class in
        [1, classes). Returns ``[B, H, W]`` int64.
        """
        if self.is_meta:
            return self._empty((batch, height, width), torch.int64)
        rows = torch.arange(height, dtype=torch.float32)[:, None]
        columns = torch.arange(width, dtype=torch.float32)[None, :]
        labels = torch.zeros(batch, height, width, dtype=torch.int64)
        angles = torch.rand((batch, lanes), generator=self.generator) * math.pi
        offsets = torch.rand((batch, lanes), generator=self.generator) * 2 - 1
        lane_classes = torch.randint(1, classes, (batch, lanes), generator=self.generator)
        for sample in range(batch):
            for index in range(lanes):
                angle = float(angles[sample, index])
                # Signed distance of each cell centre to the line through the grid centre shifted
                # by ``offset`` half-extents along its normal.
                offset = float(offsets[sample, index]) * min(height, width) / 2
                distance = (columns - width / 2) * math.cos(angle) + (rows - height / 2) * math.sin(angle) - offset
                on_lane = distance.abs() < 1.0
                labels[sample][on_lane] = int(lane_classes[sample, index])
        return self._place(labels)
