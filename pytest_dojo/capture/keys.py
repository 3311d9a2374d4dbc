"""What makes two captures the same: the key of the plugin's per-run capture cache."""

from __future__ import annotations

from typing import Any

import torch
import torch.utils._pytree as pytree

from pytest_dojo.capture.storage import dtype_name
from pytest_dojo.capture.train_step import check_model


def _shapes(tree: Any) -> Any:
    leaves, spec = pytree.tree_flatten(tree)
    return str(spec), tuple(
        (tuple(leaf.shape), dtype_name(leaf.dtype)) if isinstance(leaf, torch.Tensor) else repr(leaf) for leaf in leaves
    )


def _identity(function: Any) -> Any:
    if function is None:
        return None
    return (getattr(function, "__module__", None), getattr(function, "__qualname__", repr(function)))


def structural_key(
    model: torch.nn.Module, example_inputs: Any, targets: Any, loss_fn: Any, optimizer: Any, name: str | None
) -> Any:
    """What determines a capture: the model's class and parameter shapes, the input and target
    shapes and dtypes (with their structure), and which loss and optimizer are used."""
    check_model(model)
    parameters = tuple((n, tuple(p.shape), dtype_name(p.dtype), p.requires_grad) for n, p in model.named_parameters())
    buffers = tuple((n, tuple(b.shape), dtype_name(b.dtype)) for n, b in model.named_buffers())
    return (
        name,
        type(model).__module__,
        type(model).__qualname__,
        parameters,
        buffers,
        _shapes(example_inputs),
        _shapes(targets),
        _identity(loss_fn),
        _identity(optimizer),
    )
