"""HydraNet at full size (8 cameras at 1280x960) on the mesh of ``--dojo-mesh``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suites.conftest import SimulatedNetwork

CAMERAS = 8
# docs/reference/autopilot-networks.md, "Backbone reference costs": at 1280x960 a backbone costs ~24.5x
# its 224x224 figure [D].
PIXELS_OVER_IMAGENET = 1280 * 960 / 224**2
REGNETY_4_0GF_MACS = 4.0e9  # timm table at 224x224, same reference


def test_hydranet_full_step(simulate_full_network: Callable[[str], SimulatedNetwork]) -> None:
    """The step costs at least its backbone's forward, input-gradient and weight-gradient passes:
    3 x 2 FLOP per MAC of RegNetY-4.0GF on 8 camera frames (5 % for the ImageNet head it lacks)."""
    simulated = simulate_full_network("hydranet")
    backbone_macs = REGNETY_4_0GF_MACS * PIXELS_OVER_IMAGENET * CAMERAS
    assert simulated.flops_per_sample >= 0.95 * 3 * 2 * backbone_macs
