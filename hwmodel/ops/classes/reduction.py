"""``reduction``: reductions, losses, scans and sorts (``sum``, ``mean``, ``nll_loss``, ``topk``...).

A class of its own, apart from pointwise ops: a reduction reads many elements per output (its FLOPs
count the input), its output is small (few work tiles, low occupancy), and its kernels combine
partial results across lanes, so it reaches its own fraction of the vector peak and pays its own
fixed cost per call (the host row fits 1.26x the chip's per-op cost, against 0.79x for pointwise ops).
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

OP_CLASS = OpClass(
    name="reduction",
    order=4,
    unit="vector",
    packets=frozenset(
        {
            "sum",
            "mean",
            "amax",
            "amin",
            "max",
            "min",
            "var",
            "std",
            "var_mean",
            "norm",
            "linalg_vector_norm",
            "argmax",
            "argmin",
            "prod",
            "logsumexp",
            "nll_loss_forward",
            "nll_loss_backward",
            "nll_loss2d_forward",
            "nll_loss2d_backward",
            "mse_loss",
            "mse_loss_backward",
            "binary_cross_entropy_with_logits",
            "cumsum",
            "topk",
            "sort",
        }
    ),
    description="Reductions, losses, scans and sorts, on the vector unit.",
)
