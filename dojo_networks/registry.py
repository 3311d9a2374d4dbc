"""The network registry: what a suite needs to train one network, and one way to add a network.

A network is one module: it defines its model, its synthetic batch and its loss, and joins the
registry with the :func:`network` decorator on its build function::

    @network("tiny", description="...", make_batch=make_tiny_batch, loss=tiny_loss)
    def build_tiny(size: str) -> TinyNet:
        return TinyNet(TINY_CONFIGS[size])

The modules of this package are imported with it (``dojo_networks/__init__.py``), so a module
dropped into ``dojo_networks/`` is registered with no other edit; a module elsewhere joins when it is
imported. Names are unique: registering a name twice is an error, as in ``torch.utils.flop_counter``'s
``register_flop_formula``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["NETWORKS", "SIZES", "Batch", "Device", "NetworkSpec", "get_network", "network", "total_loss"]

SIZES = ("small", "full")
"""Every network has both: ``full`` for simulation, ``small`` for a real step on a laptop CPU."""

Device: TypeAlias = str | torch.device
Batch: TypeAlias = tuple[dict[str, Tensor], Any]
"""``(inputs, targets)``: the model is called as ``model(**inputs)``; the loss takes the targets."""


@dataclass(frozen=True, kw_only=True)
class NetworkSpec:
    """What a suite needs to train one network: a builder, a batch maker and a loss.

    Attributes:
        name: key in :data:`NETWORKS`.
        description: one line for reports and docs.
        build: size (``"small"`` or ``"full"``) to model; works under ``with torch.device("meta")``.
        make_batch: (size, batch_size, device) to (inputs, targets); deterministic on the CPU,
            storage-free on ``"meta"``.
        loss: (outputs, targets) to a scalar, the sum of the per-head losses.
    """

    name: str
    description: str
    build: Callable[[str], nn.Module]
    make_batch: Callable[[str, int, Device], Batch]
    loss: Callable[[dict[str, Tensor], Any], Tensor]


NETWORKS: dict[str, NetworkSpec] = {}
"""Name -> spec of every registered network, in the order they joined."""

Build = TypeVar("Build", bound=Callable[[str], nn.Module])


def network(
    name: str,
    *,
    description: str,
    make_batch: Callable[[str, int, Device], Batch],
    loss: Callable[[dict[str, Tensor], Any], Tensor],
) -> Callable[[Build], Build]:
    """Decorator: register the decorated ``build(size)`` as network ``name``; it is returned unchanged.

    A name that is already registered, or one that is not a non-empty string without spaces, raises
    ``ValueError``.
    """
    if not isinstance(name, str) or not name or name != name.strip() or " " in name:
        raise ValueError(f"a network name is a non-empty string without spaces, got {name!r}")
    if name in NETWORKS:
        raise ValueError(f"duplicate network name {name!r}")

    def register(build: Build) -> Build:
        if name in NETWORKS:
            raise ValueError(f"duplicate network name {name!r}")
        NETWORKS[name] = NetworkSpec(name=name, description=description, build=build, make_batch=make_batch, loss=loss)
        return build

    return register


def get_network(name: str) -> NetworkSpec:
    """The spec called ``name``; an unknown name raises ValueError listing the known ones."""
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; known networks: {', '.join(sorted(NETWORKS))}") from None


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    """Sum of the per-head losses (unit weights): what every network's ``loss`` returns."""
    return torch.stack(list(losses.values())).sum()
