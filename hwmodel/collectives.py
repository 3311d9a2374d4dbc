"""Collectives on a 2D mesh without wraparound, with an alpha-beta cost per step and per link.

Notation (``shared/reference/collectives-and-capture.md``): ``p`` ranks, ``N`` bytes per rank,
``B`` link bandwidth per direction, ``alpha`` per-step latency, ``h`` latency per hop.

A line of ``k`` chips has no wrap link, so a ring over it is *folded*: order 0, 2, 4, ..., 5, 3, 1.
Each logical hop crosses at most 2 links and each link direction is used once per step, so the
reduce-scatter costs ``(k-1)(alpha + 2h) + (k-1)/k * N/B``: the bandwidth term of a one-way ring,
twice that of a torus ring, which can send half each way.

On an ``R x C`` mesh the all-reduce runs in two phases (Ying et al. 2018, row then column):
reduce-scatter along each row (``N``), all-reduce along each column on the ``N/C`` shard,
all-gather along each row. All rows (and all columns) run at once on disjoint links.

Rows or columns longer than a tile cross tile edges, whose links are slower: a ring is as fast as
its slowest link, so such a line uses the inter-tile bandwidth and latency.

Not modelled here: link sharing between crossing flows, in-network reduction, the reduction
arithmetic itself (``gamma``: a D1 adds at 362 TFLOP/s, far faster than its links deliver).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwmodel.errors import TopologyError
from hwmodel.fabric import FabricSpec
from hwmodel.mesh import Mesh


@dataclass(frozen=True, kw_only=True)
class CollectiveCost:
    """Time of one collective and how it was computed."""

    kind: str
    algorithm: str
    bytes_per_rank: float
    ranks: int
    time_s: float
    steps: int


@dataclass(frozen=True, kw_only=True)
class LineLinks:
    """The bottleneck link of a line of chips: bandwidth per direction and latency per hop."""

    bytes_per_s: float
    hop_latency_s: float


def line_links(length: int, tile_length: int, fabric: FabricSpec) -> LineLinks:
    """Links of a row or column of ``length`` chips on tiles ``tile_length`` chips long."""
    if length > tile_length:
        return LineLinks(
            bytes_per_s=min(fabric.link_bytes_per_s, fabric.inter_tile_link_bytes_per_s),
            hop_latency_s=max(fabric.hop_latency_s, fabric.inter_tile_hop_latency_s),
        )
    return LineLinks(bytes_per_s=fabric.link_bytes_per_s, hop_latency_s=fabric.hop_latency_s)


def folded_ring_reduce_scatter_s(length: int, bytes_per_rank: float, links: LineLinks, step_latency_s: float) -> float:
    """Reduce-scatter (or all-gather) of ``bytes_per_rank`` over a folded ring of ``length`` chips.

    ``(k-1)(alpha + hops*h) + (k-1)/k * N/B`` with ``hops`` = 1 for two chips, else 2.

    >>> from hwmodel.collectives import LineLinks
    >>> folded_ring_reduce_scatter_s(5, 5e6, LineLinks(bytes_per_s=1e9, hop_latency_s=0.0), 0.0)
    0.004
    """
    if length <= 1 or bytes_per_rank <= 0:
        return 0.0
    hops_per_step = 1 if length == 2 else 2
    steps = length - 1
    return steps * (step_latency_s + hops_per_step * links.hop_latency_s) + steps / length * bytes_per_rank / links.bytes_per_s


def mesh_all_reduce(mesh: Mesh, fabric: FabricSpec, bytes_per_rank: float) -> CollectiveCost:
    """All-reduce of ``bytes_per_rank`` over every chip of ``mesh``: rows, then columns, then rows."""
    if bytes_per_rank < 0:
        raise TopologyError(f"collective size must be >= 0 bytes, got {bytes_per_rank}")
    if mesh.num_chips == 1 or bytes_per_rank == 0:
        return CollectiveCost(kind="all_reduce", algorithm="none", bytes_per_rank=bytes_per_rank,
                              ranks=mesh.num_chips, time_s=0.0, steps=0)
    alpha = fabric.collective_step_latency_s
    row_links = line_links(mesh.cols, fabric.tile_cols, fabric)
    col_links = line_links(mesh.rows, fabric.tile_rows, fabric)
    row_phase = folded_ring_reduce_scatter_s(mesh.cols, bytes_per_rank, row_links, alpha)
    col_shard = bytes_per_rank / mesh.cols
    col_phase = 2 * folded_ring_reduce_scatter_s(mesh.rows, col_shard, col_links, alpha)
    time_s = 2 * row_phase + col_phase
    steps = 2 * (mesh.cols - 1) + 2 * (mesh.rows - 1)
    return CollectiveCost(kind="all_reduce", algorithm="folded-ring-2d", bytes_per_rank=bytes_per_rank,
                          ranks=mesh.num_chips, time_s=time_s, steps=steps)
