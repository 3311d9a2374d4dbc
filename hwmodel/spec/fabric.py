"""The links between chips, and the memory that sits behind them.

Units: bytes/s per direction, seconds, bytes. Two topologies differ only where they must:

* ``mesh2d``: each chip links to its four neighbours (no wraparound); chips are grouped into tiles
  (a Dojo training tile is 5x5 D1s), and links that cross a tile boundary are a slower tier.
* ``switch``: the chips of one tile (here: one GPU node, ``tile_rows x tile_cols`` = 1 x 8) reach
  each other through a non-blocking switch (NVSwitch), each chip with its own port of
  ``link_bytes_per_s``; chips of different tiles (nodes) talk over a slower network
  (InfiniBand), each chip with its own NIC (rail-optimised) of ``inter_tile_link_bytes_per_s``.
  A hop is one trip through a switch.

Backing memory (a Dojo tile's DIP HBM) is given per chip: the share of the DIPs' capacity and
bandwidth that one chip of a fully used tile gets. Where the DIPs of a larger unit are fewer than
one tile's worth per tile (a Dojo tray has 20 DIPs for its 6 tiles), :meth:`FabricSpec.backing_share`
scales those per-chip figures down for meshes larger than one tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwmodel.errors import SpecError

TOPOLOGIES = ("mesh2d", "switch")
HOST_INGEST_PATHS = ("dip", "none")


@dataclass(frozen=True, kw_only=True)
class FabricSpec:
    """Chip-to-chip links and backing memory.

    Attributes:
        topology: "mesh2d" (each chip links to its up to four neighbours, no wraparound) or
            "switch" (all chips of a tile behind one non-blocking switch).
        link_bytes_per_s: one neighbour link (mesh2d) or one chip's switch port (switch), one direction.
        hop_latency_s: time for a message head to cross one link (die to die) or the switch.
        collective_step_latency_s: fixed cost of each step of a collective algorithm
            (synchronisation with the peer), paid once per step on top of the hops.
        tile_rows / tile_cols: chips per tile (a GPU node for "switch"); a link between tiles
            uses the inter-tile figures.
        inter_tile_link_bytes_per_s: one chip-to-chip link across a tile boundary (mesh2d) or one
            chip's network port between nodes (switch), one direction.
        inter_tile_hop_latency_s: latency of such a link (for "switch": end to end between nodes).
        backing_memory_bytes_per_chip: backing memory (DIP HBM) capacity per chip; 0 for none.
        backing_memory_bytes_per_s_per_chip: its bandwidth per chip, path included.
        backing_memory_pool_chips: chips that share one tile's worth of backing memory once a mesh
            spans more than one tile (a Dojo tray: 150 chips behind 20 DIPs); 0 if every tile keeps
            its own.
        host_ingest: how training samples reach the chips from the hosts: ``"dip"`` through the
            DIPs at the tile edges (:func:`hwmodel.studies.ingest.ingest_path_for`), ``"none"``
            where ingest is not modelled.
        source: where the figures come from.

    Not modelled here: the routes themselves (see :mod:`hwmodel.collectives.routing`), oversubscribed
    networks between nodes, in-switch reduction (NVLink SHARP).
    """

    name: str
    topology: str
    link_bytes_per_s: float
    hop_latency_s: float
    collective_step_latency_s: float
    tile_rows: int
    tile_cols: int
    inter_tile_link_bytes_per_s: float
    inter_tile_hop_latency_s: float
    backing_memory_bytes_per_chip: float = 0.0
    backing_memory_bytes_per_s_per_chip: float = 0.0
    backing_memory_pool_chips: int = 0
    host_ingest: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.host_ingest not in HOST_INGEST_PATHS:
            raise SpecError(
                f"fabric {self.name}: host_ingest must be one of {HOST_INGEST_PATHS}, got {self.host_ingest!r}"
            )
        if self.topology not in TOPOLOGIES:
            raise SpecError(f"fabric {self.name}: topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        for name in ("link_bytes_per_s", "inter_tile_link_bytes_per_s"):
            if not getattr(self, name) > 0:
                raise SpecError(f"fabric {self.name}: {name} must be > 0, got {getattr(self, name)}")
        for name in (
            "hop_latency_s",
            "collective_step_latency_s",
            "inter_tile_hop_latency_s",
            "backing_memory_bytes_per_chip",
            "backing_memory_bytes_per_s_per_chip",
        ):
            if getattr(self, name) < 0:
                raise SpecError(f"fabric {self.name}: {name} must be >= 0, got {getattr(self, name)}")
        if self.tile_rows < 1 or self.tile_cols < 1:
            raise SpecError(f"fabric {self.name}: tile must be at least 1x1, got {self.tile_rows}x{self.tile_cols}")
        if (self.backing_memory_bytes_per_chip > 0) != (self.backing_memory_bytes_per_s_per_chip > 0):
            raise SpecError(f"fabric {self.name}: backing memory needs both a capacity and a bandwidth, or neither")
        if self.backing_memory_pool_chips < 0:
            raise SpecError(
                f"fabric {self.name}: backing_memory_pool_chips must be >= 0, got {self.backing_memory_pool_chips}"
            )

    def backing_share(self, num_chips: int) -> float:
        """Fraction of the per-chip backing-memory figures each chip of a ``num_chips`` mesh gets.

        A mesh within one tile keeps the tile's DIPs (1.0). A larger mesh has one tile's worth of
        DIPs per pool of ``backing_memory_pool_chips`` chips:
        ``min(1, tile_chips x ceil(n / pool) / n)``. On Dojo (20 DIPs per 150-chip tray): a tray's
        chips get 25/150 of a lone tile's share; an ExaPOD's 3,000 chips get 25 x 20 / 3,000, i.e.
        400 DIPs, 12.8 TB, as published ("13 TB HBM").

        >>> fabric = FabricSpec(name="f", topology="mesh2d", link_bytes_per_s=1.0, hop_latency_s=0.0,
        ...     collective_step_latency_s=0.0, tile_rows=5, tile_cols=5, inter_tile_link_bytes_per_s=1.0,
        ...     inter_tile_hop_latency_s=0.0, backing_memory_pool_chips=150, host_ingest="none")
        >>> [round(fabric.backing_share(n), 4) for n in (1, 25, 50, 150, 3000)]
        [1.0, 1.0, 0.5, 0.1667, 0.1667]
        """
        if self.backing_memory_pool_chips == 0 or num_chips <= 0:
            return 1.0
        tile_chips = self.tile_rows * self.tile_cols
        pools = math.ceil(num_chips / self.backing_memory_pool_chips)
        return min(1.0, tile_chips * pools / num_chips)
