"""A 2D grid of chips, ``rows x cols``, with no wraparound, and its hop distances.

Chip ``i`` sits at ``(i // cols, i % cols)``. Routes are dimension ordered (X, then Y), so the hop
count between two chips is their Manhattan distance.

>>> mesh = parse_mesh("5x5")
>>> mesh.num_chips, mesh.coordinates(7), mesh.hops(0, 24)
(25, (1, 2), 8)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwmodel.errors import TopologyError

MAX_CHIPS = 1_000_000
_MESH_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


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


def parse_mesh(text: str) -> Mesh:
    """Parse ``"RxC"`` (e.g. ``"5x5"``, ``"1x8"``); anything else is a one-line error.

    >>> parse_mesh("2x8").num_chips
    16
    """
    match = _MESH_PATTERN.match(text)
    if match is None:
        raise TopologyError(f"mesh must be ROWSxCOLS with positive integers, like 5x5; got {text!r}")
    rows, cols = int(match.group(1)), int(match.group(2))
    if rows < 1 or cols < 1:
        raise TopologyError(f"mesh must have at least 1 row and 1 column, got {text!r}")
    return Mesh(rows=rows, cols=cols)
