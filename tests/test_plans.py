"""Parallel plans: layout on the mesh, tensor and pipeline parallelism, synchronised batch norm, auto search."""

from __future__ import annotations

import json

import pytest
from synthetic_workloads import chain_workload

from hwmodel import Plan, PlanError, Report, make_system, simulate
from hwmodel.collectives.algorithms import collective
from hwmodel.collectives.routing import ChipGroup
from hwmodel.search.plans import GroupShape, plan_layout
from hwmodel.search.ranking import candidate_plans, search_plans
from hwmodel.spec.mesh import Mesh
from hwmodel.step.workload import FixedWorkloads

BATCH, WIDTH, LAYERS = 64, 1024, 4
BF16 = 2


def test_layout_puts_tensor_groups_in_rows_and_data_groups_across() -> None:
    mesh = Mesh(rows=5, cols=5)
    layout = plan_layout(Plan(data_parallel=5, tensor_parallel=5), mesh)
    assert layout.tensor_group == GroupShape(rows=1, cols=5, concurrent_groups=5)
    assert layout.data_group == GroupShape(rows=5, cols=1, concurrent_groups=5)
    pipeline = plan_layout(Plan(data_parallel=5, pipeline_parallel=5), mesh)
    assert pipeline.pipeline_hops == 1
    assert pipeline.data_group == GroupShape(rows=5, cols=1, concurrent_groups=5)
    # 10x15 (150 chips), tp=5: a data-parallel group is every 5th chip of every row
    wide = plan_layout(Plan(data_parallel=30, tensor_parallel=5), Mesh(rows=10, cols=15))
    assert wide.data_group == GroupShape(rows=10, cols=3, col_stride=5, concurrent_groups=5)


def test_plans_that_do_not_tile_the_mesh_are_one_line_errors() -> None:
    with pytest.raises(PlanError, match="multiply to the mesh's chip count"):
        plan_layout(Plan(data_parallel=2, tensor_parallel=2), Mesh(rows=5, cols=5))
    with pytest.raises(PlanError, match="do not tile mesh 2x6"):
        plan_layout(Plan(data_parallel=3, tensor_parallel=4), Mesh(rows=2, cols=6))
    with pytest.raises(PlanError, match='plan must be a Plan or "auto"'):
        simulate(chain_workload(), make_system("d1", "1x1"), plan="fastest")


def test_tensor_parallel_pairs_layers_and_all_reduces_as_megatron_does() -> None:
    """The 4 matmuls pair up (1 and 2, 3 and 4: column- then row-parallel, the norm and ReLU between
    them on the shard): the row-parallel ones all-reduce their BF16 output (64 x 1024 x 2 B =
    128 KiB) forward over the 1x5 group, and the input gradient of the third (column-parallel; the
    first has none) all-reduces backward: 3 blocking collectives."""
    workload = chain_workload(layers=LAYERS, batch=BATCH, width=WIDTH)
    system = make_system("d1", "1x5")
    report = simulate(workload, system, plan=Plan(data_parallel=1, tensor_parallel=5))
    size = BATCH * WIDTH * BF16
    group = ChipGroup(rows=1, cols=5)
    expected = 3 * collective("all_reduce", system, group, size).time_s
    assert report.tensor_parallel.collectives == 3
    assert report.breakdown_s.tensor_parallel_s == pytest.approx(expected, rel=1e-12)
    weight_share = 4 * WIDTH * WIDTH / (4 * WIDTH * WIDTH + 4 * WIDTH)  # matmul weights of all weights
    assert report.tensor_parallel.parameter_fraction == pytest.approx(1 - weight_share + weight_share / 5)
    single = simulate(workload, make_system("d1", "1x1"))
    assert report.breakdown_s.compute_s < single.breakdown_s.compute_s / 2  # matmuls split five ways
    assert report.memory_bytes_per_chip.weights_bytes == pytest.approx(
        single.memory_bytes_per_chip.weights_bytes * report.tensor_parallel.parameter_fraction
    )
    assert sum(report.breakdown_s.parts().values()) == pytest.approx(report.step_time_s, rel=1e-12)


def test_synchronised_batch_norm_all_reduces_statistics_forward_and_backward() -> None:
    """Each of the 4 norm layers all-reduces 2 x 1024 FP32 values (8 KiB) forward and backward over
    the 5 replicas: 8 latency-bound all-reduces on the critical path, on by default on a D1."""
    workload = chain_workload(layers=LAYERS, batch=BATCH, width=WIDTH)
    system = make_system("d1", "1x5")
    report = simulate(workload, system)
    one = collective("all_reduce", system, ChipGroup(rows=1, cols=5), 2 * WIDTH * 4, concurrent_groups=1).time_s
    assert report.batchnorm_sync.enabled and report.batchnorm_sync.all_reduces == 8
    assert report.breakdown_s.batchnorm_sync_s == pytest.approx(8 * one, rel=1e-12)
    off = simulate(workload, system, sync_batchnorm=False)
    assert off.breakdown_s.batchnorm_sync_s == 0.0
    assert off.step_time_s == pytest.approx(report.step_time_s - 8 * one, rel=1e-9)
    assert simulate(workload, make_system("d1", "1x1")).breakdown_s.batchnorm_sync_s == 0.0
    gpus = simulate(workload, make_system("a100", "1x8"))
    assert not gpus.batchnorm_sync.enabled


def test_pipeline_of_equal_layers_has_the_1f1b_bubble() -> None:
    """4 layers on 4 stages, 8 micro-batches: the bubble of the busiest stage lies between the
    (p-1) lightest slots and (p-1) full slots with their transfers, and each boundary carries one
    BF16 activation (the loss's scalar reduction, which uses one node of 354, weighs as much as a
    layer and gets a stage of its own)."""
    workload = chain_workload(layers=LAYERS, batch=BATCH, width=WIDTH, batchnorm=False)
    plan = Plan(data_parallel=1, pipeline_parallel=4, micro_batches=8)
    report = simulate(workload, make_system("d1", "1x4"), plan=plan)
    pipeline = report.pipeline
    assert pipeline.ideal_bubble_fraction == pytest.approx(3 / 11)
    assert pipeline.transfer_bytes == BATCH * WIDTH * BF16
    forward = pipeline.forward_s_per_micro_batch
    slot = max(f + b for f, b in zip(forward, pipeline.backward_s_per_micro_batch, strict=True))
    # every stage idles at least (p-1) slots of the others; transfers only add to it
    assert report.breakdown_s.pipeline_bubble_s >= 3 * min(forward) * 0.99
    assert pipeline.bubble_s <= 3 * (slot + 2 * pipeline.transfer_s) * 1.01
    assert report.global_batch == BATCH * 8
    assert sum(report.breakdown_s.parts().values()) == pytest.approx(report.step_time_s, rel=1e-12)


def test_hybrid_plan_runs_and_adds_up() -> None:
    workload = chain_workload(layers=LAYERS, batch=BATCH, width=WIDTH)
    report = simulate(
        workload,
        make_system("d1", "2x4"),
        plan=Plan(data_parallel=2, tensor_parallel=2, pipeline_parallel=2, micro_batches=2),
    )
    assert report.plan == "dp=2 tp=2 pp=2 mb=2"
    assert report.breakdown_s.tensor_parallel_s > 0 and report.breakdown_s.pipeline_bubble_s > 0
    assert sum(report.breakdown_s.parts().values()) == pytest.approx(report.step_time_s, rel=1e-12)


def test_auto_returns_the_fastest_plan_and_asks_for_few_batch_sizes() -> None:
    """A global batch of 20 on 1x4: the data-parallel degrees 1, 2, 4 need per-replica batches 20,
    10 and 5; pipelines are given only micro-batches of those sizes."""
    workloads = {size: chain_workload(layers=LAYERS, batch=size, width=WIDTH) for size in (20, 10, 5)}
    source = FixedWorkloads(by_batch=workloads, global_batch=20)
    system = make_system("d1", "1x4")
    ranking = search_plans(source, system)
    assert set(ranking.batch_sizes_requested) <= {20, 10, 5}
    fitted = [entry for entry in ranking.entries if entry.fits]
    assert [entry.samples_per_s for entry in fitted] == sorted((e.samples_per_s for e in fitted), reverse=True)
    best = simulate(source, system, plan="auto")
    assert best.plan == fitted[0].plan and best.plan_ranking[0].plan == best.plan
    for plan in candidate_plans(source, system):
        assert simulate(source, system, plan=plan).samples_per_s <= best.samples_per_s
    assert {str(plan) for plan in candidate_plans(source, system)} >= {"dp=4", "dp=1 tp=4", "dp=1 pp=4 mb=4"}


def test_report_with_plan_fields_round_trips_through_json() -> None:
    workload = chain_workload(layers=LAYERS, batch=BATCH, width=WIDTH)
    report = simulate(workload, make_system("d1", "1x4"), plan="auto")
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert again.plan_ranking and again.batchnorm_sync and again.memory_strategy


def test_captured_batch_norms_are_synchronised_and_staged() -> None:
    """A captured conv net with 3 BatchNorm2d layers: 3 forward + 3 backward statistics all-reduces
    under data parallelism; two pipeline stages split its modules."""
    torch = pytest.importorskip("torch")
    from pytest_dojo.capture import capture_train_step

    layers: list[torch.nn.Module] = []
    for channels_in, channels_out in ((3, 16), (16, 32), (32, 32)):
        layers += [
            torch.nn.Conv2d(channels_in, channels_out, 3, padding=1),
            torch.nn.BatchNorm2d(channels_out),
            torch.nn.ReLU(),
        ]
    model = torch.nn.Sequential(*layers)
    workload = capture_train_step(model, torch.randn(4, 3, 32, 32), name="convnet")
    report = simulate(workload, make_system("d1", "1x4"))
    assert report.batchnorm_sync.norm_ops == 6 and report.batchnorm_sync.all_reduces == 6
    first_bn = collective("all_reduce", make_system("d1", "1x4"), ChipGroup(rows=1, cols=4), 2 * 16 * 4).time_s
    assert report.breakdown_s.batchnorm_sync_s > first_bn
    two_stages = Plan(data_parallel=1, pipeline_parallel=2, micro_batches=2)
    staged = simulate(workload, make_system("d1", "1x2"), plan=two_stages)
    assert len(staged.pipeline.forward_s_per_micro_batch) == 2
    assert all(seconds > 0 for seconds in staged.pipeline.forward_s_per_micro_batch)
    assert staged.pipeline.transfer_bytes > 0


@pytest.mark.slow
def test_auto_on_the_full_hydranet_captures_only_the_batches_it_needs() -> None:
    """plan="auto" through the plugin's capturing source: a global batch of 25 on a 5x5 tile asks
    for per-replica batches 25, 5 and 1 only (about three captures of the full network)."""
    torch = pytest.importorskip("torch")
    from dojo_networks import get_network
    from pytest_dojo.plugin.steps import CapturedStep

    spec = get_network("hydranet")
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", 25, "meta")
    step = CapturedStep(model, inputs, targets=targets, loss_fn=spec.loss, name="hydranet-full")
    ranking = search_plans(step, make_system("d1", "5x5"))
    assert set(ranking.batch_sizes_requested) <= {25, 5, 1}
    report = ranking.report
    assert report.global_batch == 25 and report.plan == ranking.entries[0].plan
    replicas = int(report.plan.split()[0].removeprefix("dp="))
    assert report.batchnorm_sync.enabled == (replicas > 1)
    assert sum(report.breakdown_s.parts().values()) == pytest.approx(report.step_time_s, rel=1e-9)
    assert 0 < report.mfu <= 1


def test_a_pipeline_steps_the_optimizer_once_per_replica_whatever_its_micro_batches() -> None:
    """dp=5 pp=5 over 8 micro-batches of 1 sample: forward and backward FLOPs are 40 micro-batches',
    the optimizer's 5 replicas' (one step each), not 40."""
    one = chain_workload(layers=5, batch=1, width=64)
    source = FixedWorkloads(by_batch={1: one}, global_batch=40)
    plan = Plan(data_parallel=5, pipeline_parallel=5, micro_batches=8)
    report = simulate(source, make_system("d1", "5x5"), plan=plan)
    by_phase = one.flops_by_phase
    assert by_phase["optimizer"] > 0
    assert report.flops_by_phase.forward_flops == pytest.approx(40 * by_phase["forward"])
    assert report.flops_by_phase.optimizer_flops == pytest.approx(5 * by_phase["optimizer"])
