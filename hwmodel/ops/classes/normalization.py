"""``normalization``: batch, layer and group norm, forward and backward.

A class of its own: a norm is a reduction (mean and variance) followed by a pointwise pass, so its
kernels read their input twice or keep it resident, and they pay more fixed cost per call than one
pointwise op (the host row fits 3.2x the chip's per-op cost, against 0.79x for pointwise ops).
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

OP_CLASS = OpClass(
    name="normalization",
    order=5,
    unit="vector",
    packets=frozenset(
        {
            "native_batch_norm",
            "native_batch_norm_backward",
            "_native_batch_norm_legit",
            "_native_batch_norm_legit_no_training",
            "_native_batch_norm_legit_functional",
            "native_layer_norm",
            "native_layer_norm_backward",
            "native_group_norm",
            "native_group_norm_backward",
            "batch_norm_backward",
            "_batch_norm_with_update",
            "_batch_norm_with_update_functional",
            "_batch_norm_no_update",
        }
    ),
    description="Batch, layer and group norm, forward and backward, on the vector unit.",
)
