"""Recording one training step on fake tensors, at one or several per-replica batch sizes.

:class:`FakeStep` makes the fake parameters, buffers and optimizer (with its state) once and records the
step at a batch; :class:`Batches` records it at several, sharing the optimizer's records between batches,
and where a second CPU is free, records all but the first in a forked child (:mod:`pytest_dojo.capture.forked`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.module_tracker import ModuleTracker

from hwmodel import OpRecord, ParameterRecord, TensorRecord, Workload
from pytest_dojo.capture.forked import ForkedCall, can_fork
from pytest_dojo.capture.modes import StepMode, forward_context, runs_backward, runs_optimizer
from pytest_dojo.capture.optimizer_state import create_optimizer_state
from pytest_dojo.capture.recorder import BeforeOptimizer, DispatchRecorder, OptimizerTail, Recorder
from pytest_dojo.capture.storage import dtype_name
from pytest_dojo.errors import CaptureError

OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
LossFunction = Callable[..., torch.Tensor]


@dataclass(kw_only=True)
class Batches:
    """Records one step at several batch sizes, here or partly in a forked child."""

    step: FakeStep
    optimizer: OptimizerFactory
    data: tuple[Any, Any]
    name: str

    def record(self, sizes: tuple[int, ...], *, processes: int | None) -> list[Workload]:
        """The step at each of ``sizes``: the first here; the others in a forked child where
        ``processes`` allows one, else (or if the child fails) here after the first."""
        first, remaining = self.begin(sizes, processes=processes)
        return first if remaining is None else first + remaining.result()

    def begin(self, sizes: tuple[int, ...], *, processes: int | None) -> tuple[list[Workload], Remaining | None]:
        """The step at the first of ``sizes``, recorded here, and the others still being recorded by
        a forked child (:class:`Remaining`), so that the caller may go on meanwhile; without a
        child, every size is recorded here and nothing remains (None)."""
        self._state()
        forking = len(sizes) > 1 and (can_fork() if processes is None else processes > 1)
        child = self._fork(sizes[1:]) if forking else None
        if child is None:
            return self.here(sizes, None)[0], None
        try:
            start = time.perf_counter()
            first, tail = self.here(sizes[:1], None)
        except BaseException:
            child.close()
            raise
        timeout_s = CHILD_TIMEOUT_S + CHILD_TIMEOUT_FACTOR * len(sizes) * (time.perf_counter() - start)
        return first, Remaining(batches=self, sizes=sizes[1:], child=child, tail=tail, timeout_s=timeout_s)

    def _fork(self, sizes: tuple[int, ...]) -> ForkedCall[ChildAnswer] | None:
        """A child capturing ``sizes``; None where no process could be made."""
        try:
            return ForkedCall(lambda: self._elsewhere(sizes))
        except OSError:
            return None

    def _elsewhere(self, sizes: tuple[int, ...]) -> ChildAnswer:
        """What a forked child sends back: the step at each of ``sizes`` up to its optimizer phase
        (this process adds its own optimizer records), and the seconds it spent by phase."""
        before = dict(self.step.times)
        steps = [
            self.step.record_before_optimizer(Recorder(tracker=ModuleTracker()), self._state(), batch, self.data)
            for batch in sizes
        ]  # whatever fails here, this process records the sizes itself
        return steps, {phase: seconds - before[phase] for phase, seconds in self.step.times.items()}

    def _state(self) -> FakeState:
        try:
            return self.step.state(self.optimizer)
        except CaptureError:
            raise
        except Exception as error:
            raise CaptureError(explain(self.name, Recorder(tracker=ModuleTracker()), error)) from None

    def here(self, sizes: tuple[int, ...], tail: OptimizerTail | None) -> tuple[list[Workload], OptimizerTail | None]:
        """The step at each of ``sizes``, in this process, reusing ``tail``'s optimizer records."""
        workloads: list[Workload] = []
        for batch in sizes:
            recorder = Recorder(tracker=ModuleTracker())
            try:
                workload, tail = self.step.record(recorder, self._state(), batch, self.data, self.name, tail)
            except CaptureError:
                raise
            except Exception as error:
                raise CaptureError(explain(self.name, recorder, error)) from None
            workloads.append(workload)
        return workloads, tail


@dataclass(kw_only=True)
class Remaining:
    """Sizes a forked child records while this process goes on: :meth:`result` waits for them (at
    most ``timeout_s`` from the call) or, if the child fails, records them here with the first
    size's optimizer records ``tail``."""

    batches: Batches
    sizes: tuple[int, ...]
    child: ForkedCall[ChildAnswer]
    tail: OptimizerTail | None
    timeout_s: float

    def result(self) -> list[Workload]:
        """The step at each of :attr:`sizes` (call once): the child's, each finished with the
        optimizer records of the size before it, as one process reuses them; a size they do not
        fit, and every size if the child failed, recorded here."""
        try:
            answer = self.child.result(self.timeout_s)
        finally:
            self.child.close()
        steps = _checked(answer, self.sizes, self.batches.step.times)
        if steps is None:
            return self.batches.here(self.sizes, self.tail)[0]
        workloads: list[Workload] = []
        tail, state = self.tail, self.batches.step.made
        assert state is not None
        for before in steps:
            finished = self.batches.step.finish(before, state, self.batches.name, tail)
            if finished is None:
                here, tail = self.batches.here((before.batch_size,), tail)
                finished = here[0]
            workloads.append(finished)
        return workloads


ChildAnswer = tuple[list[BeforeOptimizer], dict[str, float]]
"""A forked child's steps up to their optimizer phase, and its seconds by capture phase."""


def _checked(answer: object, sizes: tuple[int, ...], times: dict[str, float]) -> list[BeforeOptimizer] | None:
    """A child's steps at ``sizes``, its phase seconds added to ``times``; None for anything else
    (the child failed, or sent what is not that)."""
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return None
    steps, child_times = answer
    if not (
        isinstance(steps, list)
        and all(isinstance(step, BeforeOptimizer) for step in steps)
        and tuple(step.batch_size for step in steps) == sizes
        and isinstance(child_times, dict)
        and set(child_times) == set(times)
    ):
        return None
    for phase, seconds in child_times.items():
        times[phase] += float(seconds)
    return steps


CHILD_TIMEOUT_S = 60.0
CHILD_TIMEOUT_FACTOR = 4.0
"""A forked child gets ``CHILD_TIMEOUT_S`` plus this many times the parent's own capture per
size: then it is taken to be stuck, ended, and its sizes captured here."""


@dataclass(frozen=True)
class FakeState:
    """Fake parameters and buffers of the model, and the optimizer over them with its state."""

    mode: FakeTensorMode
    parameters: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer | None


@dataclass(kw_only=True)
class FakeStep:
    """Training steps of ``model`` on fake tensors, at per-replica shares of ``global_batch``."""

    model: torch.nn.Module
    global_batch: int
    loss: LossFunction
    with_targets: bool
    times: dict[str, float]
    mode: StepMode = "train"
    made: FakeState | None = None

    def fake_like(self, tensor: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """A fake CPU tensor with the shape and dtype of ``tensor`` (the batch dim resized if asked)."""
        shape = list(tensor.shape)
        if batch is not None and shape and shape[0] == self.global_batch:
            shape[0] = batch
        return torch.empty(shape, dtype=tensor.dtype, device="cpu")

    def state(self, make_optimizer: OptimizerFactory) -> FakeState:
        """The fake parameters, buffers and optimizer (made on first use), gradients cleared."""
        if self.made is not None:
            for parameter in self.made.parameters.values():
                parameter.grad = None
            return self.made
        start = time.perf_counter()
        mode = FakeTensorMode()
        with mode:
            parameters = {
                n: self.fake_like(p).requires_grad_(p.requires_grad) for n, p in self.model.named_parameters()
            }
            buffers = {n: self.fake_like(b) for n, b in self.model.named_buffers()}
            trainable = [p for p in parameters.values() if p.requires_grad]
            optimizer = make_optimizer(trainable) if runs_optimizer(self.mode) else None
            self.times["setup"] += time.perf_counter() - start
            start = time.perf_counter()
            if optimizer is not None:
                create_optimizer_state(optimizer, trainable)
            self.times["optimizer_state"] += time.perf_counter() - start
        self.made = FakeState(mode=mode, parameters=parameters, buffers=buffers, optimizer=optimizer)
        return self.made

    def record(
        self,
        recorder: Recorder,
        state: FakeState,
        batch: int,
        batch_data: tuple[Any, Any],
        network: str,
        tail: OptimizerTail | None,
    ) -> tuple[Workload, OptimizerTail]:
        """The step at ``batch`` samples; the optimizer's records come from ``tail`` where they may."""
        reused = self._run(recorder, state, batch, batch_data, tail, optimize=True)[2]
        start = time.perf_counter()
        # The parameter records mark the gradients' storages, so they come before the tensor table.
        parameter_records = _parameter_records(recorder, state.parameters)
        if reused and tail is not None:
            ops, tensors = tail.splice(tuple(recorder.ops), recorder.table.records())
        else:
            ops, tensors = tuple(recorder.ops), recorder.table.records()
            tail = OptimizerTail.of(recorder)
        workload = self._workload(network, batch, state, ops, tensors, parameter_records)
        self.times["records"] += time.perf_counter() - start
        return workload, tail

    def record_before_optimizer(
        self, recorder: Recorder, state: FakeState, batch: int, batch_data: tuple[Any, Any]
    ) -> BeforeOptimizer:
        """The step at ``batch`` samples up to its optimizer phase, which is not run (a process
        that has the optimizer's records finishes it: :meth:`finish`)."""
        storages, gradients_recorded, _ = self._run(recorder, state, batch, batch_data, None, optimize=False)
        start = time.perf_counter()
        parameter_records = _parameter_records(recorder, state.parameters)
        before = BeforeOptimizer(
            batch_size=batch,
            ops=tuple(recorder.ops),
            tensors=recorder.table.records(),
            parameters=parameter_records,
            storages=storages,
            gradients_recorded=gradients_recorded,
        )
        self.times["records"] += time.perf_counter() - start
        return before

    def finish(
        self, before: BeforeOptimizer, state: FakeState, network: str, tail: OptimizerTail | None
    ) -> Workload | None:
        """``before`` followed by ``tail``'s optimizer records, as :meth:`record` would reuse them;
        None where they do not fit it (the step must be recorded with its own optimizer step)."""
        if state.optimizer is None:
            ops, tensors = before.ops, before.tensors
        elif tail is not None and tail.fits(before.storages, before.gradients_recorded, before.ops):
            ops, tensors = tail.splice(before.ops, before.tensors)
        else:
            return None
        return self._workload(network, before.batch_size, state, ops, tensors, before.parameters)

    def _workload(
        self,
        network: str,
        batch: int,
        state: FakeState,
        ops: tuple[OpRecord, ...],
        tensors: tuple[TensorRecord, ...],
        parameters: tuple[ParameterRecord, ...],
    ) -> Workload:
        optimizer = type(state.optimizer).__name__ if state.optimizer is not None else "none"
        return Workload(
            name=network,
            batch_size=batch,
            ops=ops,
            tensors=tensors,
            parameters=parameters,
            optimizer=optimizer,
            mode=self.mode,
        )

    def _run(
        self,
        recorder: Recorder,
        state: FakeState,
        batch: int,
        batch_data: tuple[Any, Any],
        tail: OptimizerTail | None,
        *,
        optimize: bool,
    ) -> tuple[int, bool, bool]:
        """Run the step at ``batch`` under ``recorder``: forward, loss, backward, then, where
        ``optimize`` and ``tail`` does not fit it, the optimizer step. Returns the storages seen
        after backward, whether every gradient is among them, and whether ``tail`` fits."""
        with state.mode:
            fake_inputs, fake_targets = pytree.tree_map_only(
                torch.Tensor, lambda t: self.fake_like(t, batch), batch_data
            )
        _register_storages(recorder, state.parameters, state.buffers, (fake_inputs, fake_targets), state.optimizer)
        with state.mode, recorder.tracker, DispatchRecorder(recorder):
            start = time.perf_counter()
            with forward_context(self.mode):
                outputs = _call(self.model, {**state.parameters, **state.buffers}, fake_inputs)
            loss_value = None
            if runs_backward(self.mode):
                loss_value = self.loss(outputs, fake_targets) if self.with_targets else self.loss(outputs)
                recorder.phase = "backward"
            else:  # the caller holds what inference returns to the step's end
                recorder.hold(outputs)
            self.times["forward"] += time.perf_counter() - start
            start = time.perf_counter()
            if loss_value is not None:
                loss_value.backward()  # type: ignore[no-untyped-call]
            self.times["backward"] += time.perf_counter() - start
            start = time.perf_counter()
            gradients = [p.grad for p in state.parameters.values() if p.grad is not None]
            storages = len(recorder.table.storages)
            recorded = all(recorder.table.has(gradient) for gradient in gradients)
            reused = state.optimizer is not None and tail is not None and tail.fits(storages, recorded, recorder.ops)
            if optimize and not reused and state.optimizer is not None:
                recorder.phase = "optimizer"
                state.optimizer.step()
            self.times["optimizer"] += time.perf_counter() - start
        return storages, recorded, reused


def _register_storages(
    recorder: Recorder,
    parameters: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    inputs: Any,
    optimizer: torch.optim.Optimizer | None,
) -> None:
    """Storages that exist before the first op, with their kinds."""
    for tensor in parameters.values():
        recorder.storage_of(tensor, "parameter")
    for tensor in buffers.values():
        recorder.storage_of(tensor, "buffer")
    for leaf in pytree.tree_leaves(inputs):
        if isinstance(leaf, torch.Tensor):
            recorder.storage_of(leaf, "input")
    for state in optimizer.state.values() if optimizer is not None else ():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                recorder.storage_of(value, "optimizer_state")


def _parameter_records(recorder: Recorder, parameters: Mapping[str, torch.Tensor]) -> tuple[ParameterRecord, ...]:
    """Trainable parameters with the op after which each gradient is ready."""
    records = []
    for parameter_name, tensor in parameters.items():
        if not tensor.requires_grad:
            continue
        grad_ready = -1
        if tensor.grad is not None:
            grad_storage = recorder.storage_of(tensor.grad, "gradient")
            grad_storage.kind = "gradient"
            grad_ready = recorder.last_backward_write(grad_storage)
        records.append(
            ParameterRecord(
                name=parameter_name, numel=tensor.numel(), dtype=dtype_name(tensor.dtype), grad_ready_op=grad_ready
            )
        )
    return tuple(records)


def _call(model: torch.nn.Module, state: Mapping[str, torch.Tensor], inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return torch.func.functional_call(model, dict(state), (), inputs)
    if isinstance(inputs, tuple):
        return torch.func.functional_call(model, dict(state), inputs)
    return torch.func.functional_call(model, dict(state), (inputs,))


def explain(network: str, recorder: Recorder, error: Exception) -> str:
    """One line that says where the capture stopped and why."""
    message = (str(error).strip().splitlines() or [""])[0]
    kind = type(error).__name__
    hint = ""
    if "DataDependent" in kind or "DynamicOutputShape" in kind or "data-dependent" in message.lower():
        hint = (
            " (a data-dependent op such as nonzero() or .item() cannot run under FakeTensorMode:"
            " use a shape-static variant)"
        )
    last = recorder.ops[-1].name if recorder.ops else "the first op"
    return f"cannot capture {network}: {kind} in the {recorder.phase} phase after {last}: {message}{hint}"
