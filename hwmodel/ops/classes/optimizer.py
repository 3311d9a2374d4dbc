"""``optimizer``: the optimizer's multi-tensor ops (``_foreach_*``) and fused optimizers (``_fused_*``).

A class of its own: these ops walk lists of parameter-sized tensors in FP32 master precision, one
kernel per tensor on a chip without multi-tensor kernels, so their fixed cost and bandwidth differ
from a single pointwise op's. Every packet starting with ``_foreach_`` or ``_fused_`` is one;
``_foreach_copy_`` and ``_foreach_zero_`` only move or fill data (0 FLOPs, costed by their bytes).
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

OP_CLASS = OpClass(
    name="optimizer",
    order=8,
    unit="vector",
    prefixes=("_foreach_", "_fused_"),
    packets=frozenset({"_foreach_copy_", "_foreach_zero_"}),
    data_movement=frozenset({"_foreach_copy_", "_foreach_zero_"}),
    description="Multi-tensor optimizer ops (_foreach_*, _fused_*), on the vector unit.",
)
