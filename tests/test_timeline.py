"""The scheduler's pieces against hand-worked schedules, and the Chrome/Perfetto trace export."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from synthetic_workloads import chain_workload

from hwmodel import Plan, make_system, simulate
from hwmodel.step.simulate import evaluate
from hwmodel.step.timeline import balance_stages, bucket_schedule, one_f_one_b
from hwmodel.step.trace import chrome_trace, step_trace, validate_chrome_trace


def test_buckets_wait_for_their_gradients_and_for_each_other() -> None:
    starts, ends = bucket_schedule(np.array([1.0, 2.0, 10.0]), np.array([3.0, 1.0, 0.5]))
    assert starts.tolist() == [1.0, 4.0, 10.0]
    assert ends.tolist() == [4.0, 5.0, 10.5]


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("micro_batches", [1, 2, 4, 8])
def test_one_f_one_b_of_equal_stages_takes_m_plus_p_minus_1_slots(stages: int, micro_batches: int) -> None:
    """Narayanan et al. 2021: (m + p - 1)(F + B) without transfers."""
    schedule = one_f_one_b(np.full(stages, 1.0), np.full(stages, 2.0), 0.0, micro_batches)
    assert schedule.makespan_s == pytest.approx((micro_batches + stages - 1) * 3.0)


def test_one_f_one_b_pays_transfers_on_the_ramp() -> None:
    """Two stages, one micro-batch: F0, send, F1, B1, send, B0 = 2F + 2B + 2t."""
    schedule = one_f_one_b(np.array([1.0, 1.0]), np.array([2.0, 2.0]), 0.5, 1, keep_events=True)
    assert schedule.makespan_s == pytest.approx(7.0)
    assert [(stage, kind) for stage, kind, _, _, _ in schedule.events] == [(0, "F"), (1, "F"), (1, "B"), (0, "B")]


def test_one_f_one_b_interleaves_after_warm_up() -> None:
    """Stage 0 of 2 with 3 micro-batches: one warm-up forward, then F B F B, then the last B."""
    schedule = one_f_one_b(np.ones(2), np.ones(2), 0.0, 3, keep_events=True)
    order = [(kind, batch) for stage, kind, batch, _, _ in sorted(schedule.events, key=lambda e: e[3]) if stage == 0]
    assert order == [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)]


def _best_bottleneck(weights: list[float], stages: int) -> float:
    best = float("inf")
    for cuts in itertools.combinations(range(1, len(weights)), stages - 1):
        bounds = (0, *cuts, len(weights))
        best = min(best, max(sum(weights[a:b]) for a, b in itertools.pairwise(bounds)))
    return best


@pytest.mark.parametrize(
    ("weights", "stages"),
    [
        ([1, 1, 1, 1, 4], 2),
        ([5, 1, 1, 1, 1, 1], 3),
        ([2, 2, 2, 2, 2, 2], 3),
        ([1, 9, 1, 9, 1], 4),
        ([3, 1, 4, 1, 5, 9, 2, 6], 4),
    ],
)
def test_stage_balancing_matches_brute_force(weights: list[float], stages: int) -> None:
    starts = balance_stages(np.array(weights, dtype=np.float64), stages)
    bounds = [*starts, len(weights)]
    assert len(starts) == stages and starts[0] == 0 and all(a < b for a, b in itertools.pairwise(bounds))
    worst = max(sum(weights[a:b]) for a, b in itertools.pairwise(bounds))
    assert worst == pytest.approx(_best_bottleneck(weights, stages))


@pytest.mark.parametrize(
    ("mesh", "plan"),
    [
        ("1x4", Plan(data_parallel=4)),
        ("1x4", Plan(data_parallel=2, tensor_parallel=2)),
        ("1x4", Plan(data_parallel=1, pipeline_parallel=4, micro_batches=4)),
        ("2x4", Plan(data_parallel=2, tensor_parallel=2, pipeline_parallel=2, micro_batches=2)),
    ],
)
def test_trace_is_well_formed_for_perfetto(mesh: str, plan: Plan) -> None:
    workload = chain_workload(layers=4, batch=64, width=1024)
    document = step_trace(workload, make_system("d1", mesh), plan)
    assert validate_chrome_trace(document) == []
    text = json.dumps(document)
    events = json.loads(text)["traceEvents"]
    complete = [event for event in events if event["ph"] == "X"]
    assert complete and all(event["dur"] >= 0 and event["ts"] >= 0 for event in complete)
    assert [event["ts"] for event in complete] == sorted(event["ts"] for event in complete)
    names = {event["args"]["name"] for event in events if event["ph"] == "M" and event["name"] == "thread_name"}
    assert "compute" in names
    step_us = simulate(workload, make_system("d1", mesh), plan=plan).step_time_s * 1e6
    assert max(event["ts"] + event["dur"] for event in complete) <= step_us * (1 + 1e-9)


def test_compute_track_of_a_replica_holds_every_op_back_to_back() -> None:
    workload = chain_workload(layers=3, batch=64, width=512)
    result = evaluate(workload, make_system("d1", "1x2"), Plan(data_parallel=2), keep_timeline=True)
    assert result.timeline is not None
    compute = [interval for interval in result.timeline.intervals if interval.track == "chip/compute"]
    assert len(compute) == len(workload.ops)
    collectives = [interval for interval in result.timeline.intervals if interval.track == "chip/data-parallel"]
    assert collectives, "the gradient all-reduce appears on its own track"
    assert result.timeline.classes == {"chip": 2}
    optimizer = [interval for interval in compute if interval.category == "optimizer"]
    last_bucket_end = max(interval.start_s + interval.duration_s for interval in collectives)
    assert min(interval.start_s for interval in optimizer) >= last_bucket_end * (1 - 1e-12)


def test_validator_reports_what_perfetto_would_reject() -> None:
    timeline = evaluate(chain_workload(), make_system("d1", "1x1"), Plan(data_parallel=1), keep_timeline=True).timeline
    assert timeline is not None
    document = chrome_trace(timeline)
    complete = [event for event in document["traceEvents"] if event["ph"] == "X"]
    complete[0]["dur"] = -1.0
    complete[1]["ts"], complete[2]["ts"] = complete[2]["ts"] + 5.0, complete[1]["ts"]
    problems = validate_chrome_trace(document)
    assert any("negative time" in problem for problem in problems)
    assert any("not sorted" in problem for problem in problems)
    assert validate_chrome_trace({"events": []}) == ["the document must be an object with a 'traceEvents' list"]
    assert validate_chrome_trace(
        {"traceEvents": [{"ph": "X", "name": "x", "pid": 1, "tid": 1, "ts": float("nan"), "dur": 1.0}]}
    )[0].startswith("not serializable")


def test_same_inputs_give_the_same_report_and_trace() -> None:
    system = make_system("d1", "2x4")
    plan = Plan(data_parallel=2, tensor_parallel=2, pipeline_parallel=2, micro_batches=2)
    first = step_trace(chain_workload(layers=4, batch=64, width=1024), system, plan)
    second = step_trace(chain_workload(layers=4, batch=64, width=1024), system, plan)
    assert json.dumps(first) == json.dumps(second)
