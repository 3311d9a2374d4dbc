"""Autopilot-style networks for the regression suites, each with ``small`` and ``full`` presets.

Every network is described by a :class:`NetworkSpec`: how to build it at a size, how to make a
synthetic batch (real values on the CPU, storage-free on ``meta``) and its loss. Models are called
as ``outputs = model(**inputs)`` and return one tensor per head output. ``full`` is the published
input (8 cameras at 1280x960; ImageNet 224x224 for the backbone-only entries) for simulation;
``small`` trains a real step on a laptop CPU in well under a second. Sizes Tesla never published
are ours; ``docs/networks.md`` lists each choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .backbones import backbone_builder, classification_loss, make_classification_batch
from .efficientdet import build_efficientdet, efficientdet_loss, make_efficientdet_batch
from .hydranet import build_hydranet, hydranet_loss, make_hydranet_batch
from .lanes import build_lanes, lanes_loss, make_lanes_batch
from .occupancy import build_occupancy, make_occupancy_batch, occupancy_loss
from .regnet import REGNET_CONFIGS, plan_stages

__all__ = ["BACKBONE_NETWORKS", "NETWORKS", "SIZES", "NetworkSpec", "get_network"]

SIZES = ("small", "full")
# Published RegNets offered on their own (ImageNet setting); see ``backbones.py``.
BACKBONE_NETWORKS = ("regnety_1_6gf", "regnety_4_0gf", "regnety_8_0gf")


@dataclass(frozen=True, kw_only=True)
class NetworkSpec:
    """What a suite needs to train one network: a builder, a batch maker and a loss.

    Attributes:
        name: key in :data:`NETWORKS`.
        description: one line for reports and docs.
        build: size (``"small"`` or ``"full"``) to model; works under ``with torch.device("meta")``.
        make_batch: (size, batch_size, device) to (inputs, targets); deterministic on the CPU,
            storage-free on ``"meta"``.
        loss: (outputs, targets) to a scalar, the sum of the per-head losses.
    """

    name: str
    description: str
    build: Callable[[str], nn.Module]
    make_batch: Callable[[str, int, str | torch.device], tuple[dict[str, Tensor], Any]]
    loss: Callable[[dict[str, Tensor], Any], Tensor]


def _registry(*specs: NetworkSpec) -> dict[str, NetworkSpec]:
    """Name -> spec, refusing duplicate names."""
    registry: dict[str, NetworkSpec] = {}
    for spec in specs:
        if spec.name in registry:
            raise ValueError(f"duplicate network name {spec.name!r}")
        registry[spec.name] = spec
    return registry


NETWORKS: dict[str, NetworkSpec] = _registry(
    NetworkSpec(
        name="hydranet",
        description=(
            "8 cameras -> RegNetY + BiFPN -> BEV transformer -> feature queue + ConvGRU -> "
            "objects, traffic controls, lanes"
        ),
        build=build_hydranet,
        make_batch=make_hydranet_batch,
        loss=hydranet_loss,
    ),
    NetworkSpec(
        name="occupancy",
        description=(
            "8 cameras -> RegNetY + BiFPN -> 3D voxel queries -> ego-motion-aligned fusion -> "
            "3D deconvolution decoder -> occupancy, flow, implicit point head"
        ),
        build=build_occupancy,
        make_batch=make_occupancy_batch,
        loss=occupancy_loss,
    ),
    NetworkSpec(
        name="lanes",
        description=(
            "8 cameras -> RegNetY + BiFPN -> BEV transformer -> lane guidance -> "
            "autoregressive lane-token decoder (teacher forcing)"
        ),
        build=build_lanes,
        make_batch=make_lanes_batch,
        loss=lanes_loss,
    ),
    NetworkSpec(
        name="efficientdet_d0",
        description="EfficientDet-D0: EfficientNet-B0 -> BiFPN (64 ch x 3) -> class/box heads, 512x512 (published)",
        build=build_efficientdet,
        make_batch=make_efficientdet_batch,
        loss=efficientdet_loss,
    ),
    *(
        NetworkSpec(
            name=backbone,
            description=(
                f"{backbone} backbone with its ImageNet head (224x224, 1000 classes); "
                f"stage widths {plan_stages(REGNET_CONFIGS[backbone]).widths}"
            ),
            build=backbone_builder(backbone),
            make_batch=make_classification_batch,
            loss=classification_loss,
        )
        for backbone in BACKBONE_NETWORKS
    ),
)


def get_network(name: str) -> NetworkSpec:
    """The spec called ``name``; an unknown name raises ValueError listing the known ones."""
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; known networks: {', '.join(sorted(NETWORKS))}") from None
