"""Capture one PyTorch training step as a :class:`hwmodel.Workload`.

The step (forward, loss, backward, ``optimizer.step()``) runs once under ``FakeTensorMode``: no
arithmetic and no storage, so any input size captures in seconds. A ``TorchDispatchMode`` on top
(:mod:`pytest_dojo.capture.recorder`) records every aten op that reaches the dispatcher after
autograd.

* Parameters, buffers and inputs are replaced by fake tensors of the same shape and dtype, so the
  model may live on the CPU or on the ``meta`` device (build big models under
  ``with torch.device("meta")``); the caller's model is never modified.
* The optimizer's state is created before recording (:func:`create_optimizer_state`), so the
  captured step is a steady-state step, not the first one that allocates the moments.
* :func:`capture_train_steps` captures several batch sizes of one step, sharing what does not
  depend on the batch (the fake parameters, the optimizer state and the optimizer's records).
* ``mode`` (:mod:`pytest_dojo.capture.modes`) records forward and backward without the optimizer,
  or a no-grad forward pass (inference), instead of the whole training step.
* What eager PyTorch refuses, the capture refuses (a float layer fed integer tensors), and a failure
  is one :class:`~pytest_dojo.errors.CaptureError` line with torch's own message: FakeTensor's
  internal error log is silenced while the step runs.

Not captured: data-dependent ops (``nonzero``, ``.item()`` on activations) raise under fake
tensors: such a model needs a shape-static variant.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.module_tracker import ModuleTracker

from hwmodel import ParameterRecord, Workload
from pytest_dojo.capture.modes import StepMode, check_mode, forward_context, runs_backward, runs_optimizer
from pytest_dojo.capture.optimizer_state import create_optimizer_state
from pytest_dojo.capture.recorder import DispatchRecorder, OptimizerTail, Recorder
from pytest_dojo.capture.storage import dtype_name
from pytest_dojo.capture.torch_context import quiet_torch_logs, torch_threads
from pytest_dojo.errors import CaptureError

OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
LossFunction = Callable[..., torch.Tensor]


def default_optimizer(parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """AdamW with the foreach implementation: one list op per update term, as a fused kernel would."""
    return torch.optim.AdamW(parameters, lr=1e-3, foreach=True)


def default_loss(outputs: Any, targets: Any = None) -> torch.Tensor:
    """Sum of the mean of every floating-point output: gives every output a gradient."""
    leaves = [
        leaf for leaf in pytree.tree_leaves(outputs) if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()
    ]
    if not leaves:
        raise CaptureError("the model returned no floating-point tensor to build a default loss from")
    total = leaves[0].mean()
    for leaf in leaves[1:]:
        total = total + leaf.mean()
    return total


def check_model(model: Any) -> torch.nn.Module:
    """``model`` if it is a ``torch.nn.Module``; otherwise one line naming what was passed."""
    if not isinstance(model, torch.nn.Module):
        raise CaptureError(f"model must be a torch.nn.Module, got {type(model).__qualname__}: {model!r:.60}")
    return model


def leading_batch(example_inputs: Any) -> int:
    """The leading dimension of the first tensor in ``example_inputs``: the global batch."""
    for leaf in pytree.tree_leaves(example_inputs):
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    raise CaptureError("example_inputs holds no tensor with a batch dimension; pass batch_size=")


CAPTURE_PHASES = ("setup", "optimizer_state", "forward", "backward", "optimizer", "records")
"""Where a capture's time goes (seconds, in ``phase_times``): fake parameters and optimizer, the
optimizer's state, the recorded forward (with the loss), backward and optimizer step, and building
the Workload."""


def capture_train_step(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    targets: Any = None,
    loss_fn: LossFunction | None = None,
    optimizer: OptimizerFactory | None = None,
    batch_size: int | None = None,
    name: str | None = None,
    intra_op_threads: int | None = None,
    phase_times: dict[str, float] | None = None,
    mode: StepMode = "train",
) -> Workload:
    """Capture one training step of ``model`` on ``example_inputs`` as a Workload.

    ``example_inputs`` is one global batch: a tensor (``model(x)``), a tuple (``model(*x)``) or a
    dict (``model(**x)``), real or on the ``meta`` device. With ``batch_size``, every input and
    target whose leading dimension equals the global batch is resized to ``batch_size`` first (a
    data-parallel replica's share). ``loss_fn(outputs, targets)`` (or ``loss_fn(outputs)`` without
    targets) defaults to :func:`default_loss`; ``optimizer`` is a factory taking the parameters,
    defaulting to :func:`default_optimizer`. ``intra_op_threads`` sets torch's thread count for the
    capture (restored after): ATen picks some CPU kernels by it, and the recorded GEMMs follow.
    ``phase_times``, if given, receives the seconds spent in each of :data:`CAPTURE_PHASES`.
    ``mode`` (``"train"``, ``"forward_backward"``, ``"inference"``) is what the step runs
    (:mod:`pytest_dojo.capture.modes`); without an optimizer step no optimizer is made.
    """
    (workload,) = capture_train_steps(
        model,
        example_inputs,
        batch_sizes=(batch_size or leading_batch(example_inputs),),
        targets=targets,
        loss_fn=loss_fn,
        optimizer=optimizer,
        name=name,
        intra_op_threads=intra_op_threads,
        phase_times=phase_times,
        mode=mode,
    )
    return workload


def capture_train_steps(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    batch_sizes: Sequence[int],
    targets: Any = None,
    loss_fn: LossFunction | None = None,
    optimizer: OptimizerFactory | None = None,
    name: str | None = None,
    intra_op_threads: int | None = None,
    phase_times: dict[str, float] | None = None,
    mode: StepMode = "train",
) -> tuple[Workload, ...]:
    """The step at each per-replica batch of ``batch_sizes``, each equal to what
    :func:`capture_train_step` records at that size, for less than the cost of separate captures.

    The fake parameters, the optimizer and its state are made once. The optimizer step sees only
    parameters, gradients and state, none of which depends on the batch: after the first batch, a
    batch whose forward and backward touch the same tensors in the same order reuses the first
    batch's optimizer records instead of running the step again (any other batch runs it).
    Arguments as for :func:`capture_train_step`.
    """
    check_model(model)
    global_batch = leading_batch(example_inputs)
    if not batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batch_sizes):
        raise CaptureError(f"batch_sizes must be one or more ints >= 1, got {tuple(batch_sizes)!r}")
    network = name or type(model).__name__
    times = dict.fromkeys(CAPTURE_PHASES, 0.0)
    step = _FakeStep(
        model=model,
        global_batch=global_batch,
        loss=loss_fn or default_loss,
        with_targets=targets is not None,
        times=times,
        mode=check_mode(mode),
    )
    workloads: list[Workload] = []
    tail: OptimizerTail | None = None
    with torch_threads(intra_op_threads), quiet_torch_logs(), _collector_paused():
        for batch in batch_sizes:
            recorder = Recorder(tracker=ModuleTracker())
            try:
                state = step.state(optimizer or default_optimizer)
                workload, tail = step.record(recorder, state, batch, (example_inputs, targets), network, tail)
            except CaptureError:
                raise
            except Exception as error:
                raise CaptureError(_explain(network, recorder, error)) from None
            workloads.append(workload)
    if phase_times is not None:
        for phase, seconds in times.items():
            phase_times[phase] = phase_times.get(phase, 0.0) + seconds
    return tuple(workloads)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration (on again after, if it was on).

    A capture allocates hundreds of thousands of short-lived objects (fake tensors, their metadata,
    cache entries), and the collector's passes over them and over everything alive beside them
    took about a tenth of a two-batch HydraNet capture. Paused, it also cannot free a tensor in
    the middle of a step, where a freed reference could change whether autograd steals a gradient
    or copies it: the recorded ops no longer depend on when the collector runs.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class _FakeState:
    """Fake parameters and buffers of the model, and the optimizer over them with its state."""

    mode: FakeTensorMode
    parameters: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer | None


@dataclass(kw_only=True)
class _FakeStep:
    """Training steps of ``model`` on fake tensors, at per-replica shares of ``global_batch``."""

    model: torch.nn.Module
    global_batch: int
    loss: LossFunction
    with_targets: bool
    times: dict[str, float]
    mode: StepMode = "train"
    made: _FakeState | None = None

    def fake_like(self, tensor: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """A fake CPU tensor with the shape and dtype of ``tensor`` (the batch dim resized if asked)."""
        shape = list(tensor.shape)
        if batch is not None and shape and shape[0] == self.global_batch:
            shape[0] = batch
        return torch.empty(shape, dtype=tensor.dtype, device="cpu")

    def state(self, make_optimizer: OptimizerFactory) -> _FakeState:
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
        self.made = _FakeState(mode=mode, parameters=parameters, buffers=buffers, optimizer=optimizer)
        return self.made

    def record(
        self,
        recorder: Recorder,
        state: _FakeState,
        batch: int,
        batch_data: tuple[Any, Any],
        network: str,
        tail: OptimizerTail | None,
    ) -> tuple[Workload, OptimizerTail]:
        """The step at ``batch`` samples; the optimizer's records come from ``tail`` where they may."""
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
            self.times["forward"] += time.perf_counter() - start
            start = time.perf_counter()
            if loss_value is not None:
                loss_value.backward()  # type: ignore[no-untyped-call]
            self.times["backward"] += time.perf_counter() - start
            start = time.perf_counter()
            gradients = [p.grad for p in state.parameters.values() if p.grad is not None]
            reused = state.optimizer is not None and tail is not None and tail.fits(recorder, gradients)
            if not reused and state.optimizer is not None:
                recorder.phase = "optimizer"
                state.optimizer.step()
            self.times["optimizer"] += time.perf_counter() - start
        start = time.perf_counter()
        # The parameter records mark the gradients' storages, so they come before the tensor table.
        parameter_records = _parameter_records(recorder, state.parameters)
        if reused and tail is not None:
            ops, tensors = tail.splice(recorder)
        else:
            ops, tensors = tuple(recorder.ops), recorder.table.records()
            tail = OptimizerTail.of(recorder)
        workload = Workload(
            name=network,
            batch_size=batch,
            ops=ops,
            tensors=tensors,
            parameters=parameter_records,
            optimizer=type(state.optimizer).__name__ if state.optimizer is not None else "none",
            mode=self.mode,
        )
        self.times["records"] += time.perf_counter() - start
        return workload, tail


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


def _explain(network: str, recorder: Recorder, error: Exception) -> str:
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
