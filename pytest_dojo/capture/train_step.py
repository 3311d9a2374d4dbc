"""Capture one PyTorch training step as a :class:`hwmodel.Workload`.

The step (forward, loss, backward, ``optimizer.step()``) runs once under ``FakeTensorMode``: no
arithmetic and no storage, so any input size captures in seconds. A ``TorchDispatchMode`` on top
(:mod:`pytest_dojo.capture.recorder`) records every aten op that reaches the dispatcher after
autograd.

* Parameters, buffers and inputs are replaced by fake tensors of the same shape and dtype, so the
  model may live on the CPU or on the ``meta`` device (build big models under
  ``with torch.device("meta")``); the caller's model is never modified.
* The optimizer's state is created before recording (one step on zero gradients), so the captured
  step is a steady-state step, not the first one that allocates the moments.
* What eager PyTorch refuses, the capture refuses (a float layer fed integer tensors), and a failure
  is one :class:`~pytest_dojo.errors.CaptureError` line with torch's own message: FakeTensor's
  internal error log is silenced while the step runs.

Not captured: data-dependent ops (``nonzero``, ``.item()`` on activations) raise under fake
tensors: such a model needs a shape-static variant.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.module_tracker import ModuleTracker

from hwmodel import ParameterRecord, Workload
from pytest_dojo.capture.recorder import DispatchRecorder, Recorder
from pytest_dojo.capture.storage import dtype_name
from pytest_dojo.errors import CaptureError

OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
LossFunction = Callable[..., torch.Tensor]

QUIET_LOGGERS = ("torch._subclasses.fake_tensor",)
"""Loggers that print internal tracebacks for an op that fails under fake tensors; the failure
itself reaches the user once, as the capture error's message."""


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


@contextlib.contextmanager
def quiet_torch_logs() -> Iterator[None]:
    """Silence :data:`QUIET_LOGGERS` for the duration; their levels are restored after."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` (unchanged for None), restored after."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
) -> Workload:
    """Capture one training step of ``model`` on ``example_inputs`` as a Workload.

    ``example_inputs`` is one global batch: a tensor (``model(x)``), a tuple (``model(*x)``) or a
    dict (``model(**x)``), real or on the ``meta`` device. With ``batch_size``, every input and
    target whose leading dimension equals the global batch is resized to ``batch_size`` first (a
    data-parallel replica's share). ``loss_fn(outputs, targets)`` (or ``loss_fn(outputs)`` without
    targets) defaults to :func:`default_loss`; ``optimizer`` is a factory taking the parameters,
    defaulting to :func:`default_optimizer`. ``intra_op_threads`` sets torch's thread count for the
    capture (restored after): ATen picks some CPU kernels by it, and the recorded GEMMs follow.
    """
    check_model(model)
    global_batch = leading_batch(example_inputs)
    step = _FakeStep(
        model=model,
        replica_batch=batch_size or global_batch,
        global_batch=global_batch,
        loss=loss_fn or default_loss,
        with_targets=targets is not None,
    )
    network = name or type(model).__name__
    recorder = Recorder(tracker=ModuleTracker())
    with torch_threads(intra_op_threads), quiet_torch_logs():
        try:
            parameters, optimizer_used = step.run(recorder, example_inputs, targets, optimizer or default_optimizer)
        except CaptureError:
            raise
        except Exception as error:
            raise CaptureError(_explain(network, recorder, error)) from None
    # The parameter records mark the gradients' storages, so they come before the tensor table.
    parameter_records = _parameter_records(recorder, parameters)
    return Workload(
        name=network,
        batch_size=step.replica_batch,
        ops=tuple(recorder.ops),
        tensors=recorder.table.records(),
        parameters=parameter_records,
        optimizer=type(optimizer_used).__name__,
    )


@dataclass(frozen=True, kw_only=True)
class _FakeStep:
    """One training step of ``model`` on fake tensors, ``replica_batch`` samples of ``global_batch``."""

    model: torch.nn.Module
    replica_batch: int
    global_batch: int
    loss: LossFunction
    with_targets: bool

    def fake_like(self, tensor: torch.Tensor, resize: bool = False) -> torch.Tensor:
        """A fake CPU tensor with the shape and dtype of ``tensor`` (the batch dim resized if asked)."""
        shape = list(tensor.shape)
        if resize and shape and shape[0] == self.global_batch:
            shape[0] = self.replica_batch
        return torch.empty(shape, dtype=tensor.dtype, device="cpu")

    def run(
        self, recorder: Recorder, example_inputs: Any, targets: Any, make_optimizer: OptimizerFactory
    ) -> tuple[dict[str, torch.Tensor], torch.optim.Optimizer]:
        """Record the step; returns the fake parameters (with their gradients) and the optimizer."""
        fake_mode = FakeTensorMode()
        with fake_mode:
            parameters = {
                n: self.fake_like(p).requires_grad_(p.requires_grad) for n, p in self.model.named_parameters()
            }
            buffers = {n: self.fake_like(b) for n, b in self.model.named_buffers()}
            fake_inputs, fake_targets = pytree.tree_map_only(
                torch.Tensor, lambda t: self.fake_like(t, resize=True), (example_inputs, targets)
            )
            trainable = [p for p in parameters.values() if p.requires_grad]
            optimizer = make_optimizer(trainable)
            _initialise_optimizer_state(optimizer, trainable)
        _register_storages(recorder, parameters, buffers, (fake_inputs, fake_targets), optimizer)
        with fake_mode, recorder.tracker, DispatchRecorder(recorder):
            outputs = _call(self.model, {**parameters, **buffers}, fake_inputs)
            loss_value = self.loss(outputs, fake_targets) if self.with_targets else self.loss(outputs)
            recorder.phase = "backward"
            loss_value.backward()  # type: ignore[no-untyped-call]
            recorder.phase = "optimizer"
            optimizer.step()
        return parameters, optimizer


def _register_storages(
    recorder: Recorder,
    parameters: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    inputs: Any,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Storages that exist before the first op, with their kinds."""
    for tensor in parameters.values():
        recorder.storage_of(tensor, "parameter")
    for tensor in buffers.values():
        recorder.storage_of(tensor, "buffer")
    for leaf in pytree.tree_leaves(inputs):
        if isinstance(leaf, torch.Tensor):
            recorder.storage_of(leaf, "input")
    for state in optimizer.state.values():
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


def _initialise_optimizer_state(optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor]) -> None:
    """Run one step on zero gradients so the moments exist before the recorded step."""
    for parameter in parameters:
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


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
