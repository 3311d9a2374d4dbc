"""The collectives a parallel plan issues, costed on its chip groups (seconds).

A plan's groups (:class:`~hwmodel.plan.GroupShape`) are runs of chips on the mesh, possibly strided.
When :mod:`hwmodel.collectives` offers the topology-aware ``collective(kind, system, group, bytes,
concurrent_groups=...)``, it prices every collective; until then the folded-ring alpha-beta model
of that module is applied here per group dimension:

* a line of ``k`` chips ``s`` apart is a folded ring whose logical hops cross ``s`` links each
  (latency ``s x h`` per hop) and whose links are shared by the groups interleaved with it
  (``min(s, G)`` of the ``G`` concurrent groups along a row; bandwidth ``B / sharing``);
* reduce-scatter and all-gather run along the rows, then along the columns on the row's shard;
  all-reduce is reduce-scatter plus all-gather (Ying et al. 2018, row then column);
* point-to-point: ``alpha + hops x h + N / B``.

Prices are cached per (kind, system, group, bytes): a plan issues the same few sizes many times.

Not modelled here: contention between different kinds of collectives running at once (tensor and
data parallel use disjoint links under :func:`~hwmodel.plan.plan_layout`, so they rarely meet).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from hwmodel import collectives
from hwmodel.errors import TopologyError
from hwmodel.plan import GroupShape
from hwmodel.system import System

KINDS = ("all_reduce", "reduce_scatter", "all_gather", "point_to_point")


def _line_s(length: int, stride: int, tile_length: int, bytes_per_rank: float, system: System, sharing: int) -> float:
    """Reduce-scatter time of a folded ring over ``length`` chips ``stride`` apart on one line."""
    if length <= 1 or bytes_per_rank <= 0:
        return 0.0
    fabric = system.fabric
    crosses_tile = (length - 1) * stride + 1 > tile_length
    link_bytes_per_s = fabric.link_bytes_per_s
    hop_latency_s = fabric.hop_latency_s
    if crosses_tile:
        link_bytes_per_s = min(link_bytes_per_s, fabric.inter_tile_link_bytes_per_s)
        hop_latency_s = max(hop_latency_s, fabric.inter_tile_hop_latency_s)
    hops_per_step = (1 if length == 2 else 2) * stride
    steps = length - 1
    return (
        steps * (fabric.collective_step_latency_s + hops_per_step * hop_latency_s)
        + steps / length * bytes_per_rank * max(sharing, 1) / link_bytes_per_s
    )


def _fallback_s(kind: str, system: System, group: GroupShape, bytes_per_rank: float, hops: int) -> float:
    fabric = system.fabric
    if kind == "point_to_point":
        return fabric.collective_step_latency_s + hops * fabric.hop_latency_s + bytes_per_rank / fabric.link_bytes_per_s
    row_sharing = min(group.col_stride, group.concurrent_groups)
    col_sharing = min(group.row_stride, -(-group.concurrent_groups // row_sharing))
    row = _line_s(group.cols, group.col_stride, fabric.tile_cols, bytes_per_rank, system, row_sharing)
    col = _line_s(group.rows, group.row_stride, fabric.tile_rows, bytes_per_rank / group.cols, system, col_sharing)
    one_way = row + col
    return 2.0 * one_way if kind == "all_reduce" else one_way


def group_collective_s(kind: str, system: System, group: GroupShape, bytes_per_rank: float, hops: int = 1) -> float:
    """Time of one collective of ``kind`` over ``group`` (``bytes_per_rank`` each); 0 for one chip.

    ``bytes_per_rank`` is the full buffer of each rank for all-reduce and reduce-scatter, and the
    gathered result for all-gather (its ``1/k`` shard is what each rank contributes). ``hops`` is
    the route length of a point-to-point transfer.

    >>> from hwmodel.presets import make_system
    >>> system = make_system("d1", "1x5")
    >>> round(group_collective_s("all_reduce", system, GroupShape(rows=1, cols=5), 5e6) * 1e6, 3)
    7.2
    """
    return group_collective(kind, system, group, bytes_per_rank, hops)[0]


@lru_cache(maxsize=65536)
def group_collective(
    kind: str, system: System, group: GroupShape, bytes_per_rank: float, hops: int = 1
) -> tuple[float, str]:
    """(seconds, algorithm) of one collective; see :func:`group_collective_s`."""
    if kind not in KINDS:
        raise TopologyError(f"collective kind must be one of {KINDS}, got {kind!r}")
    if bytes_per_rank < 0:
        raise TopologyError(f"collective size must be >= 0 bytes, got {bytes_per_rank}")
    if bytes_per_rank == 0 or (group.size == 1 and kind != "point_to_point"):
        return 0.0, "none"
    topology_aware = getattr(collectives, "collective", None)
    chip_group = getattr(collectives, "ChipGroup", None)
    if chip_group is None and topology_aware is not None:
        try:
            from hwmodel import routing  # the topology-aware collectives' groups, where present
        except ImportError:
            routing = None  # type: ignore[assignment]
        chip_group = getattr(routing, "ChipGroup", None)
    if topology_aware is not None and chip_group is not None and kind != "point_to_point":
        # NB: the plan's groups tile the mesh, so every group of a kind runs at once.
        cost = topology_aware(
            kind,
            system,
            chip_group(rows=group.rows, cols=group.cols, row_stride=group.row_stride, col_stride=group.col_stride),
            bytes_per_rank,
            concurrent_groups=group.concurrent_groups,
        )
        return float(cost.time_s), str(cost.algorithm)
    algorithm = "direct" if kind == "point_to_point" else "folded-ring-2d"
    return _fallback_s(kind, system, group, bytes_per_rank, hops), algorithm


@lru_cache(maxsize=1024)
def _price_table(kind: str, system: System, group: GroupShape) -> dict[float, float]:
    """Prices already computed for one (kind, system, group): hashing a system once per array."""
    return {}


def group_collectives_s(
    kind: str, system: System, group: GroupShape, bytes_per_rank: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """:func:`group_collective_s` of every size in an array (each distinct size priced once)."""
    if group.size == 1 or len(bytes_per_rank) == 0:
        return np.zeros(len(bytes_per_rank), dtype=np.float64)
    sizes, inverse = np.unique(bytes_per_rank, return_inverse=True)
    table = _price_table(kind, system, group)
    prices = np.empty(len(sizes), dtype=np.float64)
    for position, size in enumerate(sizes.tolist()):
        price = table.get(size)
        if price is None:
            price = table[size] = group_collective(kind, system, group, size)[0]
        prices[position] = price
    return np.asarray(prices[inverse], dtype=np.float64)


def clear_price_caches() -> None:
    """Forget every cached price (for cold-start measurements)."""
    group_collective.cache_clear()
    _price_table.cache_clear()
