"""Achieved fractions of peak, per chip and op class: the model's only tuned numbers, kept as data.

Peak rates in a :class:`~hwmodel.spec.chip.ChipSpec` are ceilings; real kernels reach a fraction of them
that depends on the kind of op. Those fractions live in ``hwmodel/ops/efficiency.json``, in named
rows, each recording where its numbers come from; a chip costed by the roofline
(``op_cost_model = "efficiency"``) names its row (:attr:`~hwmodel.spec.chip.ChipSpec.efficiency_row`),
and an unknown name is an error, never a silent fallback. Rows are calibrated against
measurements, never tuned inside a test; chips without measured per-op times are costed by the
kernel models instead (:mod:`hwmodel.ops.cost_model`).

A row lists every op class (``"classes"``); a row that lacks a registered class, or names one that
is not registered, is a one-line error (re-fit it with ``pytest-dojo calibrate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from hwmodel.errors import SpecError
from hwmodel.ops.classes.registry import op_classes

EFFICIENCY_FILE = "efficiency.json"
MAX_OVERHEAD_FACTOR = 1000.0


def _class_names() -> tuple[str, ...]:
    return op_classes().names


def _ones() -> tuple[float, ...]:
    return (1.0,) * len(op_classes().names)


@dataclass(frozen=True, kw_only=True)
class EfficiencyTable:
    """Per op class (in ``classes`` order), the fraction of peak achieved.

    ``compute[i]`` scales the FLOP rate and ``memory[i]`` the local-memory bandwidth of ops of
    class ``classes[i]``; ``overhead[i]`` multiplies the chip's fixed cost per op for that class
    (a CPU convolution pays a primitive set-up that a pointwise op does not). ``calibration`` says
    where the numbers come from. ``classes`` defaults to the op classes registered when the table
    is made (:data:`~hwmodel.ops.classes.OP_CLASSES`); costing with a table made for other classes
    is an error.
    """

    chip: str
    compute: tuple[float, ...]
    memory: tuple[float, ...]
    calibration: str
    overhead: tuple[float, ...] = field(default_factory=_ones)
    classes: tuple[str, ...] = field(default_factory=_class_names)

    def __post_init__(self) -> None:
        count = len(self.classes)
        for label, values in (("overhead", self.overhead), ("compute", self.compute), ("memory", self.memory)):
            if len(values) != count:
                raise SpecError(f"efficiency {self.chip}: {label} needs {count} classes, got {len(values)}")
        for op_class, value in zip(self.classes, self.overhead, strict=True):
            if not 0 <= value <= MAX_OVERHEAD_FACTOR:
                raise SpecError(
                    f"efficiency {self.chip}.{op_class}.overhead must be in [0, {MAX_OVERHEAD_FACTOR}], got {value}"
                )
        for label, values in (("compute", self.compute), ("memory", self.memory)):
            for op_class, value in zip(self.classes, values, strict=True):
                if not 0 < value <= 1:
                    raise SpecError(f"efficiency {self.chip}.{op_class}.{label} must be in (0, 1], got {value}")

    def check_classes(self, classes: tuple[str, ...]) -> None:
        """Refuse to cost ``classes`` (the registered ones) with a table made for others."""
        if self.classes != classes:
            raise SpecError(
                f"efficiency {self.chip} was made for op classes ({', '.join(self.classes)}), "
                f"not the registered ({', '.join(classes)}); make it again"
            )


def table_from_row(chip: str, row: dict[str, Any]) -> EfficiencyTable:
    """Build a table from one chip's JSON row, for the registered op classes.

    A row that lacks a registered class, or names an unregistered one, is a one-line error.
    """
    names = op_classes().names
    entries: Any = row.get("classes") if isinstance(row, dict) else None
    _check_row_classes(chip, names, entries)
    try:
        return EfficiencyTable(
            chip=chip,
            compute=tuple(float(entries[name]["compute"]) for name in names),
            memory=tuple(float(entries[name]["memory"]) for name in names),
            overhead=tuple(float(entries[name].get("overhead", 1.0)) for name in names),
            calibration=str(row.get("calibration", "")),
            classes=names,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise SpecError(f"efficiency row {chip!r} is malformed: {type(error).__name__}: {error}") from None


def _check_row_classes(chip: str, names: tuple[str, ...], entries: Any) -> None:
    if not isinstance(entries, dict):
        raise SpecError(f"efficiency row {chip!r} needs 'classes' (an object per op class)")
    missing = [name for name in names if name not in entries]
    if missing:
        raise SpecError(
            f"efficiency row {chip!r} has no entry for op class {', '.join(map(repr, missing))}; "
            "re-fit it with `pytest-dojo calibrate` while the class is registered"
        )
    unknown = [name for name in entries if name not in names]
    if unknown:
        raise SpecError(
            f"efficiency row {chip!r} lists {', '.join(map(repr, unknown))}, which is no registered op class "
            f"(registered: {', '.join(names)})"
        )


@cache
def _rows() -> dict[str, Any]:
    text = resources.files("hwmodel.ops").joinpath(EFFICIENCY_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    rows = data["chips"]
    if not isinstance(rows, dict):
        raise SpecError(f"{EFFICIENCY_FILE}: 'chips' must be an object")
    return rows


def efficiency_for(row: str) -> EfficiencyTable:
    """The table of the row called ``row``; an unknown name is a one-line error listing the rows."""
    return _efficiency_for(row, op_classes().names)


@cache
def _efficiency_for(row: str, classes: tuple[str, ...]) -> EfficiencyTable:
    """Kept per class list: a class registered or removed gives new tables."""
    rows = _rows()
    if row not in rows:
        raise SpecError(f"unknown efficiency row {row!r}; known rows: {', '.join(rows)}")
    return table_from_row(row, rows[row])
