"""Op classes: which hardware unit an aten op runs on and how well it can use it.

One class is one module of this package defining ``OP_CLASS``, an :class:`~.base.OpClass`:
``matmul``, ``convolution``, ``attention``, ``elementwise``, ``reduction``, ``normalization``,
``softmax``, ``copy``, ``optimizer``. Importing the package imports every module in it, so a new
module joins :data:`OP_CLASSES` with no other edit; a class defined elsewhere (a user's, a test's)
joins at run time with :func:`register_op_class`, whose handle removes it again.

The class decides the FLOP rate (matrix unit or vector unit), the efficiency entry that applies
(:mod:`hwmodel.ops.efficiency`) and the work granule used for occupancy. Op names are the strings
the capture records (``"aten.convolution.default"``); the class is looked up by the overload
packet (``"convolution"``), so every overload of an op shares its class.

>>> OP_CLASSES[:3], op_class("aten.mm.default"), "convolution" in MATRIX_CLASSES
(('matmul', 'convolution', 'attention'), 'matmul', True)
"""

from __future__ import annotations

import importlib
import pkgutil

from hwmodel.errors import SpecError

from .base import OpClass, packet_name
from .registry import (
    DATA_MOVEMENT_OPS,
    MATRIX_CLASSES,
    OP_CLASSES,
    OpClassSet,
    Registration,
    op_class,
    op_classes,
    register_op_class,
)

__all__ = [
    "DATA_MOVEMENT_OPS",
    "MATRIX_CLASSES",
    "OP_CLASSES",
    "OpClass",
    "OpClassSet",
    "Registration",
    "op_class",
    "op_classes",
    "packet_name",
    "register_op_class",
]

_NOT_CLASSES = {"base", "registry"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name in _NOT_CLASSES:
        continue
    _class = getattr(importlib.import_module(f"{__name__}.{_module.name}"), "OP_CLASS", None)
    if not isinstance(_class, OpClass):
        raise SpecError(f"{__name__}.{_module.name} must define OP_CLASS = OpClass(...)")
    register_op_class(_class)
