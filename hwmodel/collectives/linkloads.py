"""Traffic on every directed link of a mesh during one collective: the data of a link heatmap.

Units: bytes and seconds. For a collective over the whole mesh, each phase of the chosen algorithm
(:func:`hwmodel.collectives.algorithms.algorithm_phases`) runs its schedule along every row or column; the
schedule's flows follow XY routes, so each directed link carries the sum of the flows that cross
it (:func:`hwmodel.collectives.schedules.directed_link_loads`). A link's busy time is its bytes over its
bandwidth (inter-tile links are slower); its utilization is busy time over the collective's time.

Directions are named from the sending chip: ``east`` to column + 1, ``west`` to column - 1,
``south`` to row + 1, ``north`` to row - 1. A direction with no link (the mesh's edge) reads 0.

>>> from hwmodel.spec.presets import make_system
>>> loads = link_loads("all_reduce", make_system("d1", "1x3"), 3e6, algorithm="folded-ring-2d")
>>> loads.bytes_per_link[0][0]  # chip (0, 0): east, west, south, north
[4000000.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.collectives.algorithms import algorithm_phases, collective
from hwmodel.collectives.routing import ChipGroup
from hwmodel.collectives.schedules import directed_link_loads
from hwmodel.errors import TopologyError
from hwmodel.spec.system import System

DIRECTIONS = ("east", "west", "south", "north")


@dataclass(frozen=True, kw_only=True)
class LinkLoads:
    """Bytes and busy time per directed link, as nested lists ``[row][col][direction]``.

    Attributes:
        kind / algorithm: the collective and the algorithm that produced the traffic.
        rows / cols: mesh shape.
        directions: names of the last index, :data:`DIRECTIONS`.
        bytes_per_link: bytes each chip sends over each of its links.
        busy_s_per_link: those bytes over that link's bandwidth.
        time_s: the collective's modelled time.

    Not modelled: traffic of other collectives or of spill to DIPs running at the same time.
    """

    kind: str
    algorithm: str
    rows: int
    cols: int
    directions: tuple[str, ...]
    bytes_per_link: list[list[list[float]]]
    busy_s_per_link: list[list[list[float]]]
    time_s: float

    @property
    def max_utilization(self) -> float:
        """Busiest link's busy time over the collective's time (0 when nothing moves)."""
        if self.time_s <= 0:
            return 0.0
        return float(np.max(np.asarray(self.busy_s_per_link))) / self.time_s

    @property
    def total_bytes(self) -> float:
        """Bytes over all links (a byte crossing three links counts three times)."""
        return float(np.sum(np.asarray(self.bytes_per_link)))


def _link_bandwidths(system: System) -> npt.NDArray[np.float64]:
    """``[row, col, direction]`` bandwidth of each directed link (inter-tile where it crosses a tile edge)."""
    rows, cols = system.mesh.rows, system.mesh.cols
    fabric = system.fabric
    bandwidth = np.full((rows, cols, 4), fabric.link_bytes_per_s)
    slow = min(fabric.link_bytes_per_s, fabric.inter_tile_link_bytes_per_s)
    col = np.arange(cols)
    row = np.arange(rows)
    bandwidth[:, (col + 1) % fabric.tile_cols == 0, 0] = slow
    bandwidth[:, col % fabric.tile_cols == 0, 1] = slow
    bandwidth[(row + 1) % fabric.tile_rows == 0, :, 2] = slow
    bandwidth[row % fabric.tile_rows == 0, :, 3] = slow
    return bandwidth


def link_loads(kind: str, system: System, bytes_per_rank: float, *, algorithm: str | None = None) -> LinkLoads:
    """Per-link traffic of ``kind`` over every chip of ``system`` (the fastest algorithm unless named).

    Only ``mesh2d`` fabrics have links to map; point-to-point moves one flow and is left out.
    """
    if system.fabric.topology != "mesh2d":
        raise TopologyError(f"link loads need a mesh2d fabric; {system.fabric.name} is {system.fabric.topology!r}")
    group = ChipGroup.whole(system.mesh)
    cost = collective(kind, system, group, bytes_per_rank, algorithm=algorithm)
    if cost.kind == "point_to_point":
        raise TopologyError("link loads are mapped for all_reduce, reduce_scatter, all_gather and broadcast")
    rows, cols = system.mesh.rows, system.mesh.cols
    loads = np.zeros((rows, cols, 4))
    if cost.algorithm != "none":
        phases = algorithm_phases(cost.kind, system.fabric.topology, rows, cols, bytes_per_rank)[cost.algorithm]
        for phase in phases:
            members = cols if phase.dimension == "row" else rows
            if members <= 1:
                continue
            up, down = (
                np.asarray(x) * phase.bytes_per_rank
                for x in directed_link_loads(phase.schedule, members, phase.backwards)
            )
            if phase.dimension == "row":
                lines = slice(0, 1) if phase.root_line_only else slice(None)
                loads[lines, :-1, 0] += up
                loads[lines, 1:, 1] += down
            else:
                lines = slice(0, 1) if phase.root_line_only else slice(None)
                loads[:-1, lines, 2] += up[:, None]
                loads[1:, lines, 3] += down[:, None]
    busy = loads / _link_bandwidths(system)
    return LinkLoads(
        kind=cost.kind,
        algorithm=cost.algorithm,
        rows=rows,
        cols=cols,
        directions=DIRECTIONS,
        bytes_per_link=loads.tolist(),
        busy_s_per_link=busy.tolist(),
        time_s=cost.time_s,
    )
