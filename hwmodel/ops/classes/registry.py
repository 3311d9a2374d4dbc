"""The registered op classes: lookup of an op's class, and registration of new classes at run time.

The built-in classes are the modules of this package (one module per class, each defining
``OP_CLASS``); :mod:`hwmodel.ops.classes` imports them all. A class from elsewhere joins with
:func:`register_op_class`, whose handle removes it again. Every change makes a new immutable
:class:`OpClassSet`, with a new ``version``, so that what is derived from the class list (a
workload's class indices, efficiency tables) is cached under that version and never goes stale.

>>> op_class("aten.convolution_backward.default")
'convolution'
>>> op_class("aten.addmm.default")
'matmul'
>>> op_class("aten._foreach_mul_.Scalar")
'optimizer'
>>> op_class("aten.native_batch_norm.default")
'normalization'
>>> op_class("aten.relu.default")
'elementwise'
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass
from types import TracebackType
from typing import overload

from hwmodel.errors import SpecError
from hwmodel.ops.classes.base import OpClass, packet_name


@dataclass(frozen=True, eq=False)
class OpClassSet:
    """The registered classes at one moment, in order, with the lookups built from them."""

    classes: tuple[OpClass, ...]
    version: int
    names: tuple[str, ...]
    index_of_packet: dict[str, int]
    prefixes: tuple[tuple[str, int], ...]
    catch_all: int
    matrix: frozenset[str]
    data_movement: frozenset[str]

    def index(self, op_name: str) -> int:
        """Index in :attr:`names` of the class of ``op_name`` (``"aten.mm.default"`` or ``"mm"``)."""
        packet = packet_name(op_name)
        found = self.index_of_packet.get(packet)
        if found is not None:
            return found
        for prefix, index in self.prefixes:
            if packet.startswith(prefix):
                return index
        return self.catch_all


def _sort_key(entry: tuple[int, OpClass]) -> tuple[float, int]:
    sequence, op_class = entry
    return (math.inf if op_class.order is None else op_class.order, sequence)


def _claims(entries: list[OpClass]) -> tuple[dict[str, int], tuple[tuple[str, int], ...]]:
    """Packets and prefixes to class indices; a packet or prefix claimed twice is a SpecError."""
    owner: dict[str, int] = {}
    prefixes: list[tuple[str, int]] = []
    for index, entry in enumerate(entries):
        for packet in sorted(entry.packets):
            if packet in owner:
                other = entries[owner[packet]].name
                raise SpecError(f"op class {entry.name!r}: packet {packet!r} already belongs to op class {other!r}")
            owner[packet] = index
        prefixes.extend((prefix, index) for prefix in entry.prefixes)
    for (first, first_index), (second, second_index) in itertools.combinations(prefixes, 2):
        if first_index != second_index and (first.startswith(second) or second.startswith(first)):
            raise SpecError(
                f"op class {entries[second_index].name!r}: prefix {second!r} overlaps prefix {first!r} "
                f"of op class {entries[first_index].name!r}"
            )
    for packet, index in owner.items():
        for prefix, prefix_index in prefixes:
            if prefix_index != index and packet.startswith(prefix):
                raise SpecError(
                    f"op class {entries[index].name!r}: packet {packet!r} already belongs to op class "
                    f"{entries[prefix_index].name!r} (prefix {prefix!r})"
                )
    return owner, tuple(prefixes)


def _build(entries: list[tuple[int, OpClass]], version: int) -> OpClassSet:
    ordered = [op_class for _, op_class in sorted(entries, key=_sort_key)]
    names = [op_class.name for op_class in ordered]
    for name in names:
        if names.count(name) > 1:
            raise SpecError(f"op class {name!r} is registered twice")
    orders = [op_class.order for op_class in ordered if op_class.order is not None]
    for op_class in ordered:
        if op_class.order is not None and orders.count(op_class.order) > 1:
            raise SpecError(f"op class {op_class.name!r}: order {op_class.order} is taken by another class")
    catch_all = [index for index, op_class in enumerate(ordered) if op_class.catch_all]
    if len(catch_all) > 1:
        raise SpecError(f"op class {ordered[catch_all[1]].name!r}: only one class may be catch_all")
    owner, prefixes = _claims(ordered)
    return OpClassSet(
        classes=tuple(ordered),
        version=version,
        names=tuple(names),
        index_of_packet=owner,
        prefixes=prefixes,
        catch_all=catch_all[0] if catch_all else -1,
        matrix=frozenset(op_class.name for op_class in ordered if op_class.unit == "matrix"),
        data_movement=frozenset(packet for op_class in ordered for packet in op_class.data_movement),
    )


_entries: list[tuple[int, OpClass]] = []
_sequence = itertools.count()
_current = _build([], 0)


def op_classes() -> OpClassSet:
    """The registered classes now; cache what is derived from them under its ``version``."""
    if _current.catch_all < 0:
        raise SpecError("no catch-all op class is registered (hwmodel.ops.classes was not imported)")
    return _current


def _replace(entries: list[tuple[int, OpClass]]) -> None:
    global _current
    built = _build(entries, _current.version + 1)
    _entries[:] = entries
    _current = built


class Registration:
    """The handle of a registered class: :meth:`remove` it, or use it as a context manager."""

    def __init__(self, op_class: OpClass, sequence: int) -> None:
        self.op_class = op_class
        self._sequence = sequence

    def remove(self) -> None:
        """Unregister the class (a no-op if it is gone already)."""
        if any(entry[0] == self._sequence for entry in _entries):
            _replace([entry for entry in _entries if entry[0] != self._sequence])

    def __enter__(self) -> Registration:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.remove()


def register_op_class(op_class: OpClass) -> Registration:
    """Add ``op_class`` to the registered classes; a clash with a registered class is a SpecError.

    The returned handle removes it again (``with register_op_class(c): ...`` or ``handle.remove()``).
    A class without an ``order`` comes after every class registered before it.
    """
    if not isinstance(op_class, OpClass):
        raise SpecError(f"register_op_class takes an OpClass, got {type(op_class).__name__}")
    sequence = next(_sequence)
    _replace([*_entries, (sequence, op_class)])
    return Registration(op_class, sequence)


def op_class(op_name: str) -> str:
    """The class of an aten op (one of :data:`OP_CLASSES`); an op of no class is in the catch-all one."""
    classes = op_classes()
    return classes.names[classes.index(op_name)]


class _LiveNames(Sequence[str]):
    """The registered class names, in order, read at each use (a sequence of str; ``OP_CLASSES[:]``
    is the tuple of them now, to compare or keep)."""

    def __len__(self) -> int:
        return len(op_classes().names)

    def __iter__(self) -> Iterator[str]:
        return iter(op_classes().names)

    def __contains__(self, name: object) -> bool:
        return name in op_classes().names

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return op_classes().names[index]

    def __repr__(self) -> str:
        return repr(op_classes().names)


class _LiveSet(Set[str]):
    """A set read from the registered classes at each use."""

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute

    def _values(self) -> frozenset[str]:
        values: frozenset[str] = getattr(op_classes(), self._attribute)
        return values

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._values()))

    def __len__(self) -> int:
        return len(self._values())

    def __repr__(self) -> str:
        return repr(self._values())


OP_CLASSES = _LiveNames()
"""The names of the registered classes, in order: efficiency arrays and printed tables follow it."""

MATRIX_CLASSES = _LiveSet("matrix")
"""The names of the registered classes that run on the matrix unit."""

DATA_MOVEMENT_OPS = _LiveSet("data_movement")
"""Overload packets that move, fill or allocate data and do no arithmetic: 0 FLOPs, costed by their bytes."""
