"""Per-test floors and ceilings on simulated figures, from a marker or a TOML file.

A threshold is direction-aware: ``min_*`` is a floor (the figure must be at least the value, more is
better), ``max_*`` a ceiling (at most the value, less is better). The figures and their units:

* ``min_samples_per_s``: samples per second of the simulated step (floor);
* ``max_step_ms``: simulated step time in milliseconds (ceiling);
* ``min_mfu``: model FLOP utilisation as a fraction in (0, 1] (floor).

The thresholds file is TOML, keyed by test node id and then by mesh (``"*"`` matches any mesh)::

    schema_version = 1

    ["suites/test_hydranet.py::test_small_step"]
    "5x5" = { min_samples_per_s = 1200.0, max_step_ms = 40.0 }
    "*" = { min_mfu = 0.05 }

Marker values win over file values for the same figure; an exact mesh wins over ``"*"``. This module
never imports pytest: bad input raises :class:`ThresholdError` with one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_dojo.errors import DojoError, read_text_file

THRESHOLDS_SCHEMA_VERSION = 1
ANY_MESH = "*"


class ThresholdError(DojoError):
    """A threshold that cannot be read: bad file, unknown key, negative or non-numeric value."""


@dataclass(frozen=True, kw_only=True)
class Figure:
    """A gated figure: how to read it from a report dict, its unit and which direction is better."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    scale: float

    def value(self, report: Mapping[str, Any]) -> float:
        """The figure in its display unit (e.g. ms) from a :meth:`hwmodel.Report.to_dict`."""
        return float(report[self.key]) * self.scale


FIGURES: dict[str, Figure] = {
    "min_samples_per_s": Figure(key="samples_per_s", label="samples/s", unit="", higher_is_better=True, scale=1.0),
    "max_step_ms": Figure(key="step_time_s", label="step time", unit="ms", higher_is_better=False, scale=1e3),
    "min_mfu": Figure(key="mfu", label="MFU", unit="", higher_is_better=True, scale=1.0),
}


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """The limits that apply to one test on one mesh; ``None`` means not gated."""

    min_samples_per_s: float | None = None
    max_step_ms: float | None = None
    min_mfu: float | None = None

    def items(self) -> list[tuple[str, float]]:
        """``(name, value)`` for every limit that is set, in :data:`FIGURES` order."""
        return [(name, value) for name in FIGURES if (value := getattr(self, name)) is not None]

    def merged_over(self, base: Thresholds) -> Thresholds:
        """These limits, falling back to ``base`` for those not set here."""
        return Thresholds(
            **{
                name: getattr(self, name) if getattr(self, name) is not None else getattr(base, name)
                for name in FIGURES
            }
        )

    def __bool__(self) -> bool:
        return bool(self.items())


def parse_limits(values: Mapping[str, Any], where: str) -> Thresholds:
    """Check a mapping of ``name -> number`` and build :class:`Thresholds`; ``where`` prefixes errors."""
    unknown = sorted(set(values) - set(FIGURES))
    if unknown:
        raise ThresholdError(f"{where}: unknown threshold {', '.join(map(repr, unknown))}; known: {', '.join(FIGURES)}")
    checked: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ThresholdError(f"{where}: {name} must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or number <= 0:
            raise ThresholdError(f"{where}: {name} must be a finite number > 0, got {value!r}")
        if name == "min_mfu" and number > 1:
            raise ThresholdError(f"{where}: min_mfu is a fraction in (0, 1], got {value!r}")
        checked[name] = number
    return Thresholds(**checked)


@dataclass(frozen=True, kw_only=True)
class ThresholdsFile:
    """Thresholds from a TOML file, by test node id and mesh."""

    path: str
    by_test: Mapping[str, Mapping[str, Thresholds]]

    def tests_for_mesh(self, mesh: str) -> list[str]:
        """Node ids with limits that apply on ``mesh`` (its own table or ``"*"``), sorted."""
        return sorted(nodeid for nodeid, meshes in self.by_test.items() if mesh in meshes or ANY_MESH in meshes)

    def lookup(self, nodeid: str, mesh: str) -> Thresholds:
        """Limits for ``nodeid`` on ``mesh``: the exact mesh's, completed by ``"*"``'s."""
        meshes = self.by_test.get(nodeid, {})
        exact = meshes.get(mesh, Thresholds())
        return exact.merged_over(meshes.get(ANY_MESH, Thresholds()))


def load_thresholds(path: str | Path) -> ThresholdsFile:
    """Read and check a thresholds file; every problem is one :class:`ThresholdError` line."""
    where = str(path)
    import tomllib  # only where a thresholds file is read: the plugin's import stays light

    text = read_text_file(path, ThresholdError, "thresholds")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ThresholdError(f"{where}: not valid TOML: {error}") from None
    version = data.pop("schema_version", None)
    if version != THRESHOLDS_SCHEMA_VERSION:
        raise ThresholdError(f"{where}: schema_version must be {THRESHOLDS_SCHEMA_VERSION}, got {version!r}")
    by_test: dict[str, dict[str, Thresholds]] = {}
    for nodeid, meshes in data.items():
        if not isinstance(meshes, dict) or "::" not in nodeid:
            raise ThresholdError(
                f"{where}: key {nodeid!r} must be a test node id (path::name) holding one table per mesh"
            )
        by_test[nodeid] = {}
        for mesh, limits in meshes.items():
            if not isinstance(limits, dict):
                raise ThresholdError(f"{where}: [{nodeid!r}] {mesh!r} must be a table of thresholds, got {limits!r}")
            if mesh != ANY_MESH:
                _check_mesh_key(mesh, f"{where}: [{nodeid!r}]")
            by_test[nodeid][mesh] = parse_limits(limits, f"{where}: [{nodeid!r}] {mesh!r}")
    return ThresholdsFile(path=where, by_test=by_test)


def _check_mesh_key(mesh: str, where: str) -> None:
    from hwmodel import HwModelError, parse_mesh

    try:
        canonical = str(parse_mesh(mesh))
    except HwModelError as error:
        raise ThresholdError(f"{where}: {error}") from None
    if canonical != mesh:
        raise ThresholdError(f"{where}: write mesh {mesh!r} as {canonical!r}")
