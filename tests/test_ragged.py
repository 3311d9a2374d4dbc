"""Global batches that do not divide by the replicas (or micro-batches): the split, the step of the
largest shard, the idle fraction, the FLOPs of every shard, and the plugin showing it all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_workloads import chain_workload

from hwmodel import Plan, Report, make_system, simulate
from hwmodel.errors import PlanError
from hwmodel.search.ranking import candidate_plans, search_plans
from hwmodel.step.split import split_batch
from hwmodel.step.workload import FixedWorkloads

TILE = make_system("d1", "5x5")


def chains(*batches: int, global_batch: int) -> FixedWorkloads:
    return FixedWorkloads(
        by_batch={batch: chain_workload(layers=3, batch=batch, width=128) for batch in batches},
        global_batch=global_batch,
    )


@pytest.mark.parametrize(
    ("batch", "largest", "largest_replicas", "smallest", "smallest_replicas", "idle_replicas", "idle_fraction"),
    [
        # 64 = 14 x 3 + 11 x 2; 75 slots: 1 - 64/75
        (64, 3, 14, 2, 11, 0, 11 / 75),
        # 16 = 16 x 1 + 9 x 0; 25 slots: 1 - 16/25
        (16, 1, 16, 0, 9, 9, 9 / 25),
        (4, 1, 4, 0, 21, 21, 21 / 25),
        (2, 1, 2, 0, 23, 23, 23 / 25),
        # 26 = 1 x 2 + 24 x 1; 50 slots: 1 - 26/50
        (26, 2, 1, 1, 24, 0, 24 / 50),
    ],
)
def test_split_over_replicas(
    batch: int,
    largest: int,
    largest_replicas: int,
    smallest: int,
    smallest_replicas: int,
    idle_replicas: int,
    idle_fraction: float,
) -> None:
    split = split_batch(batch, replicas=25)
    assert split is not None
    assert (split.largest_shard, split.largest_shard_replicas) == (largest, largest_replicas)
    assert (split.smallest_shard, split.smallest_shard_replicas) == (smallest, smallest_replicas)
    assert split.idle_replicas == idle_replicas
    assert split.idle_fraction == pytest.approx(idle_fraction, rel=1e-12)
    assert split.idle_fraction == pytest.approx(1 - batch / (25 * -(-batch // 25)), rel=1e-12)


def test_split_over_micro_batches() -> None:
    """64 over 5 replicas: 4 x 13 + 1 x 12; in 5 micro-batches each: 13 = 3+3+3+2+2 (4 times),
    12 = 3+3+2+2+2; 25 micro-batches, 14 of 3 and 11 of 2 (64 mod 25 = 14); 75 slots."""
    split = split_batch(64, replicas=5, micro_batches=5)
    assert split is not None
    assert (split.largest_shard, split.largest_shard_replicas, split.smallest_shard) == (13, 4, 12)
    assert (split.largest_micro_batch, split.largest_micro_batch_count) == (3, 4 * 3 + 2)
    assert (split.smallest_micro_batch, split.smallest_micro_batch_count) == (2, 4 * 2 + 3)
    assert split.idle_fraction == pytest.approx(11 / 75, rel=1e-12)
    even_replicas = split_batch(50, replicas=5, micro_batches=4)  # 10 each: 3+3+2+2
    assert even_replicas is not None and even_replicas.largest_shard_replicas == 5
    assert even_replicas.smallest_shard_replicas == 0 and even_replicas.idle_fraction == pytest.approx(1 - 50 / 60)
    assert split_batch(100, replicas=5, micro_batches=4) is None


def test_more_micro_batches_than_samples_is_a_one_line_error() -> None:
    with pytest.raises(PlanError, match="at most 13 samples per replica, too few for 16 micro-batches") as error:
        simulate(chains(4, 3, global_batch=64), TILE, plan=Plan(data_parallel=5, pipeline_parallel=5, micro_batches=16))
    assert "\n" not in str(error.value)


def test_ragged_step_is_the_step_of_its_largest_shard() -> None:
    """64 on 25 replicas lasts as long as 75 on 25 (every replica with 3 samples); samples/s counts 64;
    FLOPs are 14 shards of 3 and 11 of 2."""
    source = chains(3, 2, global_batch=64)
    ragged = simulate(source, TILE)
    even = simulate(FixedWorkloads(by_batch={3: source.by_batch[3]}, global_batch=75), TILE)
    assert ragged.step_time_s == even.step_time_s
    assert ragged.breakdown_s == even.breakdown_s
    assert ragged.global_batch == 64 and ragged.samples_per_s == 64 / ragged.step_time_s
    three, two = source.by_batch[3].flops_by_phase, source.by_batch[2].flops_by_phase
    assert ragged.flops_by_phase.forward_flops == pytest.approx(14 * three["forward"] + 11 * two["forward"])
    assert ragged.flops_by_phase.optimizer_flops == pytest.approx(25 * three["optimizer"])
    assert ragged.mfu == pytest.approx(ragged.flops_total / ragged.step_time_s / ragged.peak_flops_per_s)
    assert ragged.batch_split is not None and ragged.batch_split.idle_fraction == pytest.approx(11 / 75)
    assert even.batch_split is None


def test_a_batch_smaller_than_the_replicas_leaves_chips_idle() -> None:
    """16 samples on 25 replicas: 16 of 1, 9 idle replicas that still reduce gradients and step
    the optimizer; forward FLOPs of 16 samples only."""
    source = chains(1, global_batch=16)
    report = simulate(source, TILE)
    alone = simulate(FixedWorkloads(by_batch=source.by_batch, global_batch=25), TILE)
    assert report.step_time_s == alone.step_time_s
    assert report.batch_split is not None and report.batch_split.idle_replicas == 9
    one = source.by_batch[1].flops_by_phase
    assert report.flops_by_phase.forward_flops == pytest.approx(16 * one["forward"])
    assert report.flops_by_phase.optimizer_flops == pytest.approx(25 * one["optimizer"])


def test_ragged_micro_batches_take_the_time_of_the_largest() -> None:
    source = chains(3, 2, global_batch=64)
    plan = Plan(data_parallel=5, pipeline_parallel=5, micro_batches=5)
    ragged = simulate(source, TILE, plan=plan)
    even = simulate(FixedWorkloads(by_batch={3: source.by_batch[3]}, global_batch=75), TILE, plan=plan)
    assert ragged.step_time_s == even.step_time_s and ragged.pipeline == even.pipeline
    assert ragged.batch_split is not None and ragged.batch_split.largest_micro_batch == 3


def test_report_json_has_the_split_only_when_uneven() -> None:
    ragged = simulate(chains(3, 2, global_batch=64), TILE)
    data = json.loads(json.dumps(ragged.to_dict()))
    assert data["batch_split"]["largest_shard"] == 3 and data["batch_split"]["idle_fraction"] == pytest.approx(11 / 75)
    assert Report.from_dict(data) == ragged
    even = simulate(chains(3, global_batch=75), TILE)
    assert "batch_split" not in even.to_dict()


def test_search_ranks_uneven_replica_counts_honestly() -> None:
    """64 on 5x5: dp 25 and 5 do not divide it and are candidates; every entry's figures are those of
    its plan simulated alone."""
    sizes = (64, 13, 12, 3, 2, 1)
    source = chains(*sizes, global_batch=64)
    plans = {str(plan) for plan in candidate_plans(source, TILE)}
    assert {"dp=25", "dp=5 tp=5", "dp=5 pp=5 mb=5"} <= plans
    ranking = search_plans(source, TILE, prune=False)
    for entry in ranking.entries:
        if entry.fits:
            alone = simulate(source, TILE, plan=Plan.parse(entry.plan))
            assert entry.samples_per_s == alone.samples_per_s and entry.global_batch == 64
    assert ranking.report.samples_per_s == max(entry.samples_per_s or 0.0 for entry in ranking.entries)


NETWORK_TESTS = """
import torch

@pytest.mark.parametrize("batch", [64, 16, 4, 2])
def test_batch(dojo, batch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    report = dojo.train_step(model, torch.randn(batch, 32), name="mlp")
    assert report.global_batch == batch and report.samples_per_s > 0
"""


def test_uneven_batches_simulate_on_a_tile_and_show_their_split(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_uneven_batches="import pytest\n" + NETWORK_TESTS)
    results = tmp_path / "results.json"
    result = pytester.runpytest("--dojo-mesh=5x5", f"--dojo-json={results}", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*test_batch?16? [[]mlp[]]: batch 16 over 25 replicas does not split evenly: 16 x 1 samples,"
            " 9 replicas idle; 36.0% of chip-time idle",
            "*test_batch?64? [[]mlp[]]: batch 64 over 25 replicas does not split evenly: 14 x 3 + 11 x 2 samples;"
            " 14.7% of chip-time idle",
        ]
    )
    entries = {
        entry["nodeid"].rsplit("[", 1)[1].rstrip("]"): entry for entry in json.loads(results.read_text())["results"]
    }
    split = entries["64"]["report"]["batch_split"]
    assert (split["largest_shard"], split["largest_shard_replicas"], split["smallest_shard"]) == (3, 14, 2)
    assert split["idle_fraction"] == pytest.approx(11 / 75)
    assert entries["2"]["report"]["batch_split"]["idle_replicas"] == 23


def test_report_dir_plots_the_largest_shard_of_an_uneven_batch() -> None:
    """64 samples over 25 replicas: the simulated replica holds 3 (14 x 3 + 11 x 2), and the
    per-op points of ``--dojo-report-dir`` are that replica's, not the 2-sample one's."""
    import torch

    from hwmodel.spec.precision import MIXED_BF16
    from pytest_dojo.plugin.fixtures import step_artifacts
    from pytest_dojo.plugin.steps import CapturedStep

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    step = CapturedStep(model, torch.randn(64, 16), name="mlp")
    report = simulate(step, TILE, precision=MIXED_BF16)
    artifacts = step_artifacts(step, TILE, None, report, MIXED_BF16)
    assert artifacts.batch_per_replica == 3
    assert report.batch_split is not None and report.batch_split.largest_shard == 3
