"""What a captured step runs: a whole training step, forward and backward alone, or inference.

* ``"train"``: forward, loss, backward and ``optimizer.step()`` (the default);
* ``"forward_backward"``: forward, loss and backward, no optimizer (a gradient-accumulation
  micro-step, or a measurement that times ``loss.backward()`` alone);
* ``"inference"``: the forward pass under ``torch.no_grad()``, no loss, no backward. Call
  ``model.eval()`` first for what a deployed model runs (no dropout, batch norm's running
  statistics): the capture keeps the model's own mode.

The mode is recorded in the :class:`hwmodel.Workload` (``Workload.mode``).
"""

from __future__ import annotations

import contextlib
from typing import Literal, get_args

import torch

from pytest_dojo.errors import CaptureError

StepMode = Literal["train", "forward_backward", "inference"]
STEP_MODES: tuple[str, ...] = get_args(StepMode)


def check_mode(mode: object) -> StepMode:
    """``mode`` if it is one of :data:`STEP_MODES`; otherwise one line naming them."""
    if mode not in STEP_MODES:
        raise CaptureError(f"mode must be one of {', '.join(STEP_MODES)}; got {mode!r}")
    checked: StepMode = mode  # type: ignore[assignment]
    return checked


def runs_backward(mode: StepMode) -> bool:
    """Whether a step in ``mode`` computes a loss and its backward pass."""
    return mode != "inference"


def runs_optimizer(mode: StepMode) -> bool:
    """Whether a step in ``mode`` steps an optimizer (and so holds its state)."""
    return mode == "train"


def forward_context(mode: StepMode) -> contextlib.AbstractContextManager[object]:
    """``torch.no_grad()`` for inference (no autograd graph, no saved activations), else nothing."""
    return torch.no_grad() if mode == "inference" else contextlib.nullcontext()
