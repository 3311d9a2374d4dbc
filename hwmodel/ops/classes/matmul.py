"""``matmul``: matrix products (``mm``, ``addmm``, ``bmm``, ``linear``...), on the matrix unit.

The class of plain GEMMs, the work the matrix units are built for. On a chip with measured GEMM
rates (the host) every op the capture lowered to GEMMs joins this class too, since its kernel is
BLAS calls (:func:`hwmodel.ops.matrix.class_indices`).
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

OP_CLASS = OpClass(
    name="matmul",
    order=0,
    unit="matrix",
    packets=frozenset({"mm", "addmm", "bmm", "baddbmm", "linear", "matmul", "_scaled_mm", "addbmm"}),
    description="Matrix products (GEMMs), on the matrix unit.",
)
