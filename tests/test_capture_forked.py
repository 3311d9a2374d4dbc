"""A forked child captures the sizes after the first: the same workloads as one process, and a child
that fails, hangs or cannot run leaves the capture to this process."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from pytest_dojo.capture import fake_step, forked
from pytest_dojo.capture.forked import ForkedCall
from pytest_dojo.capture.train_step import begin_train_steps, capture_train_steps
from pytest_dojo.plugin.steps import CapturedStep

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available")


class BatchNormCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.head(self.features(images).flatten(1)), dim=-1)


def capture(batches: tuple[int, ...], processes: int | None) -> tuple[Any, ...]:
    return capture_train_steps(BatchNormCnn(), torch.randn(8, 3, 8, 8), batch_sizes=batches, processes=processes)


Call = Callable[[], Any]


def counting_forks(monkeypatch: pytest.MonkeyPatch, child: Callable[[Call], Call]) -> list[int]:
    """Replace the capture's ForkedCall by one whose child runs ``child(call)``; count the forks."""
    forks: list[int] = []

    class Counted(ForkedCall[Any]):
        def __init__(self, call: Callable[[], Any]) -> None:
            forks.append(1)
            super().__init__(child(call))

    monkeypatch.setattr(fake_step, "ForkedCall", Counted)
    return forks


def test_a_forked_call_sends_back_its_value() -> None:
    assert ForkedCall(lambda: {"batch": [1, 2], "name": "net"}).result(60.0) == {"batch": [1, 2], "name": "net"}


def test_a_child_that_raises_gives_none() -> None:
    assert ForkedCall(lambda: 1 // 0).result(60.0) is None


def test_a_child_past_its_timeout_is_ended() -> None:
    start = time.monotonic()
    call = ForkedCall(lambda: time.sleep(60))
    pid = call.pid
    assert call.result(0.2) is None
    assert time.monotonic() - start < 30
    with pytest.raises(ChildProcessError):
        os.waitpid(pid or -1, os.WNOHANG)


def test_the_forked_capture_equals_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizes 3, 2 and 3 (the child captures 2 and 3): each workload as one process records it."""
    forks = counting_forks(monkeypatch, lambda call: call)
    together = capture((3, 2, 3), processes=2)
    assert forks == [1]
    assert together == capture((3, 2, 3), processes=1)
    assert forks == [1]


@pytest.mark.parametrize(
    "broken",
    [lambda call: lambda: 1 // 0, lambda call: lambda: os._exit(3), lambda call: lambda: "not workloads"],
    ids=["raises", "exits", "answers-nonsense"],
)
def test_a_failed_child_leaves_the_capture_here(monkeypatch: pytest.MonkeyPatch, broken: Any) -> None:
    counting_forks(monkeypatch, broken)
    assert capture((2, 5), processes=2) == capture((2, 5), processes=1)


class PerSampleLoop(nn.Module):
    """A step whose ops depend on the batch: one linear call per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.linear(sample) for sample in inputs])


def test_a_childs_step_that_the_optimizer_records_do_not_fit_is_recorded_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child records up to the optimizer; where the first size's optimizer records do not fit its
    step (other ops), this process records that size with its own optimizer step."""
    finished: list[bool] = []
    finish = fake_step.FakeStep.finish

    def counted(self: fake_step.FakeStep, *arguments: Any) -> Any:
        workload = finish(self, *arguments)
        finished.append(workload is not None)
        return workload

    monkeypatch.setattr(fake_step.FakeStep, "finish", counted)
    sizes, inputs = (2, 3, 3), torch.randn(4, 6)
    forked = capture_train_steps(PerSampleLoop(), inputs, batch_sizes=sizes, processes=2)
    assert finished == [False, True]
    assert forked == capture_train_steps(PerSampleLoop(), inputs, batch_sizes=sizes, processes=1)


def test_without_a_second_cpu_nothing_is_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    forks = counting_forks(monkeypatch, lambda call: call)
    monkeypatch.setattr(fake_step, "can_fork", lambda: False)
    capture((2, 5), processes=None)
    capture((2,), processes=2)
    assert forks == []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert not forked.can_fork()


SEARCHES = """
import torch

def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))

def test_search(dojo):
    dojo.train_step(mlp(), torch.randn(48, 32), name="mlp", plan="auto")

def test_other_search(dojo):
    dojo.train_step(mlp(), torch.randn(40, 32), name="mlp40", plan="auto")
"""


@pytest.mark.slow  # two pytest processes and two xdist workers, each importing torch
def test_plan_searches_under_xdist_match_a_serial_run(pytester: pytest.Pytester) -> None:
    """Searches whose two-size captures fork, in xdist workers and in one process: the same results."""
    pytester.makepyfile(test_searches=SEARCHES)
    documents = []
    for arguments in (("-p", "no:randomly"), ("-n", "2")):
        options = ("--dojo-mesh=2x4", "-p", "no:cacheprovider", "--dojo-json=r.json")
        result = pytester.runpytest_subprocess(*options, *arguments)
        result.assert_outcomes(passed=2)
        document = json.loads((pytester.path / "r.json").read_text())
        for entry in document["results"]:
            entry.pop("capture_s")
        documents.append(sorted(document["results"], key=lambda entry: entry["nodeid"]))
    assert documents[0] == documents[1]


def test_a_fork_that_fails_leaves_the_capture_here(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_process() -> int:
        raise BlockingIOError("no process can be made")

    monkeypatch.setattr(os, "fork", no_process)
    assert capture((2, 5), processes=2) == capture((2, 5), processes=1)


def test_a_dropped_call_ends_its_child() -> None:
    """A call whose result is never asked for ends its child once it is garbage-collected."""
    call = ForkedCall(lambda: time.sleep(60))
    pid = call.pid
    del call
    with pytest.raises(ChildProcessError):
        os.waitpid(pid or -1, os.WNOHANG)


def test_the_first_size_is_answered_while_the_child_records_the_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """``begin_train_steps`` returns the first size before the child's sizes are collected, and the
    two halves are what one process records."""
    forks = counting_forks(monkeypatch, lambda call: call)
    first, rest = begin_train_steps(BatchNormCnn(), torch.randn(8, 3, 8, 8), batch_sizes=(2, 5), processes=2)
    assert forks == [1]
    assert [workload.batch_size for workload in first] == [2]
    assert first + rest() == capture((2, 5), processes=1)


def test_a_prepared_step_collects_the_childs_size_when_another_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forks = counting_forks(monkeypatch, lambda call: call)
    monkeypatch.setattr(fake_step, "can_fork", lambda: True)
    step = CapturedStep(BatchNormCnn(), torch.randn(8, 3, 8, 8))
    step.prepare((2, 4, 6))
    assert step.workload(2).batch_size == 2
    assert forks == [1]
    assert sorted(step._anchors) == [2]
    assert step.workload(6) == capture((6,), processes=1)[0]
    assert sorted(step._anchors) == [2, 3]
    assert (step.capture_calls, step.fresh_captures, step.derived_batches) == (1, 2, 1)
