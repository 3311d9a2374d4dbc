"""A plan search tells its workload source the batch sizes it will ask for; a CapturedStep then
captures two of them in one call and derives the rest, and the ranking is the same as without."""

from __future__ import annotations

import pytest
import torch

from dojo_networks import get_network
from hwmodel import Workload, make_system
from hwmodel.search.ranking import candidate_plans, requested_batch_sizes, search_plans
from pytest_dojo.capture import capture_train_step
from pytest_dojo.plugin.steps import CapturedStep

GLOBAL_BATCH = 24


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def _step(model: torch.nn.Module, global_batch: int = GLOBAL_BATCH) -> CapturedStep:
    with torch.device("meta"):
        inputs = torch.empty(global_batch, 8)
    return CapturedStep(model, inputs, name="net")


class Unprepared:
    """The same source without ``prepare``: captures the first two sizes asked for, one by one."""

    def __init__(self, step: CapturedStep) -> None:
        self.step = step
        self.global_batch = step.global_batch

    def workload(self, batch_size: int) -> Workload:
        return self.step.workload(batch_size)


def test_prepared_sizes_are_captured_as_a_pair_and_the_rest_derived_exactly() -> None:
    model = _mlp()
    step = _step(model)
    step.prepare((12, 6, 4, 3, 2))
    workloads = {batch: step.workload(batch) for batch in (12, 6, 4, 3, 2)}
    assert (step.capture_calls, step.fresh_captures, step.derived_batches) == (1, 2, 3)
    assert sorted(step._anchors) == [2, 3]
    for batch, workload in workloads.items():
        assert workload == capture_train_step(model, torch.randn(GLOBAL_BATCH, 8), batch_size=batch, name="net")


def test_one_prepared_size_is_captured_alone() -> None:
    step = _step(_mlp())
    step.prepare((6,))
    step.workload(6)
    assert (step.capture_calls, step.fresh_captures, step.derived_batches) == (1, 1, 0)


def test_a_size_outside_the_pairs_fit_is_captured() -> None:
    """A pair at 2 and 3 derives nothing below 2: batch 1, asked for later, is captured."""
    step = _step(_mlp())
    step.prepare((2, 4, 8))
    step.workload(8)
    assert step.workload(1).batch_size == 1
    assert (step.capture_calls, step.fresh_captures, step.derived_batches) == (2, 3, 1)


def test_the_requested_sizes_are_those_the_search_asks_for() -> None:
    system = make_system("d1", "5x5")
    step = _step(_mlp(), 64)
    ranking = search_plans(Unprepared(step), system)
    plans = candidate_plans(step, system)
    assert requested_batch_sizes(64, plans) == tuple(sorted(ranking.batch_sizes_requested))


@pytest.mark.parametrize(("mesh", "global_batch"), [("5x5", 64), ("2x4", 48), ("5x5", 25)])
def test_a_prepared_search_ranks_exactly_as_an_unprepared_one(mesh: str, global_batch: int) -> None:
    system = make_system("d1", mesh)
    model = _mlp()
    prepared_step = _step(model, global_batch)
    prepared = search_plans(prepared_step, system)
    unprepared = search_plans(Unprepared(_step(model, global_batch)), system)
    assert prepared == unprepared
    assert prepared_step.capture_calls == 1


def test_an_exapod_search_captures_once_for_two_sizes() -> None:
    """The 3,000 chips of an ExaPOD ask for 32 per-replica batches: one two-batch capture, the rest
    derived."""
    system = make_system("d1", "exapod")
    step = _step(_mlp(), 4 * system.num_chips)
    ranking = search_plans(step, system)
    assert (step.capture_calls, step.fresh_captures) == (1, 2)
    assert step.derived_batches == len(set(ranking.batch_sizes_requested) - set(step._anchors))


@pytest.mark.slow
def test_a_hydranet_exapod_search_captures_once_for_two_sizes() -> None:
    """The full HydraNet at one sample per chip: batch 1 and 2 in one call, every other size derived."""
    system = make_system("d1", "exapod")
    spec = get_network("hydranet")
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", system.num_chips, "meta")
    step = CapturedStep(model, inputs, targets=targets, loss_fn=spec.loss, name="hydranet-full")
    ranking = search_plans(step, system)
    assert (step.capture_calls, step.fresh_captures, step.derived_batches) == (1, 2, 30)
    assert sorted(step._anchors) == [1, 2]
    assert len(ranking.batch_sizes_requested) == 32
