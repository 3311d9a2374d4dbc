"""Time real training steps and their aten ops, on the CPU or a CUDA device.

The step is the one :func:`pytest_dojo.capture.capture_train_step` captures: forward, loss,
``backward()``, ``AdamW(foreach=True).step()``; gradients are set to ``None`` before each step
(outside the timed region's ops, as the capture does). On CUDA the forward and loss run under
``torch.autocast(bfloat16)`` when asked, and every time is taken between CUDA events on the
current stream (the GPU timeline, including gaps where the GPU waits for the host).

:class:`OpTimer` is a ``TorchDispatchMode`` at the capture's level (after autograd, views skipped),
so its op names and phases are those of the captured workload; each op is timed around its own
dispatch (:func:`cpu_clock` on the CPU, an event pair on CUDA). Timing each op costs a little per
op, so step times are always measured in separate runs without it.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dojo_networks import NETWORKS, NetworkSpec
from dojo_validation.standard import STANDARD_NETWORKS
from pytest_dojo.capture.recorder import IGNORED_OPS


def all_networks() -> dict[str, NetworkSpec]:
    """Every suite network, then the standard shapes."""
    return {**NETWORKS, **STANDARD_NETWORKS}


@dataclass
class Step:
    """One network, built and fed, ready to train on ``device``."""

    name: str
    model: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    targets: Any
    loss: Callable[[Any, Any], torch.Tensor]
    optimizer: torch.optim.Optimizer
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    phase_hook: Callable[[str], None] | None = field(default=None, repr=False)

    def run(self) -> None:
        """One training step (gradients cleared first)."""
        self.optimizer.zero_grad(set_to_none=True)
        self._phase("forward")
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                outputs = self.model(**self.inputs)
                loss = self.loss(outputs, self.targets)
        else:
            outputs = self.model(**self.inputs)
            loss = self.loss(outputs, self.targets)
        self._phase("backward")
        loss.backward()  # type: ignore[no-untyped-call]
        self._phase("optimizer")
        self.optimizer.step()

    def _phase(self, phase: str) -> None:
        if self.phase_hook is not None:
            self.phase_hook(phase)


def prepare(
    spec: NetworkSpec,
    size: str,
    batch_size: int,
    device: str,
    *,
    autocast_dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Step:
    """Build ``spec`` at ``size`` on ``device`` with a batch of ``batch_size`` and an AdamW."""
    torch.manual_seed(seed)
    target = torch.device(device)
    model = spec.build(size).to(target).train()
    inputs, targets = spec.make_batch(size, batch_size, target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    return Step(
        name=spec.name,
        model=model,
        inputs=inputs,
        targets=targets,
        loss=spec.loss,
        optimizer=optimizer,
        device=target,
        autocast_dtype=autocast_dtype,
    )


def cpu_clock() -> Callable[[], float]:
    """The clock for CPU timings: the calling thread's CPU time when torch runs on one thread.

    On a shared machine, wall-clock includes the time other processes hold the core; with one
    intra-op thread every op (backward included, which runs on the calling thread for CPU
    tensors) executes on this thread, so its CPU time is the step's cost on an idle core. With
    more threads, wall-clock (``perf_counter``) is the only honest clock.
    """
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Step, *, warmup: int, repeats: int, budget_s: float) -> list[float]:
    """Seconds of each of up to ``repeats`` timed steps after ``warmup`` untimed ones.

    Stops early (keeping at least three) once ``budget_s`` of wall-clock is spent.
    """
    for _ in range(warmup):
        step.run()
    synchronize(step.device)
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(repeats):
        if step.device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            begin.record()
            step.run()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        else:
            clock = cpu_clock()
            begin_s = clock()
            step.run()
            times.append(clock() - begin_s)
        if len(times) >= 3 and time.perf_counter() - started > budget_s:
            break
    return times


class OpTimer(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Times every non-view aten op dispatched inside it: ``(name, phase, seconds)`` per op."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.device = device
        self.phase = "forward"
        self._cpu: list[tuple[str, str, float]] = []
        self._cuda: list[tuple[str, str, Any, Any]] = []
        self._clock = cpu_clock()

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = str(func)
        if name in IGNORED_OPS or func.is_view:
            return func(*args, **kwargs)
        if self.device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            begin.record()
            out = func(*args, **kwargs)
            end.record()
            self._cuda.append((name, self.phase, begin, end))
            return out
        begin_s = self._clock()
        out = func(*args, **kwargs)
        self._cpu.append((name, self.phase, self._clock() - begin_s))
        return out

    def records(self) -> list[tuple[str, str, float]]:
        """Every timed op in dispatch order (synchronizes a CUDA device first)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return [(name, phase, begin.elapsed_time(end) / 1e3) for name, phase, begin, end in self._cuda]
        return list(self._cpu)


def time_ops(step: Step, *, repeats: int = 1) -> list[list[tuple[str, str, float]]]:
    """Per-op times of ``repeats`` steps (after the caller's warm-up), one list per step."""
    runs = []
    for _ in range(repeats):
        timer = OpTimer(step.device)
        step.phase_hook = timer.set_phase
        try:
            with timer:
                step.run()
        finally:
            step.phase_hook = None
        runs.append(timer.records())
    return runs


def median_op_times(runs: list[list[tuple[str, str, float]]]) -> list[tuple[str, str, float]]:
    """Per op, the median over runs (runs of one step dispatch the same ops in the same order)."""
    first = runs[0]
    if any(len(run) != len(first) for run in runs):
        return first
    return [(name, phase, statistics.median(run[i][2] for run in runs)) for i, (name, phase, _) in enumerate(first)]


def environment(device: torch.device) -> dict[str, Any]:
    """Machine and library facts stored beside every measurement."""
    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "clock": "cuda events" if device.type == "cuda" else cpu_clock().__name__,
        "device": str(device),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(
            gpu=properties.name,
            gpu_memory_bytes=int(properties.total_memory),
            gpu_multiprocessors=int(properties.multi_processor_count),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),  # type: ignore[no-untyped-call]
        )
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
