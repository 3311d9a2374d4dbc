"""The optimizer's state before the recorded step, so that the step recorded is a steady-state one.

torch's optimizers make their state (AdamW's moments and step counts) lazily, in their first
``step()``. A capture makes it before recording, so that the recorded step updates the state
instead of allocating it, as every step of a training run but the first does.
"""

from __future__ import annotations

import inspect

import torch

LAZY_STATE_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (torch.optim.Adam, torch.optim.AdamW)
"""Optimizers whose ``_init_group(group, *lists)`` creates all of a parameter's state, and whose
step count enters the update only as Python scalars (bias corrections), never as an op: for them
the state is made by ``_init_group`` alone, not by a whole update step."""


def create_optimizer_state(optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor]) -> None:
    """Create the optimizer's state before the recorded step, so that the step is a steady-state one.

    For :data:`LAZY_STATE_OPTIMIZERS` (exact types: a subclass may change the step) the state comes
    from ``_init_group``, the method their ``step()`` calls first; any other optimizer runs one step
    on zero gradients. Both leave the same state tensors, in the same order, and no gradients.
    """
    if type(optimizer) not in LAZY_STATE_OPTIMIZERS:
        _step_on_zero_gradients(optimizer, parameters)
        return
    # _init_group only asks whether a gradient exists: one placeholder per shape and dtype will do.
    placeholders: dict[tuple[tuple[int, ...], torch.dtype], torch.Tensor] = {}
    for parameter in parameters:
        key = (tuple(parameter.shape), parameter.dtype)
        if key not in placeholders:
            placeholders[key] = torch.empty(key[0], dtype=key[1])
        parameter.grad = placeholders[key]
    init_group = optimizer._init_group  # type: ignore[attr-defined]
    lists = len(inspect.signature(init_group).parameters) - 1
    with torch.no_grad():
        for group in optimizer.param_groups:
            init_group(group, *([] for _ in range(lists)))
    optimizer.zero_grad(set_to_none=True)


def _step_on_zero_gradients(optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor]) -> None:
    """Run one step on zero gradients so the state exists before the recorded step."""
    for parameter in parameters:
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
