"""Collectives on a 2D mesh without wraparound (or a switched GPU fabric), alpha-beta per hop and link.

Notation (``docs/reference/collectives.md``): ``p`` ranks, ``N`` bytes per rank
(the full buffer: the input of a reduce-scatter, the output of an all-gather, the message of a
broadcast or point-to-point), ``B`` link bandwidth per direction, ``alpha`` per-step latency
(``FabricSpec.collective_step_latency_s``), ``h`` latency per hop.

Every algorithm is a sequence of *phases*, each one :mod:`~hwmodel.collectives.schedules` schedule run along
every row (or every column) of the group at once, on disjoint links. A phase along a line of ``k``
ranks costs (shared formula; the topologies differ only in what a route and a link are, see
:mod:`hwmodel.collectives.routing`)::

    steps x alpha + sum over steps of route_latency(longest flow of the step)
    + N x (bytes on the busiest link, summed over steps, in units of N) / B_per_flow

On a mesh the busiest link counts every flow whose XY route crosses it (flows of concurrent
groups too, through ``B_per_flow``); on a switch only each rank's port counts.

Algorithms compared for each call (the fastest wins, ties broken by name, as NCCL picks per size):

* ``folded-ring-2d`` (mesh) / ``hierarchical-ring`` (switch), rows first, and the same columns
  first: all-reduce = ring reduce-scatter along rows (``N``), ring all-reduce along columns on
  the ``N/C`` shard, ring all-gather along rows (Ying et al. 2018). On an ``R x C`` mesh::

      T = 2(C-1)(alpha + 2h) + 2(C-1)/C * N/B + 2(R-1)(alpha + 2h) + 2(R-1)/R * N/(C B)

  (a 2-rank line pays 1 hop per step instead of 2). A line of ``k`` chips has no wrap link, so
  the ring is folded, 0, 2, 4, ..., 5, 3, 1: each logical hop crosses up to 2 links and every
  link direction is busy every step, so a folded ring moves ``(k-1)/k * N/B`` where a torus ring
  sending half each way moves ``(k-1)/k * N/(2B)``: folding halves the usable bandwidth. A flat
  ring through all ``R x C`` chips is no way out on a Dojo tile: a grid graph has a Hamiltonian
  cycle only if ``R x C`` is even, so a 5x5 has none.
* ``halving-doubling-2d`` (Rabenseifner): recursive-halving reduce-scatter and recursive-doubling
  all-gather per dimension: ``~log2 p`` steps instead of ``~2(R+C)``, but on a mesh the flows of
  a step at distance ``d`` share links ``d`` deep, so it moves more bytes per link.
* ``recursive-doubling-2d`` (all-reduce only): the whole vector every step, ``log2 p`` steps:
  the latency-optimal choice for small messages.
* broadcast: ``binomial-tree-2d`` (along the root's row, then every column; ``N`` per step) and
  ``scatter-allgather-2d`` (van de Geijn: binomial scatter, then ring all-gather).
* point-to-point: ``direct`` (cut-through along the XY route from the group's first chip to its
  last: ``alpha + route latency + N / B_slowest``).

Worked example, all-reduce over a 5x5 Dojo tile (B = 2 TB/s, h = 100 ns, alpha = 200 ns),
``N = 100 MB``, ``folded-ring-2d``: rows: ``2 x 4 x (200 + 200) ns = 3.2 us`` and
``2 x 4/5 x 100 MB / 2 TB/s = 80 us``; columns on 20 MB: ``3.2 us`` and ``16 us``; total
``102.4 us``.

Not modelled: in-network reduction, the reduction arithmetic (``gamma``: a D1 adds far faster than
its links deliver), pipelining of a phase's chunks into the next phase, protocol overheads (NCCL's
LL/LL128/Simple), congestion from traffic outside the collective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from hwmodel.collectives.routing import ChipGroup, Line, check_group, group_lines
from hwmodel.collectives.schedules import summarize
from hwmodel.errors import TopologyError
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import Mesh
from hwmodel.spec.system import System

__all__ = [
    "KINDS",
    "ChipGroup",
    "CollectiveCost",
    "Phase",
    "algorithm_phases",
    "collective",
    "collective_on",
]

KINDS = ("all_reduce", "reduce_scatter", "all_gather", "broadcast", "point_to_point")


@dataclass(frozen=True, kw_only=True)
class CollectiveCost:
    """Time of one collective and how it was computed.

    Attributes:
        kind: one of :data:`KINDS`.
        algorithm: the algorithm chosen ("none" when nothing moves).
        bytes_per_rank: ``N`` as given.
        ranks: chips in one group.
        time_s: ``latency_s + transfer_s``.
        steps: communication steps, summed over phases.
        latency_s: the ``alpha`` and hop part.
        transfer_s: the bytes-over-bandwidth part.
        alternatives: every algorithm considered, ``(name, time_s)``, fastest first.
        concurrent_groups: congruent groups that ran at once (sharing links).
    """

    kind: str
    algorithm: str
    bytes_per_rank: float
    ranks: int
    time_s: float
    steps: int
    latency_s: float = 0.0
    transfer_s: float = 0.0
    alternatives: tuple[tuple[str, float], ...] = ()
    concurrent_groups: int = 1


@dataclass(frozen=True, kw_only=True)
class Phase:
    """One schedule run along every row (``dimension="row"``) or column of the group at once.

    ``root_line_only``: only the line through the root (rank 0) runs it (a broadcast's first phase).
    ``backwards``: the schedule runs in reverse (an all-gather from a reduce-scatter schedule).
    """

    dimension: str
    schedule: str
    bytes_per_rank: float
    backwards: bool = False
    root_line_only: bool = False


def _two_phase(first: str, schedule: str, rows: int, cols: int, size: float, out_and_back: bool) -> list[Phase]:
    """Reduce-scatter along ``first``, then the other dimension on the shard (and back if ``out_and_back``)."""
    second = "col" if first == "row" else "row"
    shard = size / (cols if first == "row" else rows)
    phases = [
        Phase(dimension=first, schedule=schedule, bytes_per_rank=size),
        Phase(dimension=second, schedule=schedule, bytes_per_rank=shard),
    ]
    if out_and_back:
        phases += [
            Phase(dimension=second, schedule=schedule, bytes_per_rank=shard, backwards=True),
            Phase(dimension=first, schedule=schedule, bytes_per_rank=size, backwards=True),
        ]
    return phases


def algorithm_phases(kind: str, topology: str, rows: int, cols: int, size: float) -> dict[str, list[Phase]]:
    """Candidate algorithms for ``kind`` on an ``rows x cols`` group: name -> phases (not point-to-point)."""
    ring = "folded-ring-2d" if topology == "mesh2d" else "hierarchical-ring"
    if kind == "all_reduce":
        return {
            ring: _two_phase("row", "ring", rows, cols, size, True),
            f"{ring}-columns-first": _two_phase("col", "ring", rows, cols, size, True),
            "halving-doubling-2d": _two_phase("row", "halving", rows, cols, size, True),
            "recursive-doubling-2d": [
                Phase(dimension="row", schedule="doubling", bytes_per_rank=size),
                Phase(dimension="col", schedule="doubling", bytes_per_rank=size),
            ],
        }
    if kind in ("reduce_scatter", "all_gather"):
        candidates = {
            ring: _two_phase("row", "ring", rows, cols, size, False),
            f"{ring}-columns-first": _two_phase("col", "ring", rows, cols, size, False),
            "recursive-halving-2d": _two_phase("row", "halving", rows, cols, size, False),
        }
        if kind == "all_gather":
            renamed = {
                ring: ring,
                f"{ring}-columns-first": f"{ring}-columns-first",
                "recursive-halving-2d": "recursive-doubling-2d",
            }
            return {
                renamed[name]: [
                    Phase(dimension=p.dimension, schedule=p.schedule, bytes_per_rank=p.bytes_per_rank, backwards=True)
                    for p in reversed(phases)
                ]
                for name, phases in candidates.items()
            }
        return candidates
    if kind == "broadcast":
        return {
            "binomial-tree-2d": [
                Phase(dimension="row", schedule="binomial", bytes_per_rank=size, root_line_only=True),
                Phase(dimension="col", schedule="binomial", bytes_per_rank=size),
            ],
            "scatter-allgather-2d": [
                Phase(dimension="row", schedule="scatter", bytes_per_rank=size, root_line_only=True),
                Phase(dimension="col", schedule="scatter", bytes_per_rank=size / cols),
                Phase(dimension="col", schedule="ring", bytes_per_rank=size / cols, backwards=True),
                Phase(dimension="row", schedule="ring", bytes_per_rank=size, backwards=True),
            ],
        }
    raise TopologyError(f"collective kind must be one of {', '.join(KINDS)}; got {kind!r}")


def _phase_cost(phase: Phase, line: Line, step_latency_s: float) -> tuple[float, float, int]:
    """(latency_s, transfer_s, steps) of one phase on ``line``."""
    if line.members <= 1 or phase.bytes_per_rank <= 0:
        return 0.0, 0.0, 0
    summary = summarize(phase.schedule, line.members)
    latency = summary.steps * step_latency_s
    for distance, count in summary.distance_counts:
        latency += count * line.route_latency_s(distance)
    load = summary.max_port_load_fraction_total if line.switched else summary.max_link_load_fraction_total
    return latency, phase.bytes_per_rank * load / line.link_bytes_per_s, summary.steps


def _point_to_point(rows_line: Line, cols_line: Line, size: float, step_latency_s: float) -> tuple[float, float]:
    used = [line for line in (rows_line, cols_line) if line.members > 1]
    routes = [line.route_latency_s(line.members - 1) for line in used]
    route = max(routes) if rows_line.switched else sum(routes)
    return step_latency_s + route, size / min(line.link_bytes_per_s for line in used)


@lru_cache(maxsize=65536)
def _unit_prices(
    kind: str, mesh: Mesh, fabric: FabricSpec, group: ChipGroup, concurrent_groups: int
) -> tuple[tuple[str, float, float, int], ...]:
    """(algorithm, latency_s, transfer seconds per byte of N, steps) of every candidate.

    Latency does not depend on ``N`` and transfer is linear in it, so one pricing per group class
    serves every size.
    """
    row_line, col_line = group_lines(mesh, fabric, group, concurrent_groups)
    alpha = fabric.collective_step_latency_s
    if kind == "point_to_point":
        latency, per_byte_s = _point_to_point(row_line, col_line, 1.0, alpha)
        return (("direct", latency, per_byte_s, 1),)
    prices = []
    for name, phases in algorithm_phases(kind, fabric.topology, group.rows, group.cols, 1.0).items():
        latency = per_byte_s = 0.0
        steps = 0
        for phase in phases:
            phase_latency, phase_transfer, phase_steps = _phase_cost(
                phase, row_line if phase.dimension == "row" else col_line, alpha
            )
            latency += phase_latency
            per_byte_s += phase_transfer
            steps += phase_steps
        prices.append((name, latency, per_byte_s, steps))
    return tuple(prices)


def _normalize_kind(kind: str) -> str:
    normalized = kind.strip().lower().replace("-", "_")
    if normalized not in KINDS:
        raise TopologyError(f"collective kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return normalized


def collective_on(
    kind: str,
    mesh: Mesh,
    fabric: FabricSpec,
    group: ChipGroup,
    bytes_per_rank: float,
    *,
    concurrent_groups: int = 1,
    algorithm: str | None = None,
) -> CollectiveCost:
    """Cost of ``kind`` over ``group`` on ``mesh``; the fastest algorithm unless ``algorithm`` is named."""
    kind = _normalize_kind(kind)
    if not (bytes_per_rank >= 0 and math.isfinite(bytes_per_rank)):
        raise TopologyError(f"collective size must be a finite number of bytes >= 0, got {bytes_per_rank}")
    check_group(mesh, group, concurrent_groups)
    if group.num_chips == 1 or bytes_per_rank == 0:
        return CollectiveCost(
            kind=kind,
            algorithm="none",
            bytes_per_rank=bytes_per_rank,
            ranks=group.num_chips,
            time_s=0.0,
            steps=0,
            concurrent_groups=concurrent_groups,
        )
    results = {
        name: (latency, per_byte_s * bytes_per_rank, steps)
        for name, latency, per_byte_s, steps in _unit_prices(kind, mesh, fabric, group, concurrent_groups)
    }
    ranking = sorted(results, key=lambda name: (results[name][0] + results[name][1], name))
    if algorithm is not None:
        if algorithm not in results:
            raise TopologyError(f"{kind} has no algorithm {algorithm!r} here; known: {', '.join(sorted(results))}")
        chosen = algorithm
    else:
        chosen = ranking[0]
    latency, transfer, steps = results[chosen]
    return CollectiveCost(
        kind=kind,
        algorithm=chosen,
        bytes_per_rank=bytes_per_rank,
        ranks=group.num_chips,
        time_s=latency + transfer,
        steps=steps,
        latency_s=latency,
        transfer_s=transfer,
        alternatives=tuple((name, results[name][0] + results[name][1]) for name in ranking),
        concurrent_groups=concurrent_groups,
    )


def collective(
    kind: str,
    system: System,
    group: ChipGroup,
    bytes_per_rank: float,
    *,
    concurrent_groups: int = 1,
    algorithm: str | None = None,
) -> CollectiveCost:
    """Cost of one collective of ``bytes_per_rank`` over ``group`` (``concurrent_groups`` alike at once).

    >>> from hwmodel.spec.presets import make_system
    >>> cost = collective("all_reduce", make_system("d1", "5x5"), ChipGroup(rows=5, cols=5), 100e6)
    >>> cost.algorithm, round(cost.time_s * 1e6, 3)
    ('folded-ring-2d', 102.4)
    """
    return collective_on(
        kind,
        system.mesh,
        system.fabric,
        group,
        bytes_per_rank,
        concurrent_groups=concurrent_groups,
        algorithm=algorithm,
    )
