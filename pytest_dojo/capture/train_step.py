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
  depend on the batch (the fake parameters, the optimizer state and the optimizer's records);
  :func:`begin_train_steps` returns the first size's workload while a forked child still records
  the others.
* ``mode`` (:mod:`pytest_dojo.capture.modes`) records forward and backward without the optimizer,
  or a no-grad forward pass (inference), instead of the whole training step.
* What eager PyTorch refuses, the capture refuses (a float layer fed integer tensors), and a failure
  is one :class:`~pytest_dojo.errors.CaptureError` line with torch's own message: FakeTensor's
  internal error log is silenced while the step runs.

Not captured: data-dependent ops (``nonzero``, ``.item()`` on activations) raise under fake
tensors: such a model needs a shape-static variant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.utils._pytree as pytree

from hwmodel import Workload
from hwmodel.search.collector import collector_paused
from pytest_dojo.capture.fake_step import Batches, FakeStep, LossFunction, OptimizerFactory
from pytest_dojo.capture.modes import StepMode, check_mode
from pytest_dojo.capture.torch_context import quiet_torch_logs, torch_threads
from pytest_dojo.errors import CaptureError

__all__ = ["LossFunction", "OptimizerFactory"]


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
    processes: int | None = None,
) -> tuple[Workload, ...]:
    """The step at each per-replica batch of ``batch_sizes``, each equal to what
    :func:`capture_train_step` records at that size, for less than the cost of separate captures.

    The fake parameters, the optimizer and its state are made once. The optimizer step sees only
    parameters, gradients and state, none of which depends on the batch: after the first batch, a
    batch whose forward and backward touch the same tensors in the same order reuses the first
    batch's optimizer records instead of running the step again (any other batch runs it).
    ``processes``: at most this many processes capture at once; with two, a forked child captures
    every size after the first while this process captures the first
    (:mod:`pytest_dojo.capture.forked`; the result is the same). None: two where
    :func:`~pytest_dojo.capture.forked.can_fork`, else one. Other arguments as for
    :func:`capture_train_step`.
    """
    first, rest = begin_train_steps(
        model,
        example_inputs,
        batch_sizes=batch_sizes,
        targets=targets,
        loss_fn=loss_fn,
        optimizer=optimizer,
        name=name,
        intra_op_threads=intra_op_threads,
        phase_times=phase_times,
        mode=mode,
        processes=processes,
    )
    return first + rest()


def begin_train_steps(
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
    processes: int | None = None,
) -> tuple[tuple[Workload, ...], Callable[[], tuple[Workload, ...]]]:
    """:func:`capture_train_steps` in two halves: the workloads captured by the time it returns
    (the first size's, or every size's where no child is forked), and a call, to be made once,
    that returns the others (waiting for the forked child that records them, or recording them
    here if it fails) and then fills ``phase_times``. Between the two the caller may do other
    work while the child runs; a child whose sizes are never asked for is ended when the call is
    garbage-collected or the process exits."""
    check_model(model)
    global_batch = leading_batch(example_inputs)
    if not batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batch_sizes):
        raise CaptureError(f"batch_sizes must be one or more ints >= 1, got {tuple(batch_sizes)!r}")
    network = name or type(model).__name__
    times = dict.fromkeys(CAPTURE_PHASES, 0.0)
    step = FakeStep(
        model=model,
        global_batch=global_batch,
        loss=loss_fn or default_loss,
        with_targets=targets is not None,
        times=times,
        mode=check_mode(mode),
    )
    batches = Batches(step=step, optimizer=optimizer or default_optimizer, data=(example_inputs, targets), name=network)
    with torch_threads(intra_op_threads), quiet_torch_logs(), collector_paused():
        first, remaining = batches.begin(tuple(batch_sizes), processes=processes)

    def rest() -> tuple[Workload, ...]:
        later: list[Workload] = []
        if remaining is not None:
            with torch_threads(intra_op_threads), quiet_torch_logs(), collector_paused():
                later = remaining.result()
        if phase_times is not None:
            for phase, seconds in times.items():
                phase_times[phase] = phase_times.get(phase, 0.0) + seconds
        return tuple(later)

    return tuple(first), rest
