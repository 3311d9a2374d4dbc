"""The backbone-only RegNetY entries at their published setting (ImageNet, 224x224) on the mesh."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from suites.conftest import SimulatedNetwork

# timm benchmark table at 224x224, in docs/reference/autopilot-networks.md, "Backbone reference costs".
PUBLISHED_MACS = {"regnety_1_6gf": 1.63e9, "regnety_4_0gf": 4.0e9, "regnety_8_0gf": 8.0e9}


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_regnet_full_step(simulate_full_network: Callable[[str], SimulatedNetwork], name: str) -> None:
    """At least the forward, input-gradient and weight-gradient passes of the published MACs
    (3 x 2 FLOP per MAC, 5 % slack for rounding in the table)."""
    simulated = simulate_full_network(name)
    assert simulated.flops_per_sample >= 0.95 * 3 * 2 * PUBLISHED_MACS[name]
