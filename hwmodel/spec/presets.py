"""Named chips and fabrics, read from the data files in ``hwmodel/spec/presets/``.

One TOML file per preset: a ``[preset]`` table (description, where the rates
come from, other names it answers to), a ``[chip]`` table and a ``[fabric]`` table (or
``fabric = "NAME"`` naming a fabric of ``hwmodel/spec/fabrics.toml`` or of another preset). The
fabrics several presets share are defined once, as ``[[fabric]]`` tables of ``fabrics.toml``.
Every constant is ``{ value = ..., unit = "...", source = "..." }``: the
unit converts it to SI once, here (:data:`UNITS`; GB means 10**9 bytes, GiB 2**30), and the source cites
``docs/reference/`` with its tag ([S] stated, [D] derived, [U] uncertain). An unknown or missing
field, an unknown unit and a duplicate name are each a one-line :class:`~hwmodel.errors.SpecError`.

``aliases = ["a100-sxm4-80gb"]`` in ``[preset]``: :func:`get_preset` finds the preset under those
names too; its chip (and every report) keeps the preset's own name (``a100``).

:func:`register_preset_file` adds a chip from a file of the same format outside the package.

``rates = "host_calibration"`` (the ``host`` preset) takes the measured fields of the chip, and the
fabric, from this machine's calibration (:mod:`hwmodel.spec.host`); a missing or broken
calibration leaves the other presets usable and says why in one warning.
"""

from __future__ import annotations

import tomllib
import warnings
from dataclasses import dataclass, fields, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hwmodel.errors import SpecError
from hwmodel.ops.efficiency import EfficiencyTable, efficiency_for
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.host import HostCalibrationWarning, host_chip_and_fabric
from hwmodel.spec.mesh import Mesh, parse_mesh
from hwmodel.spec.precision import Precision, parse_precision
from hwmodel.spec.system import System
from hwmodel.spec.units import GB, GB_PER_S, GBIT_PER_S, GFLOP_PER_S, GIB, MB, NS, TB_PER_S, TFLOP_PER_S, US

PRESET_DIRECTORY = "presets"
FABRICS_FILE = "fabrics.toml"
RATE_SOURCES = ("datasheet", "host_calibration")
UNITS: dict[str, float] = {
    "count": 1,
    "elements": 1,
    "B": 1,
    "MB": MB,
    "GB": GB,
    "GiB": GIB,
    "B/s": 1,
    "GB/s": GB_PER_S,
    "TB/s": TB_PER_S,
    "Gbit/s": GBIT_PER_S,
    "FLOP/s": 1,
    "GFLOP/s": GFLOP_PER_S,
    "TFLOP/s": TFLOP_PER_S,
    "s": 1,
    "us": US,
    "ns": NS,
    "Hz": 1.0,
    "MHz": 1e6,
    "GHz": 1e9,
    "W": 1.0,
    "nm": 1.0,
}
"""Datasheet units a preset may quote, as multiples of the SI unit."""
_PRESET_KEYS = frozenset({"description", "rates", "fabric", "aliases"})
_CONSTANT_KEYS = frozenset({"value", "unit", "source"})


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A chip with the fabric it ships in, the precision it trains in by default, and a one-line
    description for ``pytest --help``."""

    chip: ChipSpec
    fabric: FabricSpec
    description: str
    aliases: tuple[str, ...] = ()
    """Other names :func:`get_preset` finds this preset under (``a100-sxm4-80gb`` for ``a100``)."""

    @property
    def precision(self) -> Precision:
        """The precision policy the chip trains in by default (its ``default_precision``)."""
        return parse_precision(self.chip.default_precision)

    @property
    def efficiency(self) -> EfficiencyTable | None:
        """The efficiency row the chip names; None for a chip costed by the kernel models."""
        return None if self.chip.efficiency_row is None else efficiency_for(self.chip.efficiency_row)


_PRESETS: dict[str, Preset] = {}
_ALIASES: dict[str, str] = {}
_FABRICS: dict[str, FabricSpec] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a preset under its chip's name and its aliases; a name (or alias) taken is an error."""
    name = preset.chip.name
    for taken in (name, *preset.aliases):
        if taken in _PRESETS or taken in _ALIASES:
            raise SpecError(f"preset {taken!r} is already registered")
    if len(set(preset.aliases) | {name}) != len(preset.aliases) + 1:
        raise SpecError(f"preset {name!r}: an alias repeats a name")
    _PRESETS[name] = preset
    _ALIASES.update(dict.fromkeys(preset.aliases, name))
    return preset


def preset_names() -> tuple[str, ...]:
    """Registered preset names, in registration order (the data files in name order); aliases are
    in :func:`preset_aliases`."""
    _load_shipped()
    return tuple(_PRESETS)


def preset_aliases() -> dict[str, str]:
    """Alias -> the preset name it stands for (``{"a100-sxm4-80gb": "a100", ...}``)."""
    _load_shipped()
    return dict(_ALIASES)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (or aliased so); an unknown name is a one-line error listing the
    known ones."""
    _load_shipped()
    key = name.strip().lower()
    found = _PRESETS.get(_ALIASES.get(key, key))
    if found is None:
        aliases = ", ".join(f"{alias} = {target}" for alias, target in _ALIASES.items())
        raise SpecError(f"unknown chip {name!r}; known chips: {', '.join(_PRESETS)}; aliases: {aliases}")
    return found


def make_system(chip_name: str, mesh: Mesh | str) -> System:
    """The system of ``mesh`` chips of preset ``chip_name`` in that preset's fabric."""
    preset = get_preset(chip_name)
    return System(chip=preset.chip, fabric=preset.fabric, mesh=parse_mesh(mesh) if isinstance(mesh, str) else mesh)


def _constant(where: str, key: str, entry: Any) -> Any:
    """The SI value of one ``{ value, unit, source }`` entry (a bare string is allowed for names)."""
    if not isinstance(entry, dict):
        raise SpecError(f"{where}.{key}: expected {{ value, unit, source }}, got {entry!r}")
    unknown = sorted(set(entry) - _CONSTANT_KEYS)
    if unknown or "value" not in entry or not str(entry.get("source", "")).strip():
        raise SpecError(f"{where}.{key}: needs a value and a source (and at most a unit), got keys {sorted(entry)}")
    value = entry["value"]
    if "unit" not in entry:
        return value
    unit = entry["unit"]
    if unit not in UNITS:
        raise SpecError(f"{where}.{key}: unknown unit {unit!r}; known: {', '.join(UNITS)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}.{key}: a value with a unit must be a number, got {value!r}")
    return value if unit in ("count", "elements") else value * UNITS[unit]


def _record(where: str, table: Any, spec_fields: set[str], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Keyword arguments of a spec from one table: names and sources as they are, constants in SI."""
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table, got {table!r}")
    unknown = sorted(set(table) - spec_fields - skip)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(unknown)}")
    return {
        key: entry if key in ("name", "source") else _constant(where, key, entry)
        for key, entry in table.items()
        if key not in skip
    }


def _construct(kind: type[Any], where: str, values: dict[str, Any]) -> Any:
    try:
        return kind(**values)
    except TypeError as error:
        raise SpecError(f"{where}: {error}") from None


def _chip_fields() -> set[str]:
    return {field.name for field in fields(ChipSpec)}


def _fabric_fields() -> set[str]:
    return {field.name for field in fields(FabricSpec)}


def _preset_table(where: str, data: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - {"preset", "chip", "fabric"})
    if unknown:
        raise SpecError(f"{where}: unknown table(s) {', '.join(unknown)}")
    table = data.get("preset")
    if not isinstance(table, dict):
        raise SpecError(f"{where}: needs a [preset] table")
    extra = sorted(set(table) - _PRESET_KEYS)
    if extra:
        raise SpecError(f"{where}: [preset] has unknown field(s) {', '.join(extra)}")
    if table.get("rates") not in RATE_SOURCES:
        raise SpecError(f"{where}: [preset] rates must be one of {RATE_SOURCES}, got {table.get('rates')!r}")
    if table["rates"] == "host_calibration" and ("fabric" in table or "fabric" in data):
        raise SpecError(f"{where}: a measured preset's fabric comes from its calibration; remove the fabric")
    if table["rates"] == "datasheet" and ("fabric" in table) == ("fabric" in data):
        raise SpecError(f"{where}: give either a [fabric] table or [preset] fabric = NAME, not both or neither")
    return table


def parse_preset(where: str, data: dict[str, Any], fabrics: dict[str, FabricSpec]) -> Preset:
    """The preset of one parsed data file; ``fabrics`` holds (and receives) fabrics by name."""
    table = _preset_table(where, data)
    if table["rates"] == "host_calibration":
        static = _record(f"{where}.chip", data.get("chip"), _chip_fields())
        chip, fabric = host_chip_and_fabric(static)
    else:
        chip = _construct(ChipSpec, f"{where}.chip", _record(f"{where}.chip", data.get("chip"), _chip_fields()))
        if "fabric" in table:
            if table["fabric"] not in fabrics:
                raise SpecError(f"{where}: unknown fabric {table['fabric']!r}; defined: {', '.join(fabrics)}")
            fabric = fabrics[table["fabric"]]
        else:
            values = _record(f"{where}.fabric", data["fabric"], _fabric_fields())
            fabric = _construct(FabricSpec, f"{where}.fabric", values)
            if fabric.name in fabrics:
                raise SpecError(f"{where}: fabric {fabric.name!r} is defined twice")
            fabrics[fabric.name] = fabric
    aliases = table.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(alias, str) and alias for alias in aliases):
        raise SpecError(f"{where}: [preset] aliases must be a list of names, got {aliases!r}")
    return Preset(
        chip=chip,
        fabric=fabric,
        description=str(table.get("description", "")),
        aliases=tuple(alias.lower() for alias in aliases),
    )


def parse_fabrics(where: str, data: dict[str, Any], fabrics: dict[str, FabricSpec]) -> None:
    """Add the ``[[fabric]]`` tables of a fabrics file to ``fabrics`` (a name defined twice is an error)."""
    unknown = sorted(set(data) - {"fabric"})
    tables = data.get("fabric", [])
    if unknown or not isinstance(tables, list):
        raise SpecError(f"{where}: expected only [[fabric]] tables")
    for index, table in enumerate(tables):
        at = f"{where}.fabric[{index}]"
        fabric = _construct(FabricSpec, at, _record(at, table, _fabric_fields()))
        if fabric.name in fabrics:
            raise SpecError(f"{where}: fabric {fabric.name!r} is defined twice")
        fabrics[fabric.name] = fabric


def _parse_toml(name: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"preset file {name}: {error}") from None


def _read(name: str) -> dict[str, Any]:
    text = resources.files("hwmodel.spec").joinpath(PRESET_DIRECTORY, name).read_text(encoding="utf-8")
    return _parse_toml(name, text)


@cache
def _load_shipped() -> None:
    """Register every shipped preset once: the shared fabrics first, then presets that define a
    fabric, then those that name one."""
    fabrics_text = resources.files("hwmodel.spec").joinpath(FABRICS_FILE).read_text(encoding="utf-8")
    parse_fabrics(FABRICS_FILE, _parse_toml(FABRICS_FILE, fabrics_text), _FABRICS)
    directory = resources.files("hwmodel.spec").joinpath(PRESET_DIRECTORY)
    files = sorted(entry.name for entry in directory.iterdir() if entry.name.endswith(".toml"))
    documents = {name: _read(name) for name in files}
    order = sorted(files, key=lambda name: "fabric" in documents[name].get("preset", {}))
    parsed: dict[str, Preset] = {}
    for name in order:
        try:
            parsed[name] = parse_preset(name, documents[name], _FABRICS)
        except SpecError as error:
            if documents[name].get("preset", {}).get("rates") != "host_calibration":
                raise
            warnings.warn(f"no {name.removesuffix('.toml')} preset: {error}", HostCalibrationWarning, stacklevel=1)
    for name in files:
        if name in parsed:
            register_preset(parsed[name])


def measured_chip_fields(name: str = "host") -> dict[str, Any]:
    """The fields of a measured preset's chip that its data file gives (what no calibration measures)."""
    return _record(f"{name}.toml.chip", _read(f"{name}.toml").get("chip"), _chip_fields())


def register_preset_file(path: Path) -> Preset:
    """Read a preset file outside the package (same format as the shipped ones) and register it
    (once: the same file read again returns the preset already registered).

    The way to add a chip without touching code: one TOML file with ``[preset]``, ``[chip]`` and a
    ``[fabric]`` table, or ``fabric = NAME`` for a fabric a shipped preset defines.
    """
    _load_shipped()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"cannot read the preset file {path}: {error.strerror}") from None
    fabrics = dict(_FABRICS)
    preset = parse_preset(path.name, _parse_toml(path.name, text), fabrics)
    preset = _parameters_beside(preset, path.parent)
    if _PRESETS.get(preset.chip.name) == preset:
        return _PRESETS[preset.chip.name]
    register_preset(preset)
    _FABRICS.update(fabrics)
    return preset


def _parameters_beside(preset: Preset, directory: Path) -> Preset:
    """``preset`` with a relative ``kernel_parameters_file`` read from ``directory`` (the preset file's),
    checked now so a missing or malformed file is one line when the preset is chosen."""
    from hwmodel.ops.kernels.parameters import load_parameters

    name = preset.chip.kernel_parameters_file
    if name is None:
        return preset
    path = Path(name) if Path(name).is_absolute() else directory / name
    try:
        load_parameters(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SpecError(f"{preset.chip.name}: kernel_parameters_file {str(path)!r}: {error}") from None
    return replace(preset, chip=replace(preset.chip, kernel_parameters_file=str(path)))


def preset_by_name_or_file(chip: str, directory: Path) -> Preset:
    """The preset called ``chip``, or the one in the file ``chip`` names (``*.toml``, relative to
    ``directory`` unless absolute), registered under its chip's name. Reading the same file again
    returns the preset registered from it; another preset under that name is an error."""
    if not chip.endswith(".toml"):
        return get_preset(chip)
    path = Path(chip)
    return register_preset_file(path if path.is_absolute() else directory / path)
