"""Groups of chips, the lines they decompose into, and the links and latency of routes along them.

A collective runs on a :class:`ChipGroup`: a (strided) rectangle of the mesh. Its algorithms work
one dimension at a time, on :class:`Line` s: a row of the group (``cols`` ranks ``col_stride``
chips apart) or a column. This module works out, for such a line, what one flow gets from the
fabric: bandwidth per direction after sharing, and latency of a route of a given length.

Placement of congruent groups (``concurrent_groups > 1``): groups interleave before they repeat.
A group's block spans ``rows x row_stride`` by ``cols x col_stride`` chips; the
``row_stride x col_stride`` offsets inside a block are filled first (along a row first), then
further blocks. So ``min(col_stride, G)`` groups share each row of links, and
``min(row_stride, ceil(G / min(col_stride, G)))`` share each column of links. Every flow of a
folded ring crosses each link of its span once per direction per step, so a link carries one flow
per sharing group: the per-flow bandwidth is the link's divided by the sharing.

Tile boundaries: a ``mesh2d`` line is as fast as its slowest link. If any placed group's row (or
column) crosses a tile boundary, that line uses the inter-tile link bandwidth, and a route pays
the inter-tile latency once per tile boundary it can cross. A ``switch`` line that leaves its node
uses the inter-node network for every step (rings are as slow as their slowest hop).

Dimension-ordered (XY) routes: a flow moves along its row, then along its column, so the hops
between two chips are their Manhattan distance.

Not modelled: adaptive routing, head-of-line blocking, DIP Z-plane shortcuts across the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwmodel.errors import TopologyError
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import Mesh


@dataclass(frozen=True, kw_only=True)
class ChipGroup:
    """Chips that run one collective: ``rows x cols`` ranks, ``row_stride`` / ``col_stride`` apart.

    ``ChipGroup(rows=1, cols=5)`` is one row of a tile; ``ChipGroup(rows=5, cols=1, row_stride=5)``
    is every fifth chip down a column. Congruent groups (the same shape at other offsets) may run
    at once: see ``concurrent_groups`` of :func:`hwmodel.collectives.algorithms.collective`.

    >>> group = ChipGroup(rows=2, cols=3, col_stride=2)
    >>> group.num_chips, group.span_rows, group.span_cols
    (6, 2, 5)
    """

    rows: int
    cols: int
    row_stride: int = 1
    col_stride: int = 1

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "row_stride", "col_stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TopologyError(f"chip group {name} must be an integer >= 1, got {value!r}")

    @classmethod
    def whole(cls, mesh: Mesh) -> ChipGroup:
        """Every chip of ``mesh``."""
        return cls(rows=mesh.rows, cols=mesh.cols)

    @property
    def num_chips(self) -> int:
        """Ranks in the group."""
        return self.rows * self.cols

    @property
    def span_rows(self) -> int:
        """Mesh rows from the group's first chip to its last."""
        return (self.rows - 1) * self.row_stride + 1

    @property
    def span_cols(self) -> int:
        """Mesh columns from the group's first chip to its last."""
        return (self.cols - 1) * self.col_stride + 1

    def __str__(self) -> str:
        strides = f" stride {self.row_stride}x{self.col_stride}" if (self.row_stride, self.col_stride) != (1, 1) else ""
        return f"{self.rows}x{self.cols}{strides}"


def check_group(mesh: Mesh, group: ChipGroup, concurrent_groups: int) -> None:
    """The group must fit on the mesh, and so must ``concurrent_groups`` disjoint copies of it."""
    if not isinstance(concurrent_groups, int) or concurrent_groups < 1:
        raise TopologyError(f"concurrent_groups must be an integer >= 1, got {concurrent_groups!r}")
    if group.span_rows > mesh.rows or group.span_cols > mesh.cols:
        raise TopologyError(
            f"chip group {group} spans {group.span_rows}x{group.span_cols} chips, more than mesh {mesh}"
        )
    if concurrent_groups * group.num_chips > mesh.num_chips:
        raise TopologyError(
            f"{concurrent_groups} groups of {group.num_chips} chips need {concurrent_groups * group.num_chips} chips; "
            f"mesh {mesh} has {mesh.num_chips}"
        )


def sharing(group: ChipGroup, concurrent_groups: int) -> tuple[int, int]:
    """Groups sharing each (row, column) of links under the interleaved placement.

    >>> sharing(ChipGroup(rows=5, cols=5, row_stride=2, col_stride=2), 4)
    (2, 2)
    >>> sharing(ChipGroup(rows=1, cols=5, col_stride=5), 3)
    (3, 1)
    """
    along_row = min(group.col_stride, concurrent_groups)
    along_col = min(group.row_stride, -(-concurrent_groups // along_row))
    return along_row, along_col


def crosses_tile(members: int, stride: int, mesh_length: int, tile_length: int, concurrent_groups: int) -> bool:
    """Whether any placed line of ``members`` ranks ``stride`` apart crosses a tile boundary.

    A lone group (``concurrent_groups == 1``) sits at offset 0. Otherwise lines may start at
    ``block x members x stride + offset`` for ``offset < min(stride, concurrent_groups)`` and
    every block that fits in ``mesh_length`` (the collective is as slow as its slowest group).

    >>> crosses_tile(5, 1, 15, 5, 3), crosses_tile(3, 1, 15, 5, 2), crosses_tile(6, 1, 6, 5, 1)
    (False, True, True)
    """
    span = (members - 1) * stride + 1
    if members <= 1 or mesh_length <= tile_length:
        return False
    if concurrent_groups == 1:
        return span > tile_length
    block = members * stride
    blocks = max(mesh_length // block, 1)
    interleaved = min(stride, concurrent_groups)
    starts = (np.arange(blocks)[:, None] * block + np.arange(interleaved)[None, :]).ravel()
    starts = starts[starts + span <= mesh_length]
    if starts.size == 0:
        starts = np.zeros(1, dtype=np.int64)
    return bool(np.any(starts // tile_length != (starts + span - 1) // tile_length))


@dataclass(frozen=True, kw_only=True)
class Line:
    """One dimension of a group as the fabric sees it.

    Attributes:
        members: ranks on the line.
        stride_hops: links between neighbouring ranks (mesh2d); 1 for a switch.
        link_bytes_per_s: bandwidth one flow gets on the line's slowest link, after sharing with
            concurrent groups (mesh2d), or one port (switch), per direction.
        hop_latency_s: latency of one on-tile hop (mesh2d) or one trip through the switch.
        boundary_latency_s: latency of a hop that crosses a tile boundary (mesh2d) or of a trip
            between nodes (switch).
        tile_length: chips per tile along this dimension.
        crosses_tile: whether the line crosses a tile (node) boundary.
        switched: True on a switch fabric: distance and link sharing do not matter, ports do.
    """

    members: int
    stride_hops: int
    link_bytes_per_s: float
    hop_latency_s: float
    boundary_latency_s: float
    tile_length: int
    crosses_tile: bool
    switched: bool

    def route_latency_s(self, distance_ranks: int) -> float:
        """Latency of a flow between ranks ``distance_ranks`` apart on this line.

        On a mesh: ``hops x h`` with ``hops = distance x stride``, where each tile boundary the
        route can cross (``ceil(hops / tile_length)`` of them, if the line crosses any) costs the
        inter-tile latency instead. On a switch: one trip, through the network if the line
        leaves its node.

        >>> line = Line(members=10, stride_hops=1, link_bytes_per_s=1.0, hop_latency_s=1.0,
        ...             boundary_latency_s=3.0, tile_length=5, crosses_tile=True, switched=False)
        >>> line.route_latency_s(2), line.route_latency_s(9)
        (4.0, 13.0)
        """
        if distance_ranks <= 0:
            return 0.0
        if self.switched:
            return self.boundary_latency_s if self.crosses_tile else self.hop_latency_s
        hops = distance_ranks * self.stride_hops
        boundaries = min(hops, -(-hops // self.tile_length)) if self.crosses_tile else 0
        return (hops - boundaries) * self.hop_latency_s + boundaries * self.boundary_latency_s


@lru_cache(maxsize=4096)
def group_lines(mesh: Mesh, fabric: FabricSpec, group: ChipGroup, concurrent_groups: int) -> tuple[Line, Line]:
    """The (row, column) lines of ``group`` on ``mesh``, with ``concurrent_groups`` placed alike."""
    along_row, along_col = sharing(group, concurrent_groups)
    switched = fabric.topology == "switch"
    lines = []
    for members, stride, mesh_length, tile_length, shared in (
        (group.cols, group.col_stride, mesh.cols, fabric.tile_cols, along_row),
        (group.rows, group.row_stride, mesh.rows, fabric.tile_rows, along_col),
    ):
        crossing = crosses_tile(members, stride, mesh_length, tile_length, concurrent_groups)
        bandwidth = fabric.link_bytes_per_s
        if crossing:
            slowest = min(bandwidth, fabric.inter_tile_link_bytes_per_s)
            bandwidth = fabric.inter_tile_link_bytes_per_s if switched else slowest
        lines.append(
            Line(
                members=members,
                stride_hops=1 if switched else stride,
                link_bytes_per_s=bandwidth if switched else bandwidth / shared,
                hop_latency_s=fabric.hop_latency_s,
                boundary_latency_s=fabric.inter_tile_hop_latency_s,
                tile_length=tile_length,
                crosses_tile=crossing,
                switched=switched,
            )
        )
    return lines[0], lines[1]
