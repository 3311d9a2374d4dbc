"""``softmax``: softmax and log-softmax, forward and backward.

A class of its own: a row-wise max, an exponential and a sum, then a division; transcendental-heavy
and reduction-shaped at once, so it is fitted apart from both pointwise ops and plain reductions.
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

OP_CLASS = OpClass(
    name="softmax",
    order=6,
    unit="vector",
    packets=frozenset({"_softmax", "_softmax_backward_data", "_log_softmax", "_log_softmax_backward_data"}),
    description="Softmax and log-softmax, forward and backward, on the vector unit.",
)
