"""A report does not depend on where its workload came from: captured, loaded or derived.

Every suite network at ``full`` (on the meta device) is simulated on a D1 training tile three
times at 3 samples per replica: from a fresh capture at 3, from that capture loaded back from the
persistent cache, and from captures at 2 and 4 with 3 derived from them. The reports (every field
of :class:`hwmodel.Report`: the simulated ones only) must be equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dojo_networks import get_network
from hwmodel import make_system, simulate
from pytest_dojo.plugin.capture_cache import CaptureCache
from pytest_dojo.plugin.steps import CapturedStep

SUITE_NETWORKS = ("hydranet", "lanes", "occupancy", "regnety_1_6gf", "regnety_4_0gf", "regnety_8_0gf")
MESH = "5x5"
PER_REPLICA = 3
ANCHORS = (2, 4)


def _step(name: str, cache: CaptureCache | None) -> CapturedStep:
    spec = get_network(name)
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", PER_REPLICA * 25, "meta")
    return CapturedStep(model, inputs, targets=targets, loss_fn=spec.loss, name=name, cache=cache)


def _report(step: CapturedStep) -> dict[str, Any]:
    return simulate(step, make_system("d1", MESH)).to_dict()


def _counts(step: CapturedStep) -> tuple[int, int, int]:
    return step.fresh_captures, step.derived_batches, step.cache_hits


@pytest.mark.slow
@pytest.mark.parametrize("name", SUITE_NETWORKS)
def test_captured_loaded_and_derived_steps_report_the_same(name: str, tmp_path: Path) -> None:
    cache = CaptureCache(tmp_path)
    captured = _step(name, cache)
    expected = _report(captured)
    assert _counts(captured) == (1, 0, 0)
    assert expected["global_batch"] == PER_REPLICA * 25

    loaded = _step(name, cache)
    assert _report(loaded) == expected
    assert _counts(loaded) == (0, 0, 1)

    derived = _step(name, None)
    for batch in ANCHORS:
        derived.workload(batch)
    assert _report(derived) == expected
    assert _counts(derived) == (2, 1, 0)
    assert derived.workload(PER_REPLICA) == captured.workload(PER_REPLICA)
