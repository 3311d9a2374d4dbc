"""Physical invariants of the simulator, as hypothesis properties over workloads, meshes and plans."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic_workloads import chain_workload

from hwmodel import Plan, Report, make_system, simulate
from hwmodel.collectives.pricing import group_collective_s
from hwmodel.search.plans import GroupShape, plan_layout
from hwmodel.search.ranking import candidate_plans
from hwmodel.spec.system import System
from hwmodel.step.timeline import one_f_one_b
from hwmodel.step.workload import Workload

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESHES = ["1x1", "1x2", "1x4", "2x2", "1x5", "2x4", "5x5"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Workload, System, Plan]:
    workload = chain_workload(
        layers=draw(st.integers(1, 4)),
        batch=draw(st.sampled_from([1, 8, 64, 512])),
        width=draw(st.sampled_from([64, 256, 1024])),
        batchnorm=draw(st.booleans()),
    )
    system = make_system("d1", draw(st.sampled_from(MESHES)))
    plan = draw(st.sampled_from(candidate_plans(workload, system)))
    return workload, system, plan


def _faster_links(system: System, factor: float) -> System:
    fabric = replace(
        system.fabric,
        link_bytes_per_s=system.fabric.link_bytes_per_s * factor,
        inter_tile_link_bytes_per_s=system.fabric.inter_tile_link_bytes_per_s * factor,
    )
    return replace(system, fabric=fabric)


def _faster_chip(system: System, factor: float) -> System:
    chip = replace(
        system.chip,
        matrix_bf16_flops_per_s=system.chip.matrix_bf16_flops_per_s * factor,
        matrix_fp32_flops_per_s=system.chip.matrix_fp32_flops_per_s * factor,
        matrix_tf32_flops_per_s=system.chip.matrix_tf32_flops_per_s * factor,
        vector_flops_per_s=system.chip.vector_flops_per_s * factor,
    )
    return replace(system, chip=chip)


RELATIVE = 1 + 1e-9
"""Slack for float rounding when two steps should be equal."""


@SETTINGS
@given(cases(), st.floats(1.0, 16.0))
def test_more_link_bandwidth_never_slows_a_step(case: tuple[Workload, System, Plan], factor: float) -> None:
    workload, system, plan = case
    base = simulate(workload, system, plan=plan).step_time_s
    assert simulate(workload, _faster_links(system, factor), plan=plan).step_time_s <= base * RELATIVE


@SETTINGS
@given(cases(), st.floats(1.0, 16.0))
def test_more_flops_never_slow_a_step(case: tuple[Workload, System, Plan], factor: float) -> None:
    workload, system, plan = case
    base = simulate(workload, system, plan=plan).step_time_s
    assert simulate(workload, _faster_chip(system, factor), plan=plan).step_time_s <= base * RELATIVE


@SETTINGS
@given(cases(), st.floats(0.001, 1.0), st.floats(1.0, 8.0))
def test_more_sram_never_slows_a_step(case: tuple[Workload, System, Plan], fraction: float, factor: float) -> None:
    """From an SRAM that holds a fraction of the working set (spill or recompute) to a bigger one."""
    workload, system, plan = case
    need = simulate(workload, system, plan=plan).memory_strategy.working_set_bytes
    small = replace(system, chip=replace(system.chip, local_memory_bytes=max(need * fraction, 1.0)))
    large = replace(system, chip=replace(system.chip, local_memory_bytes=max(need * fraction, 1.0) * factor))
    slower = simulate(workload, small, plan=plan).step_time_s
    assert simulate(workload, large, plan=plan).step_time_s <= slower * RELATIVE


@SETTINGS
@given(cases())
def test_step_is_at_least_the_compute_lower_bound(case: tuple[Workload, System, Plan]) -> None:
    workload, system, plan = case
    report = simulate(workload, system, plan=plan)
    assert report.step_time_s >= report.flops_total / system.peak_bf16_flops_per_s


@SETTINGS
@given(cases())
def test_step_is_at_least_the_gradient_communication_lower_bound(case: tuple[Workload, System, Plan]) -> None:
    """Every replica must send (p-1)/p of its gradients (Patarasuk and Yuan) over at most 4 links."""
    workload, system, plan = case
    report = simulate(workload, system, plan=plan)
    ranks = plan.data_parallel
    fastest_link = max(system.fabric.link_bytes_per_s, system.fabric.inter_tile_link_bytes_per_s)
    gradient_bytes = report.communication.gradient_bytes / plan.pipeline_parallel
    bound = (ranks - 1) / ranks * gradient_bytes / (4 * fastest_link)
    assert report.step_time_s >= bound


@SETTINGS
@given(cases())
def test_breakdown_adds_up_and_mfu_is_a_fraction(case: tuple[Workload, System, Plan]) -> None:
    workload, system, plan = case
    report = simulate(workload, system, plan=plan)
    assert all(value >= 0 for value in report.breakdown_s.parts().values())
    assert sum(report.breakdown_s.parts().values()) == pytest.approx(report.step_time_s, rel=1e-9)
    assert 0 < report.mfu <= 1
    assert report.sram_peak_bytes_per_chip <= system.chip.local_memory_bytes


def test_a_pipeline_bubble_is_never_negative() -> None:
    """A case hypothesis found: the 1F1B makespan and the busiest stage's work, summed in different
    orders, left a bubble of -3.4e-21 s (one BatchNorm layer, batch 1, dp 4 x pp 2, 8 micro-batches)."""
    workload = chain_workload(layers=1, batch=1, width=64, batchnorm=True)
    system = make_system("d1", "2x4")
    report = simulate(workload, system, plan=Plan(data_parallel=4, pipeline_parallel=2, micro_batches=8))
    assert report.breakdown_s.pipeline_bubble_s == 0.0
    assert all(value >= 0 for value in report.breakdown_s.parts().values())


@SETTINGS
@given(cases())
def test_identical_inputs_give_identical_reports(case: tuple[Workload, System, Plan]) -> None:
    workload, system, plan = case
    rebuilt = Workload.from_json(workload.to_json())
    first = simulate(workload, system, plan=plan)
    assert json.dumps(first.to_dict()) == json.dumps(simulate(rebuilt, system, plan=plan).to_dict())
    assert Report.from_dict(json.loads(json.dumps(first.to_dict()))) == first


@SETTINGS
@given(
    st.sampled_from(["all_reduce", "reduce_scatter", "all_gather"]),
    st.sampled_from([(1, 2), (1, 5), (5, 1), (5, 5), (2, 4)]),
    st.floats(0.0, 1e9),
    st.floats(1.0, 100.0),
)
def test_collective_time_grows_with_bytes(kind: str, shape: tuple[int, int], size: float, growth: float) -> None:
    rows, cols = shape
    system = make_system("d1", f"{rows}x{cols}")
    group = GroupShape(rows=rows, cols=cols)
    smaller = group_collective_s(kind, system, group, size)
    assert group_collective_s(kind, system, group, size * growth) >= smaller
    if kind == "all_reduce":
        assert smaller >= group_collective_s("reduce_scatter", system, group, size)


@SETTINGS
@given(st.sampled_from(["1x2", "1x4", "2x2", "1x5", "2x4", "5x5"]), st.sampled_from([8, 64]), st.booleans())
def test_data_parallel_throughput_scales_at_most_linearly(mesh: str, batch: int, batchnorm: bool) -> None:
    workload = chain_workload(layers=3, batch=batch, width=512, batchnorm=batchnorm)
    one = simulate(workload, make_system("d1", "1x1")).samples_per_s
    system = make_system("d1", mesh)
    assert simulate(workload, system).samples_per_s <= system.num_chips * one * RELATIVE


@SETTINGS
@given(cases())
def test_remedies_and_options_only_help(case: tuple[Workload, System, Plan]) -> None:
    """Allowing recomputation never slows a step; synchronising batch norm never speeds one up."""
    workload, system, plan = case
    need = simulate(workload, system, plan=plan).memory_strategy.working_set_bytes
    tight = replace(system, chip=replace(system.chip, local_memory_bytes=need * 0.6))
    assert (
        simulate(workload, tight, plan=plan, recompute=True).step_time_s
        <= simulate(workload, tight, plan=plan, recompute=False).step_time_s * RELATIVE
    )
    assert (
        simulate(workload, system, plan=plan, sync_batchnorm=False).step_time_s
        <= simulate(workload, system, plan=plan, sync_batchnorm=True).step_time_s * RELATIVE
    )


@SETTINGS
@given(
    st.lists(st.floats(0.0, 10.0), min_size=1, max_size=6),
    st.floats(0.0, 10.0),
    st.integers(1, 12),
    st.floats(0.0, 2.0),
)
def test_pipeline_makespan_lies_between_its_bounds(
    forward: list[float], ratio: float, micro_batches: int, transfer: float
) -> None:
    """Lower: the busiest stage's m slots, and one micro-batch through every stage. Upper: the ramp
    through every stage plus (m-1) slots of the busiest, with every transfer on the way."""
    forward_s = np.array(forward)
    backward_s = forward_s * ratio
    slots = forward_s + backward_s
    stages = len(forward)
    makespan = one_f_one_b(forward_s, backward_s, transfer, micro_batches).makespan_s
    assert makespan >= micro_batches * slots.max() * (1 - 1e-12)
    assert makespan >= (slots.sum() + 2 * (stages - 1) * transfer) * (1 - 1e-12)
    upper = slots.sum() + (micro_batches - 1) * (slots.max() + 2 * transfer) + 2 * (stages - 1) * transfer
    assert makespan <= upper * (1 + 1e-12) + 1e-12


@SETTINGS
@given(cases())
def test_every_plan_uses_exactly_the_mesh(case: tuple[Workload, System, Plan]) -> None:
    _, system, plan = case
    layout = plan_layout(plan, system.mesh)
    assert plan.chips_used == system.num_chips
    assert layout.tensor_group.size == plan.tensor_parallel
    assert layout.data_group.size == plan.data_parallel
    assert layout.data_group.size * layout.data_group.concurrent_groups == system.num_chips or plan.data_parallel == 1
