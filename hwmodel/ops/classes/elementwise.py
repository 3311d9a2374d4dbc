"""``elementwise``: pointwise ops (activations, arithmetic, comparisons), and every op of no class.

Pointwise work streams each element through the vector unit once, so it is usually bound by memory
traffic and the fixed cost per call. This class is the catch-all: an aten op that no class lists
falls here. NB: that is deliberate: most aten ops not listed by a class are pointwise, and the class
only picks a rate and an efficiency entry; whether an op has a FLOP formula is recorded separately
(``flop_source``).
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

OP_CLASS = OpClass(
    name="elementwise",
    order=3,
    unit="vector",
    catch_all=True,
    description="Pointwise ops, and every op that no class lists, on the vector unit.",
)
