"""Achieved fractions of peak, per chip and op class: the model's only tuned numbers, kept as data.

Peak rates in a :class:`~hwmodel.spec.chip.ChipSpec` are ceilings; real kernels reach a fraction of them
that depends on the kind of op. Those fractions live in ``hwmodel/ops/efficiency.json``, in named
rows, each recording where its numbers come from; a chip names its row
(:attr:`~hwmodel.spec.chip.ChipSpec.efficiency_row`), and an unknown name is an error, never a
silent fallback. ``"ideal"`` is the row of 1.0 (peak ceilings, not fitted) that chips without
measured kernels name. Rows are calibrated against measurements, never tuned inside a test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from hwmodel.errors import SpecError
from hwmodel.ops.classes import OP_CLASSES

EFFICIENCY_FILE = "efficiency.json"
MAX_OVERHEAD_FACTOR = 1000.0


@dataclass(frozen=True, kw_only=True)
class EfficiencyTable:
    """Per op class (in :data:`~hwmodel.ops.classes.OP_CLASSES` order), the fraction of peak achieved.

    ``compute[i]`` scales the FLOP rate and ``memory[i]`` the local-memory bandwidth of ops of
    class ``OP_CLASSES[i]``; ``overhead[i]`` multiplies the chip's fixed cost per op for that class
    (a CPU convolution pays a primitive set-up that a pointwise op does not). ``calibration`` says
    where the numbers come from.
    """

    chip: str
    compute: tuple[float, ...]
    memory: tuple[float, ...]
    calibration: str
    overhead: tuple[float, ...] = (1.0,) * len(OP_CLASSES)

    def __post_init__(self) -> None:
        if len(self.overhead) != len(OP_CLASSES):
            raise SpecError(
                f"efficiency {self.chip}: overhead needs {len(OP_CLASSES)} classes, got {len(self.overhead)}"
            )
        for op_class, value in zip(OP_CLASSES, self.overhead, strict=True):
            if not 0 <= value <= MAX_OVERHEAD_FACTOR:
                raise SpecError(
                    f"efficiency {self.chip}.{op_class}.overhead must be in [0, {MAX_OVERHEAD_FACTOR}], got {value}"
                )
        for label, values in (("compute", self.compute), ("memory", self.memory)):
            if len(values) != len(OP_CLASSES):
                raise SpecError(f"efficiency {self.chip}: {label} needs {len(OP_CLASSES)} classes, got {len(values)}")
            for op_class, value in zip(OP_CLASSES, values, strict=True):
                if not 0 < value <= 1:
                    raise SpecError(f"efficiency {self.chip}.{op_class}.{label} must be in (0, 1], got {value}")


def table_from_row(chip: str, row: dict[str, Any]) -> EfficiencyTable:
    """Build a table from one chip's JSON row; missing classes are a one-line error."""
    try:
        classes = row["classes"]
        return EfficiencyTable(
            chip=chip,
            compute=tuple(float(classes[name]["compute"]) for name in OP_CLASSES),
            memory=tuple(float(classes[name]["memory"]) for name in OP_CLASSES),
            overhead=tuple(float(classes[name].get("overhead", 1.0)) for name in OP_CLASSES),
            calibration=str(row.get("calibration", "")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise SpecError(f"efficiency row {chip!r} is malformed: {type(error).__name__}: {error}") from None


@cache
def _rows() -> dict[str, Any]:
    text = resources.files("hwmodel.ops").joinpath(EFFICIENCY_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    rows = data["chips"]
    if not isinstance(rows, dict):
        raise SpecError(f"{EFFICIENCY_FILE}: 'chips' must be an object")
    return rows


@cache
def efficiency_for(row: str) -> EfficiencyTable:
    """The table of the row called ``row``; an unknown name is a one-line error listing the rows."""
    rows = _rows()
    if row not in rows:
        raise SpecError(f"unknown efficiency row {row!r}; known rows: {', '.join(rows)}")
    return table_from_row(row, rows[row])
