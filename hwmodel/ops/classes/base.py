"""What an op class is: a named set of aten overload packets that share a unit and an efficiency.

An :class:`OpClass` says which ops it owns (overload packets such as ``"mm"``, and name prefixes
such as ``"_foreach_"``), which unit they run on (the matrix unit or the vector unit), which of
them only move data (0 FLOPs, costed by their bytes), and what the class is, in one line. The cost
model (:mod:`hwmodel.ops.cost`) is one formula for every class; the class picks its FLOP rate,
its row entry in :mod:`hwmodel.ops.efficiency` and its work granule for occupancy.

>>> OpClass(name="embedding", packets=frozenset({"embedding_bag"}), unit="vector",
...         description="Table lookups.").unit
'vector'
>>> packet_name("aten.convolution_backward.default")
'convolution_backward'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from hwmodel.errors import SpecError

Unit = Literal["matrix", "vector"]
UNITS: tuple[Unit, ...] = ("matrix", "vector")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def packet_name(op_name: str) -> str:
    """``"aten.mm.default"`` -> ``"mm"``; names without a namespace are returned unchanged."""
    parts = op_name.split(".")
    return parts[1] if len(parts) >= 2 else parts[0]


@dataclass(frozen=True, kw_only=True)
class OpClass:
    """One op class. A malformed field is a one-line :class:`~hwmodel.errors.SpecError`.

    ``name``: a lower-case identifier (``"matmul"``), the key of efficiency rows.
    ``packets``: the aten overload packets it owns (``"mm"``, not ``"aten.mm.default"``).
    ``prefixes``: packet-name prefixes it owns (``"_foreach_"``); no other class may own a packet
    or prefix they match.
    ``unit``: ``"matrix"`` (floating-point ops run at the matrix units' rate and tile) or
    ``"vector"``.
    ``data_movement``: the packets among ``packets`` that only move, fill or allocate data: 0 FLOPs,
    costed by their bytes.
    ``catch_all``: ops of no class fall into this one (exactly one registered class has it).
    ``order``: position in :data:`~hwmodel.ops.classes.registry.OP_CLASSES` (efficiency arrays
    and printed tables follow it); ``None`` appends the class after those with an order.
    ``description``: one line saying what the class is.
    """

    name: str
    packets: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    unit: Unit = "vector"
    data_movement: frozenset[str] = frozenset()
    catch_all: bool = False
    order: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SpecError(f"op class name must be a lower-case identifier like 'matmul', got {self.name!r}")
        where = f"op class {self.name!r}"
        for label, values in (("packets", self.packets), ("data_movement", self.data_movement)):
            if not isinstance(values, frozenset):
                raise SpecError(
                    f"{where}: {label} must be a frozenset of overload packets, got {type(values).__name__}"
                )
            _check_packets(where, label, values)
        if not isinstance(self.prefixes, tuple):
            raise SpecError(f"{where}: prefixes must be a tuple of strings, got {type(self.prefixes).__name__}")
        _check_packets(where, "prefixes", self.prefixes)
        if self.unit not in UNITS:
            raise SpecError(f"{where}: unit must be one of {', '.join(UNITS)}, got {self.unit!r}")
        if not self.data_movement <= self.packets:
            extra = ", ".join(sorted(self.data_movement - self.packets))
            raise SpecError(f"{where}: data_movement packets must be among its packets, not: {extra}")
        if self.order is not None and (isinstance(self.order, bool) or not isinstance(self.order, int)):
            raise SpecError(f"{where}: order must be an integer or None, got {self.order!r}")
        if not isinstance(self.description, str) or not self.description.strip() or "\n" in self.description:
            raise SpecError(f"{where}: description must be one non-empty line")
        if not (self.packets or self.prefixes or self.catch_all):
            raise SpecError(f"{where} owns no ops: give it packets, prefixes or catch_all=True")

    def owns(self, packet: str) -> bool:
        """Whether ``packet`` (an overload packet, ``"mm"``) is one of this class's packets or prefixes."""
        return packet in self.packets or packet.startswith(self.prefixes)


def _check_packets(where: str, label: str, values: frozenset[str] | tuple[str, ...]) -> None:
    for value in values:
        if not isinstance(value, str) or not value or "." in value:
            raise SpecError(f"{where}: {label} entries must be overload packets like 'mm', got {value!r}")
