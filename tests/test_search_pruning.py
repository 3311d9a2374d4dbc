"""The plan search's lower bounds and its pruning: every bound is at most the simulated step, and the
pruned search returns the plan and report of the exhaustive one, keeping what it dropped visible."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic_workloads import chain_workload

from hwmodel import Plan, Report, make_system, simulate
from hwmodel.errors import HwModelError
from hwmodel.search.bound import busy_bound_s, peak_bound_s
from hwmodel.search.ranking import PlanRanking, candidate_plans, search_plans
from hwmodel.spec.precision import PRECISIONS
from hwmodel.spec.system import System
from hwmodel.step.op_times import op_times
from hwmodel.step.resolve import resolve
from hwmodel.step.simulate import StepOptions, evaluate
from hwmodel.step.workload import FixedWorkloads

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRESETS = ["d1", "a100", "h100", "v100-pcie-32gb", "t4", "host"]
MESHES = ["1x1", "1x2", "1x4", "2x2", "2x4", "1x5", "5x5"]


def source_for(system: System, global_batch: int, layers: int, width: int, batchnorm: bool) -> FixedWorkloads:
    """Every per-replica and micro-batch size a search of ``global_batch`` on ``system`` may ask for."""
    sizes = {-(-global_batch // splits) for splits in range(1, 4 * system.num_chips + 1)}
    sizes |= {global_batch // splits for splits in range(1, 4 * system.num_chips + 1)}
    return FixedWorkloads(
        by_batch={
            size: chain_workload(layers=layers, batch=size, width=width, batchnorm=batchnorm)
            for size in sizes
            if size >= 1
        },
        global_batch=global_batch,
    )


@st.composite
def searches(draw: st.DrawFn) -> tuple[FixedWorkloads, System, StepOptions]:
    system = make_system(draw(st.sampled_from(PRESETS)), draw(st.sampled_from(MESHES)))
    global_batch = draw(st.sampled_from([1, 2, 7, 16, 25, 64, 100, 512]))
    source = source_for(
        system,
        global_batch,
        layers=draw(st.integers(1, 4)),
        width=draw(st.sampled_from([32, 256, 1024, 4096])),
        batchnorm=draw(st.booleans()),
    )
    options = StepOptions(
        precision=draw(st.sampled_from(list(PRECISIONS.values()))),
        sync_batchnorm=draw(st.sampled_from([None, True, False])),
        bucket_bytes=draw(st.sampled_from([1e3, 1e5, 25e6])),
    )
    return source, system, options


@SETTINGS
@given(searches(), st.data())
def test_bounds_never_exceed_the_simulated_step(case: tuple[FixedWorkloads, System, StepOptions], data: Any) -> None:
    source, system, options = case
    plan = data.draw(st.sampled_from(candidate_plans(source, system)))
    try:
        report = evaluate(source, system, plan, options).report
    except HwModelError:
        return  # the plan does not fit: nothing to bound
    context = resolve(source, system, plan, options, keep_timeline=False)
    peak, busy = peak_bound_s(context), busy_bound_s(context, op_times(context))
    assert 0 < peak <= busy <= report.step_time_s


def entries_by_plan(ranking: PlanRanking) -> dict[str, Any]:
    return {entry.plan: entry for entry in ranking.entries}


def assert_same_search(pruned: PlanRanking, exhaustive: PlanRanking) -> None:
    """Same best plan and report; simulated entries identical; each pruned plan truly slower than the
    best, with a bound at most its simulated step."""
    assert replace(pruned.report, plan_ranking=()) == replace(exhaustive.report, plan_ranking=())
    full = entries_by_plan(exhaustive)
    assert set(entries_by_plan(pruned)) == set(full)
    for entry in pruned.entries:
        if entry.pruned:
            truth = full[entry.plan]
            assert not truth.fits or truth.samples_per_s < pruned.report.samples_per_s
            assert not truth.fits or entry.step_time_bound_s <= truth.step_time_s
            assert entry.reason.startswith("pruned: ")
        else:
            assert entry == full[entry.plan]
    assert pruned.pruned == sum(entry.pruned for entry in pruned.entries)
    assert exhaustive.pruned == 0
    assert pruned.evaluated + pruned.pruned <= len(pruned.entries)


@SETTINGS
@given(searches())
def test_pruned_search_returns_the_exhaustive_plan_and_report(case: tuple[FixedWorkloads, System, StepOptions]) -> None:
    source, system, options = case
    try:
        exhaustive = search_plans(source, system, options=options, prune=False)
    except HwModelError:
        return  # nothing fits
    assert_same_search(search_plans(source, system, options=options), exhaustive)


def test_pruning_drops_plans_of_the_behaviour_case_and_keeps_them_visible() -> None:
    """The 1x4 D1 case of the behaviour references (4 chain layers of width 512, 4 samples a chip): the
    exhaustive search simulates 7 plans, dp=1 tp=4 wins (the layers paired column- and row-parallel,
    3 all-reduces; ahead of dp=1 pp=4 mb=4); the pruned one simulates
    dp=4 first (13.0 us), then the best bounds first, and drops the plans whose bound exceeds the
    best step found by then, returning the same report."""
    system = make_system("d1", "1x4")
    source = FixedWorkloads(
        by_batch={size: chain_workload(layers=4, batch=size, width=512) for size in (4, 8, 16)}, global_batch=16
    )
    exhaustive = search_plans(source, system, prune=False)
    pruned = search_plans(source, system)
    assert exhaustive.evaluated == 7 and exhaustive.report.plan == "dp=1 tp=4"
    assert_same_search(pruned, exhaustive)
    assert pruned.pruned >= 1 and pruned.evaluated + pruned.pruned == 7
    auto = simulate(source, system, plan="auto")
    assert auto == pruned.report
    data = json.loads(json.dumps(auto.to_dict()))
    assert Report.from_dict(data) == auto
    dropped = [entry for entry in data["plan_ranking"] if entry.get("pruned")]
    assert len(dropped) == pruned.pruned and all("step_time_bound_s" in entry for entry in dropped)
    assert all("pruned" not in entry for entry in data["plan_ranking"] if entry["fits"])


def test_a_deep_pipeline_is_dropped_unsimulated() -> None:
    """On a 5x5 tile, 4 chain layers of width 4096 and 4 samples a chip: a 25-stage pipeline holds a
    whole layer on its busiest stage for each of its 25 micro-batches, and its first micro-batch
    crosses 48 stage boundaries; its bound exceeds the best plan's step, so the search drops it."""
    system = make_system("d1", "5x5")
    source = source_for(system, 100, layers=4, width=4096, batchnorm=True)
    ranking = search_plans(source, system)
    deep = entries_by_plan(ranking)["dp=1 pp=25 mb=25"]
    assert deep.pruned and deep.step_time_bound_s > ranking.report.step_time_s
    exhaustive = search_plans(source, system, prune=False)
    assert_same_search(ranking, exhaustive)
    assert entries_by_plan(exhaustive)["dp=1 pp=25 mb=25"].step_time_s >= deep.step_time_bound_s


@pytest.mark.parametrize("preset", ["d1", "a100", "host"])
def test_bounds_hold_for_captured_convolutions_attention_and_depthwise(preset: str) -> None:
    """A captured network with batch norm, a depthwise convolution and attention: every candidate
    on 2x4 is bounded from below by both bounds."""
    torch = pytest.importorskip("torch")
    from pytest_dojo.capture import capture_train_step

    class Net(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU()
            )
            self.depthwise = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.attention = torch.nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, images: Any) -> Any:
            features = self.depthwise(self.stem(images)).flatten(2).transpose(1, 2)
            return self.attention(features, features, features)[0].mean(dim=1)

    system = make_system(preset, "2x4")
    workloads = {size: capture_train_step(Net(), torch.randn(size, 3, 8, 8), name="net") for size in (1, 2, 4, 8)}
    source = FixedWorkloads(by_batch=workloads, global_batch=8)
    for plan in candidate_plans(source, system):
        report = evaluate(source, system, plan).report
        context = resolve(source, system, plan, StepOptions(), keep_timeline=False)
        assert peak_bound_s(context) <= busy_bound_s(context, op_times(context)) <= report.step_time_s, plan


def test_a_bare_workload_search_ranks_by_samples_per_second() -> None:
    """With one micro-batch of one replica given, the global batch grows with ``dp x m``: pruning
    compares the bound's samples/s, and the winner is the exhaustive one's."""
    workload = chain_workload(layers=3, batch=8, width=256)
    system = make_system("d1", "2x4")
    assert_same_search(search_plans(workload, system), search_plans(workload, system, prune=False))
    assert Plan.parse(search_plans(workload, system).report.plan).chips_used == 8
