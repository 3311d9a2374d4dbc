"""The collectives a parallel plan issues, costed on its chip groups (seconds).

A plan's groups (:class:`~hwmodel.search.plans.GroupShape`) are runs of chips on the mesh, possibly strided.
Every collective but point-to-point is priced by the topology-aware
:func:`~hwmodel.collectives.algorithms.collective` on the group's chips, with the plan's
concurrent groups sharing links; a point-to-point transfer costs ``alpha + hops x h + N / B``.

Prices are cached per (kind, mesh, fabric, group, bytes): a plan issues the same few sizes many times,
and a price does not depend on the chip.

Not modelled here: contention between different kinds of collectives running at once (tensor and
data parallel use disjoint links under :func:`~hwmodel.search.plans.plan_layout`, so they rarely meet).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from hwmodel.collectives.algorithms import collective_on
from hwmodel.collectives.routing import ChipGroup
from hwmodel.errors import TopologyError
from hwmodel.search.plans import GroupShape
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import Mesh
from hwmodel.spec.system import System

KINDS = ("all_reduce", "reduce_scatter", "all_gather", "point_to_point")


def _point_to_point_s(fabric: FabricSpec, bytes_per_rank: float, hops: int) -> float:
    """``alpha + hops x h + N / B`` of one transfer over ``hops`` links."""
    return fabric.collective_step_latency_s + hops * fabric.hop_latency_s + bytes_per_rank / fabric.link_bytes_per_s


def group_collective_s(kind: str, system: System, group: GroupShape, bytes_per_rank: float, hops: int = 1) -> float:
    """Time of one collective of ``kind`` over ``group`` (``bytes_per_rank`` each); 0 for one chip.

    ``bytes_per_rank`` is the full buffer of each rank for all-reduce and reduce-scatter, and the
    gathered result for all-gather (its ``1/k`` shard is what each rank contributes). ``hops`` is
    the route length of a point-to-point transfer.

    >>> from hwmodel.spec.presets import make_system
    >>> system = make_system("d1", "1x5")
    >>> round(group_collective_s("all_reduce", system, GroupShape(rows=1, cols=5), 5e6) * 1e6, 3)
    7.2
    """
    return group_collective(kind, system, group, bytes_per_rank, hops)[0]


def group_collective(
    kind: str, system: System, group: GroupShape, bytes_per_rank: float, hops: int = 1
) -> tuple[float, str]:
    """(seconds, algorithm) of one collective; see :func:`group_collective_s`."""
    return _priced(kind, system.mesh, system.fabric, group, bytes_per_rank, hops)


@lru_cache(maxsize=65536)
def _priced(
    kind: str, mesh: Mesh, fabric: FabricSpec, group: GroupShape, bytes_per_rank: float, hops: int
) -> tuple[float, str]:
    """:func:`group_collective`, cached on what a price depends on: the mesh and the fabric, not the chip."""
    if kind not in KINDS:
        raise TopologyError(f"collective kind must be one of {KINDS}, got {kind!r}")
    if bytes_per_rank < 0:
        raise TopologyError(f"collective size must be >= 0 bytes, got {bytes_per_rank}")
    if bytes_per_rank == 0 or (group.size == 1 and kind != "point_to_point"):
        return 0.0, "none"
    if kind != "point_to_point":
        # NB: the plan's groups tile the mesh, so every group of a kind runs at once.
        chips = ChipGroup(rows=group.rows, cols=group.cols, row_stride=group.row_stride, col_stride=group.col_stride)
        cost = collective_on(kind, mesh, fabric, chips, bytes_per_rank, concurrent_groups=group.concurrent_groups)
        return float(cost.time_s), str(cost.algorithm)
    return _point_to_point_s(fabric, bytes_per_rank, hops), "direct"


@lru_cache(maxsize=1024)
def _price_table(kind: str, mesh: Mesh, fabric: FabricSpec, group: GroupShape) -> dict[float, float]:
    """Prices already computed for one (kind, mesh, fabric, group): hashing those once per array."""
    return {}


def group_collectives_s(
    kind: str, system: System, group: GroupShape, bytes_per_rank: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """:func:`group_collective_s` of every size in an array (each distinct size priced once)."""
    if group.size == 1 or len(bytes_per_rank) == 0:
        return np.zeros(len(bytes_per_rank), dtype=np.float64)
    sizes, inverse = np.unique(bytes_per_rank, return_inverse=True)
    table = _price_table(kind, system.mesh, system.fabric, group)
    prices = np.empty(len(sizes), dtype=np.float64)
    for position, size in enumerate(sizes.tolist()):
        price = table.get(size)
        if price is None:
            price = table[size] = _priced(kind, system.mesh, system.fabric, group, size, 1)[0]
        prices[position] = price
    return np.asarray(prices[inverse], dtype=np.float64)


def clear_price_caches() -> None:
    """Forget every cached price (for cold-start measurements)."""
    _priced.cache_clear()
    _price_table.cache_clear()
