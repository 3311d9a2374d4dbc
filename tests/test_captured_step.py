"""Where :class:`CapturedStep`'s workloads come from: captured, derived from two anchors, or loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hwmodel import Workload
from pytest_dojo.capture import capture_train_step
from pytest_dojo.plugin.capture_cache import CaptureCache
from pytest_dojo.plugin.steps import CaptureCounts, CapturedStep

GLOBAL_BATCH = 24


class PerSample(torch.nn.Module):
    """A network whose ops depend on the batch: one matrix product per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.linear(sample) for sample in x])


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def _inputs() -> torch.Tensor:
    return torch.randn(GLOBAL_BATCH, 8)


def _fresh(model: torch.nn.Module, batch: int) -> Workload:
    return capture_train_step(model, _inputs(), batch_size=batch, name="net")


def _counts(step: CapturedStep) -> tuple[int, int, int]:
    return step.fresh_captures, step.derived_batches, step.cache_hits


def test_two_sizes_are_captured_and_the_others_derived_exactly() -> None:
    model = _mlp()
    step = CapturedStep(model, _inputs(), name="net")
    for batch in (4, 8, 2, 6, 12, 3, 24):
        assert step.workload(batch) == _fresh(model, batch), batch
    assert _counts(step) == (2, 5, 0)
    assert step.capture_s > 0


def test_a_size_outside_every_fit_is_captured() -> None:
    """Batch 1 is not derived from anchors above it (ATen's CPU kernels choose differently there)."""
    model = _mlp()
    step = CapturedStep(model, _inputs(), name="net")
    step.workload(4)
    step.workload(8)
    assert step.workload(1) == _fresh(model, 1)
    assert _counts(step) == (3, 0, 0)
    assert step.workload(2) == _fresh(model, 2)
    assert _counts(step) == (3, 1, 0)


def test_a_step_whose_ops_depend_on_the_batch_is_captured_at_every_size() -> None:
    model = PerSample()
    step = CapturedStep(model, _inputs(), name="net")
    for batch in (2, 3, 4):
        assert len(step.workload(batch).ops) == len(_fresh(model, batch).ops)
    assert _counts(step) == (3, 0, 0)


def test_held_workloads_are_not_produced_again() -> None:
    step = CapturedStep(_mlp(), _inputs(), name="net")
    first = step.workload(4)
    assert step.workload(4) is first
    assert _counts(step) == (1, 0, 0)


def test_a_later_run_loads_the_anchors_and_derives(tmp_path: Path) -> None:
    model = _mlp()
    cache = CaptureCache(tmp_path)
    earlier = CapturedStep(model, _inputs(), name="net", cache=cache)
    earlier.workload(4)
    earlier.workload(8)
    earlier.workload(6)
    assert cache.batch_sizes(earlier.key) == [4, 8]

    later = CapturedStep(_mlp(), _inputs(), name="net", cache=cache)
    assert later.key == earlier.key
    assert later.workload(6) == _fresh(model, 6)
    assert _counts(later) == (0, 1, 2)
    assert later.workload(8) == _fresh(model, 8)
    assert _counts(later) == (0, 1, 2)


def test_counts_add_up_over_steps_and_workers() -> None:
    step = CapturedStep(_mlp(), _inputs(), name="net")
    for batch in (4, 8, 2):
        step.workload(batch)
    counts = CaptureCounts.of([step])
    assert (counts.fresh, counts.derived, counts.cached) == (2, 1, 0)
    merged = counts + CaptureCounts.from_dict(counts.to_dict())
    assert (merged.fresh, merged.derived, merged.cached) == (4, 2, 0)
    assert merged.line(".pytest_cache/d/dojo-captures").startswith(
        "dojo workloads: 4 captured, 2 derived, 0 loaded from .pytest_cache/d/dojo-captures ("
    )


SEARCH = """
import torch

def test_search(dojo):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    report = dojo.train_step(model, torch.randn(48, 32), name="mlp", plan="auto")
    assert report.global_batch == 48
"""


def test_a_plan_search_derives_most_sizes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_search=SEARCH)
    result = pytester.runpytest("--dojo-mesh=2x4", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if line.startswith("dojo workloads:"))
    captured, derived = (int(word) for word in line.split()[2:5:2])
    assert captured <= 3 and derived >= 2, line
