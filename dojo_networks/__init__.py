"""Autopilot-style networks for the regression suites, each with ``small`` and ``full`` presets.

Every network is described by a :class:`NetworkSpec`: how to build it at a size, how to make a
synthetic batch (real values on the CPU, storage-free on ``meta``) and its loss. Models are called
as ``outputs = model(**inputs)`` and return one tensor per head output. ``full`` is the published
input (8 cameras at 1280x960; ImageNet 224x224 for the backbone-only entries) for simulation;
``small`` trains a real step on a laptop CPU in well under a second. Sizes Tesla never published
are ours; ``docs/networks.md`` lists each choice.

A network is one module of this package that registers its build function with
:func:`~dojo_networks.registry.network`; importing the package imports every module in it, so a new
module joins :data:`NETWORKS` with no other edit (``registry.py`` shows the pattern).
"""

from __future__ import annotations

import importlib
import pkgutil

from .backbones import BACKBONE_NETWORKS
from .registry import NETWORKS, SIZES, Batch, Device, NetworkSpec, get_network, network

__all__ = ["BACKBONE_NETWORKS", "NETWORKS", "SIZES", "Batch", "Device", "NetworkSpec", "get_network", "network"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
