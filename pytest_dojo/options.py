"""Command-line options and ini keys of the plugin, and their parsers.

Every option has a ``--dojo-`` prefix and an ini key of the same name (``dojo_mesh``...); the
command line wins over the ini file, which wins over the default. Values are parsed once, in
``pytest_configure``, so a bad one is a single ``ERROR:`` line before any test runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hwmodel import HwModelError, Mesh, get_preset, parse_mesh, preset_names

DEFAULT_MESH = "5x5"
DEFAULT_CHIP = "d1"


def register(parser: pytest.Parser) -> None:
    """Add the ``dojo`` option group and its ini keys."""
    group = parser.getgroup("dojo", "pytest-dojo: simulated training throughput on a modeled accelerator mesh")
    group.addoption(
        "--dojo-mesh",
        dest="dojo_mesh",
        metavar="ROWSxCOLS",
        default=None,
        help=f"Mesh of chips to simulate, e.g. 5x5 (one Dojo training tile) or 2x8. Default: {DEFAULT_MESH!r}",
    )
    group.addoption(
        "--dojo-chip",
        dest="dojo_chip",
        metavar="NAME",
        default=None,
        help=f"Chip preset, one of: {', '.join(preset_names())}. Default: {DEFAULT_CHIP!r}",
    )
    parser.addini("dojo_mesh", help=f"Default for --dojo-mesh. Default: {DEFAULT_MESH!r}", default=DEFAULT_MESH)
    parser.addini("dojo_chip", help=f"Default for --dojo-chip. Default: {DEFAULT_CHIP!r}", default=DEFAULT_CHIP)


@dataclass(frozen=True, kw_only=True)
class DojoOptions:
    """The plugin's settings after parsing and validation."""

    mesh: Mesh
    chip: str


def _setting(config: pytest.Config, name: str) -> str:
    value = config.getoption(name)
    if value is None:
        value = config.getini(name)
    return str(value)


def parse_options(config: pytest.Config) -> DojoOptions:
    """Read and check every option; a bad value raises ``pytest.UsageError`` with one line."""
    mesh_text = _setting(config, "dojo_mesh")
    chip_text = _setting(config, "dojo_chip")
    try:
        mesh = parse_mesh(mesh_text)
    except HwModelError as error:
        raise pytest.UsageError(f"--dojo-mesh: {error}") from None
    try:
        chip = get_preset(chip_text).chip.name
    except HwModelError as error:
        raise pytest.UsageError(f"--dojo-chip: {error}") from None
    return DojoOptions(mesh=mesh, chip=chip)
