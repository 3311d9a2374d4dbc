"""Wall-clock timing of the real training step on the host, through pytest-benchmark.

The ``dojo_wallclock`` fixture runs ``model``'s step (forward, loss, backward, optimizer) for real,
with ``benchmark.pedantic`` (warm-up rounds, one iteration per round, a fixed number of torch
threads), and keeps every round's wall-clock time and the calling thread's CPU time for the
results file and the noise-aware comparison of :mod:`pytest_dojo.plugin.noise`. With one torch thread
(the default) the step runs on the calling thread, so its CPU time is the step's work without the
time other processes took from it: the comparison uses it (see ``docs/gating.md``). The
simulated figures of the same step go into the benchmark's ``extra_info`` so both land side by
side in pytest-benchmark's JSON.

Torch is imported lazily, only when a test asks for a wall-clock step. Under pytest-xdist,
pytest-benchmark switches itself off; the fixture still times its own rounds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Unpack

import pytest

from pytest_dojo.plugin.session import DOJO_SESSION_KEY, DojoSession
from pytest_dojo.plugin.steps import StepArguments, check_step_arguments

DEFAULT_ROUNDS = 15
DEFAULT_WARMUP_ROUNDS = 2
DEFAULT_THREADS = 1


@dataclass(frozen=True, kw_only=True)
class WallclockResult:
    """Measured rounds of one real training step on the host (seconds per step)."""

    network: str
    batch: int
    threads: int
    round_s: tuple[float, ...]
    round_cpu_s: tuple[float, ...] = ()

    @property
    def median_step_s(self) -> float:
        import statistics

        return statistics.median(self.round_s)

    @property
    def median_samples_per_s(self) -> float:
        return self.batch / self.median_step_s


def _call(model: Any, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def make_real_step(model: Any, inputs: Any, **step: Unpack[StepArguments]) -> Callable[[], None]:
    """A function running one real training step of ``model`` on ``inputs`` (on their device)."""
    from pytest_dojo import capture

    targets, loss_fn, optimizer = step.get("targets"), step.get("loss_fn"), step.get("optimizer")
    loss = loss_fn or capture.default_loss
    step_optimizer = (optimizer or capture.default_optimizer)(list(model.parameters()))

    def run_step() -> None:
        step_optimizer.zero_grad(set_to_none=True)
        outputs = _call(model, inputs)
        value = loss(outputs, targets) if targets is not None or loss_fn is not None else loss(outputs)
        value.backward()
        step_optimizer.step()

    return run_step


class Wallclock:
    """Times real training steps with pytest-benchmark; see :meth:`train_step`."""

    def __init__(self, benchmark: Any, session: DojoSession, nodeid: str) -> None:
        self._benchmark = benchmark
        self._session = session
        self._nodeid = nodeid

    def train_step(
        self,
        model: Any,
        example_inputs: Any,
        *,
        rounds: int = DEFAULT_ROUNDS,
        warmup_rounds: int = DEFAULT_WARMUP_ROUNDS,
        threads: int = DEFAULT_THREADS,
        simulate: bool = True,
        **step: Unpack[StepArguments],
    ) -> WallclockResult:
        """Time ``rounds`` real steps after ``warmup_rounds``, with ``threads`` torch threads.

        Keyword arguments of the step (targets, loss, optimizer, name): as ``dojo.train_step``'s
        (:class:`~pytest_dojo.plugin.steps.StepArguments`). With ``simulate`` (default), the step is
        also simulated on the run's mesh (it appears in the summary) and its figures go into the
        benchmark's ``extra_info``.
        """
        from pytest_dojo import capture
        from pytest_dojo.plugin.fixtures import Dojo

        check_step_arguments("train_step", step)
        _check_counts(rounds=rounds, warmup_rounds=warmup_rounds, threads=threads)
        real_step = make_real_step(
            model,
            example_inputs,
            targets=step.get("targets"),
            loss_fn=step.get("loss_fn"),
            optimizer=step.get("optimizer"),
        )
        times, cpu_times = self._time_rounds(real_step, rounds, warmup_rounds, threads)
        network = step.get("name") or type(model).__name__
        result = WallclockResult(
            network=network,
            batch=capture.leading_batch(example_inputs),
            threads=threads,
            round_s=times,
            round_cpu_s=cpu_times,
        )
        extra: dict[str, Any] = {
            "dojo_measured_samples_per_s": result.median_samples_per_s,
            "dojo_threads": threads,
            "dojo_batch": result.batch,
        }
        if simulate:
            named: StepArguments = {**step, "name": network}
            report = Dojo(self._session).train_step(model, example_inputs, **named)
            extra.update(
                dojo_chip=report.chip,
                dojo_mesh=report.mesh,
                dojo_simulated_samples_per_s=report.samples_per_s,
                dojo_simulated_step_ms=report.step_time_s * 1e3,
                dojo_simulated_mfu=report.mfu,
                dojo_simulated_bound=report.bound,
            )
        self._benchmark.extra_info.update(extra)
        self._session.wallclock.append(self._entry(result))
        return result

    def _time_rounds(
        self, step: Callable[[], None], rounds: int, warmup_rounds: int, threads: int
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Wall-clock and thread CPU seconds of each measured round (warm-up rounds left out)."""
        import torch

        times: list[float] = []
        cpu_times: list[float] = []

        def timed() -> None:
            start, cpu_start = time.perf_counter(), time.thread_time()
            step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.thread_time() - cpu_start)

        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            self._benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
            while len(times) < warmup_rounds + rounds:
                timed()
        finally:
            torch.set_num_threads(previous_threads)
        return tuple(times[warmup_rounds:]), tuple(cpu_times[warmup_rounds:])

    def _entry(self, result: WallclockResult) -> dict[str, Any]:
        """The results file's wall-clock entry of ``result``, numbered within the test."""
        ordinal = sum(
            1
            for entry in self._session.wallclock
            if entry["nodeid"] == self._nodeid and entry["network"] == result.network
        )
        return {
            "nodeid": self._nodeid,
            "network": result.network,
            "ordinal": ordinal,
            "batch": result.batch,
            "threads": result.threads,
            "round_s": list(result.round_s),
            "round_cpu_s": list(result.round_cpu_s),
            "median_samples_per_s": result.median_samples_per_s,
        }


def _check_counts(**counts: int) -> None:
    """Rounds and threads are integers >= 1 (warm-up rounds >= 0); otherwise the test fails in one line."""
    for label, value in counts.items():
        low = 0 if label == "warmup_rounds" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            pytest.fail(f"dojo_wallclock.train_step: {label} must be an integer >= {low}, got {value!r}", pytrace=False)


@pytest.fixture
def dojo_wallclock(request: pytest.FixtureRequest, benchmark: Any) -> Wallclock:
    """Times the real training step on the host: ``dojo_wallclock.train_step(model, inputs)``."""
    return Wallclock(benchmark, request.config.stash[DOJO_SESSION_KEY], request.node.nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Add torch's version, thread count and accelerator to pytest-benchmark's machine info."""
    try:
        machine_info["torch_version"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        machine_info["torch_version"] = None
    torch = sys.modules.get("torch")
    machine_info["torch_threads_default"] = torch.get_num_threads() if torch is not None else None
    machine_info["torch_threads_timed"] = DEFAULT_THREADS
    accelerator = "cpu"
    if torch is not None and torch.cuda.is_available():
        accelerator = torch.cuda.get_device_name(0)
    machine_info["accelerator"] = accelerator
