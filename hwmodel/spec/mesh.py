"""A 2D grid of chips, ``rows x cols``, with no wraparound, and its hop distances.

Chip ``i`` sits at ``(i // cols, i % cols)``. Routes are dimension ordered (X, then Y), so the hop
count between two chips is their Manhattan distance.

Named meshes follow the Dojo packaging (``docs/reference/dojo-hardware.md``, "Training tile" and
"DIP, host, system" tables); the tile counts are stated [S], the 2D arrangement of the trays and
cabinets is not published, so the one below is ours [U]:

==========  =====================  ==========  =====================================================
name        tiles (rows x cols)    chips       arrangement
==========  =====================  ==========  =====================================================
``tile``    1 (1 x 1)              5 x 5       one training tile: 25 D1 [S]
``tray``    6 (2 x 3)              10 x 15     "system tray: 6 tiles (2x3)" [S]
``cabinet`` 12 (2 x 6)             10 x 30     "2 trays" [S], side by side along the long edge [U]
``exapod``  120 (10 x 12)          50 x 60     "10 cabinets = 120 tiles = 3,000 D1" [S], cabinets
                                               5 high x 2 wide [U]: the squarest 2D mesh of whole
                                               cabinets (diameter 108 hops; 10 x 1 cabinets would
                                               be 100 x 30, diameter 128)
==========  =====================  ==========  =====================================================

>>> mesh = parse_mesh("5x5")
>>> mesh.num_chips, mesh.coordinates(7), mesh.hops(0, 24)
(25, (1, 2), 8)
>>> parse_mesh("exapod").num_chips, parse_mesh("tray")
(3000, Mesh(rows=10, cols=15))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwmodel.errors import TopologyError

MAX_CHIPS = 1_000_000
_MESH_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")

NAMED_MESHES: dict[str, tuple[int, int]] = {
    "tile": (5, 5),
    "tray": (10, 15),
    "cabinet": (10, 30),
    "exapod": (50, 60),
}
"""Named meshes, in chips (rows, cols); see the module docstring for their sources."""


@dataclass(frozen=True, kw_only=True)
class Mesh:
    """``rows x cols`` chips in a 2D mesh (no wraparound)."""

    rows: int
    cols: int

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise TopologyError(f"mesh must have at least 1 row and 1 column, got {self.rows}x{self.cols}")
        if self.rows * self.cols > MAX_CHIPS:
            raise TopologyError(f"mesh {self.rows}x{self.cols} has more than {MAX_CHIPS} chips")

    @property
    def num_chips(self) -> int:
        """Chips in the mesh."""
        return self.rows * self.cols

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"

    def coordinates(self, chip: int) -> tuple[int, int]:
        """(row, col) of chip index ``chip``."""
        if not 0 <= chip < self.num_chips:
            raise TopologyError(f"chip {chip} is not on mesh {self}")
        return divmod(chip, self.cols)

    def hops(self, source: int, destination: int) -> int:
        """Links crossed by a dimension-ordered route between two chips."""
        (row_a, col_a), (row_b, col_b) = self.coordinates(source), self.coordinates(destination)
        return abs(row_a - row_b) + abs(col_a - col_b)

    @property
    def diameter_hops(self) -> int:
        """Longest route on the mesh: corner to corner."""
        return (self.rows - 1) + (self.cols - 1)


def mesh_names() -> tuple[str, ...]:
    """Names :func:`parse_mesh` accepts besides ``RxC``, smallest first."""
    return tuple(NAMED_MESHES)


def parse_mesh(text: str) -> Mesh:
    """Parse ``"RxC"`` (e.g. ``"5x5"``, ``"1x8"``) or a named mesh; anything else is a one-line error.

    >>> parse_mesh("2x8").num_chips
    16
    >>> parse_mesh(" Cabinet ")
    Mesh(rows=10, cols=30)
    """
    named = NAMED_MESHES.get(text.strip().lower())
    if named is not None:
        return Mesh(rows=named[0], cols=named[1])
    match = _MESH_PATTERN.match(text)
    if match is None:
        raise TopologyError(
            f"mesh must be ROWSxCOLS with positive integers (like 5x5) or one of {', '.join(NAMED_MESHES)}; "
            f"got {text!r}"
        )
    rows, cols = int(match.group(1)), int(match.group(2))
    if rows < 1 or cols < 1:
        raise TopologyError(f"mesh must have at least 1 row and 1 column, got {text!r}")
    return Mesh(rows=rows, cols=cols)
