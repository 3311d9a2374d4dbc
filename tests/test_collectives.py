"""Collectives against closed forms worked out by hand, algorithm choice, and physical invariants.

D1 fabric (dojo-hardware.md): B = 2 TB/s per link per direction on a tile, 1.8 TB/s across a tile
edge; h = 100 ns per die-to-die hop (200 ns across a tile edge); alpha = 200 ns per step.
H100 node fabric: NVLink 450 GB/s per direction per GPU, 936.25 ns per NVSwitch trip, 2 us per
NCCL step; 50 GB/s and 3 us per GPU between nodes.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel.collectives.algorithms import KINDS, ChipGroup, collective, collective_on
from hwmodel.errors import TopologyError
from hwmodel.spec.mesh import Mesh
from hwmodel.spec.presets import make_system
from hwmodel.spec.system import System

B = 2e12
B_EDGE = 1.8e12
H = 100e-9
H_EDGE = 200e-9
ALPHA = 200e-9
NVLINK = 450e9
NVSWITCH_H = 936.25e-9
NCCL_ALPHA = 2e-6
IB = 50e9
IB_H = 3e-6


def whole(system: System) -> ChipGroup:
    return ChipGroup.whole(system.mesh)


@pytest.mark.parametrize("kind", KINDS)
def test_one_chip_communicates_nothing(kind: str) -> None:
    system = make_system("d1", "1x1")
    cost = collective(kind, system, whole(system), 1e9)
    assert (cost.time_s, cost.steps, cost.algorithm) == (0.0, 0, "none")
    tile = make_system("d1", "5x5")
    assert collective(kind, tile, ChipGroup(rows=1, cols=1), 1e9, concurrent_groups=25).time_s == 0.0
    assert collective(kind, tile, whole(tile), 0.0).time_s == 0.0


def test_folded_ring_on_a_line() -> None:
    """1x5, N = 50 MB: 2 x 4 steps x (alpha + 2h) = 3.2 us; 2 x 4/5 x N / B = 40 us."""
    system = make_system("d1", "1x5")
    cost = collective("all_reduce", system, whole(system), 50e6, algorithm="folded-ring-2d")
    assert cost.latency_s == pytest.approx(8 * (ALPHA + 2 * H))
    assert cost.transfer_s == pytest.approx(40e-6)
    assert cost.time_s == pytest.approx(43.2e-6)
    assert cost.steps == 8


def test_folded_ring_of_two_chips_pays_one_hop() -> None:
    """1x2, N = 2 MB: 2 steps x (alpha + h) = 0.6 us; 2 x 1/2 x N / B = 1 us."""
    system = make_system("d1", "1x2")
    cost = collective("all_reduce", system, whole(system), 2e6, algorithm="folded-ring-2d")
    assert cost.time_s == pytest.approx(1.6e-6)


def test_folded_ring_across_a_tile_edge() -> None:
    """1x7 crosses a tile edge: B = 1.8 TB/s; each 2-hop step can cross one edge: alpha + h + h_edge.

    12 steps x 500 ns = 6 us; 2 x 6/7 x 70 MB / 1.8 TB/s = 66.667 us.
    """
    system = make_system("d1", "1x7")
    cost = collective("all_reduce", system, whole(system), 70e6, algorithm="folded-ring-2d")
    assert cost.latency_s == pytest.approx(12 * (ALPHA + H + H_EDGE))
    assert cost.transfer_s == pytest.approx(2 * 6 / 7 * 70e6 / B_EDGE)


def test_two_phase_all_reduce_on_a_tile() -> None:
    """5x5, N = 100 MB (collectives.algorithms docstring): rows 3.2 us + 80 us, columns on N/5 3.2 us + 16 us."""
    system = make_system("d1", "5x5")
    cost = collective("all_reduce", system, whole(system), 100e6)
    assert cost.algorithm == "folded-ring-2d"
    assert cost.time_s == pytest.approx(102.4e-6)
    assert cost.steps == 16  # 2(R + C - 2), against 2(p - 1) = 48 for a flat ring


def test_reduce_scatter_and_all_gather_are_half_the_ring_all_reduce() -> None:
    """5x5, N = 100 MB: rows 1.6 us + 40 us, columns on N/5 1.6 us + 8 us = 51.2 us."""
    system = make_system("d1", "5x5")
    scatter = collective("reduce_scatter", system, whole(system), 100e6)
    gather = collective("all_gather", system, whole(system), 100e6)
    assert scatter.algorithm == gather.algorithm == "folded-ring-2d"
    assert scatter.time_s == pytest.approx(51.2e-6)
    assert gather.time_s == pytest.approx(scatter.time_s)


def test_recursive_doubling_on_four_chips() -> None:
    """1x4, N = 1 kB: step 1 pairs neighbours (alpha + h, N per link); step 2 pairs 0-2 and 1-3, whose
    routes share the middle link (alpha + 2h, 2N on it): 2 alpha + 3h + 3N/B = 701.5 ns."""
    system = make_system("d1", "1x4")
    cost = collective("all_reduce", system, whole(system), 1e3)
    assert cost.algorithm == "recursive-doubling-2d"
    assert cost.time_s == pytest.approx(2 * ALPHA + 3 * H + 3e3 / B)


def test_choice_flips_from_latency_optimal_to_ring_as_messages_grow() -> None:
    """5x5: recursive doubling 3 us + 10 N/B; folded ring 6.4 us + 1.92 N/B; equal at
    N = 3.4 us x B / 8.08 = 841,584 bytes. (Halving-doubling, 6 us + 5.28 N/B, never wins.)"""
    system = make_system("d1", "5x5")
    crossover = 3.4e-6 * B / 8.08
    assert collective("all_reduce", system, whole(system), 0.99 * crossover).algorithm == "recursive-doubling-2d"
    assert collective("all_reduce", system, whole(system), 1.01 * crossover).algorithm == "folded-ring-2d"
    chosen = []
    for size in (10.0**exponent for exponent in range(1, 10)):
        cost = collective("all_reduce", system, whole(system), size)
        assert cost.time_s == min(time for _, time in cost.alternatives)
        assert {name for name, _ in cost.alternatives} == {
            "folded-ring-2d",
            "folded-ring-2d-columns-first",
            "halving-doubling-2d",
            "recursive-doubling-2d",
        }
        chosen.append(cost.algorithm)
    first_ring = chosen.index("folded-ring-2d")
    assert set(chosen[:first_ring]) == {"recursive-doubling-2d"}
    assert set(chosen[first_ring:]) == {"folded-ring-2d"}


def test_switch_ring_matches_the_textbook_ring() -> None:
    """1x8 H100 (one node): 2(p-1)(alpha + h) + 2(p-1)/p N/B with p = 8, N = 100 MB."""
    system = make_system("h100", "1x8")
    cost = collective("all_reduce", system, whole(system), 100e6, algorithm="hierarchical-ring")
    assert cost.time_s == pytest.approx(14 * (NCCL_ALPHA + NVSWITCH_H) + 2 * 7 / 8 * 100e6 / NVLINK)


def test_halving_doubling_is_bandwidth_optimal_on_a_switch_but_not_on_a_mesh() -> None:
    """On a non-blocking switch Rabenseifner moves 2(p-1)/p N like the ring in fewer steps; on a mesh
    its step-d flows share links d deep, so it moves more per link than the folded ring."""
    node = make_system("h100", "1x8")
    ring = collective("all_reduce", node, whole(node), 1e8, algorithm="hierarchical-ring")
    halving = collective("all_reduce", node, whole(node), 1e8)
    assert halving.algorithm == "halving-doubling-2d"
    assert halving.transfer_s == pytest.approx(ring.transfer_s)
    assert halving.steps == 6 < ring.steps == 14
    line = make_system("d1", "1x8")
    ring = collective("all_reduce", line, whole(line), 1e8, algorithm="folded-ring-2d")
    halving = collective("all_reduce", line, whole(line), 1e8, algorithm="halving-doubling-2d")
    assert halving.transfer_s > ring.transfer_s


def test_two_nodes_reduce_in_node_then_across() -> None:
    """2x8 H100, N = 100 MB: in-node ring RS + AG: 14 x (alpha + h) + 2 x 7/8 x N / 450 GB/s;
    across nodes on N/8: 2 x (alpha + 3 us) + 2 x 1/2 x N/8 / 50 GB/s."""
    system = make_system("h100", "2x8")
    cost = collective("all_reduce", system, whole(system), 100e6, algorithm="hierarchical-ring")
    expected = 14 * (NCCL_ALPHA + NVSWITCH_H) + 2 * 7 / 8 * 100e6 / NVLINK + 2 * (NCCL_ALPHA + IB_H) + 100e6 / 8 / IB
    assert cost.time_s == pytest.approx(expected)
    columns_first = collective("all_reduce", system, whole(system), 100e6, algorithm="hierarchical-ring-columns-first")
    assert columns_first.time_s > cost.time_s  # the full buffer over InfiniBand first is worse


def test_concurrent_interleaved_groups_share_links() -> None:
    """Two 1x5 groups at stride 2 on a 1x10 line interleave: each link carries both rings' flows."""
    system = make_system("d1", "1x10")
    group = ChipGroup(rows=1, cols=5, col_stride=2)
    alone = collective("all_reduce", system, group, 1e8, algorithm="folded-ring-2d")
    shared = collective("all_reduce", system, group, 1e8, algorithm="folded-ring-2d", concurrent_groups=2)
    assert shared.transfer_s == pytest.approx(2 * alone.transfer_s)
    assert shared.latency_s == pytest.approx(alone.latency_s)
    side_by_side = collective(
        "all_reduce", system, ChipGroup(rows=1, cols=5), 1e8, concurrent_groups=2, algorithm="folded-ring-2d"
    )
    assert side_by_side.transfer_s == pytest.approx(2 * 4 / 5 * 1e8 / B)  # disjoint links, on one tile each


def test_point_to_point() -> None:
    """5x5 corner to corner: alpha + 8h + N/B. Two H100 nodes: alpha + one trip over InfiniBand + N / 50 GB/s."""
    tile = make_system("d1", "5x5")
    assert collective("point_to_point", tile, whole(tile), 1e6).time_s == pytest.approx(ALPHA + 8 * H + 1e6 / B)
    nodes = make_system("h100", "2x8")
    pair = ChipGroup(rows=2, cols=1)
    assert collective("point-to-point", nodes, pair, 1e6).time_s == pytest.approx(NCCL_ALPHA + IB_H + 1e6 / IB)


def test_broadcast_small_uses_the_tree_large_scatters() -> None:
    """1x4, 1 kB: binomial tree 0 -> 2 then 0 -> 1, 2 -> 3: (alpha + 2h) + (alpha + h) + 2N/B."""
    system = make_system("d1", "1x4")
    small = collective("broadcast", system, whole(system), 1e3)
    assert small.algorithm == "binomial-tree-2d"
    assert small.time_s == pytest.approx(2 * ALPHA + 3 * H + 2e3 / B)
    tile = make_system("d1", "5x5")
    assert collective("broadcast", tile, whole(tile), 1e9).algorithm == "scatter-allgather-2d"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: collective("all_to_all", s, whole(s), 1.0), "collective kind must be one of"),
        (lambda s: collective("all_reduce", s, whole(s), -1.0), "must be a finite number of bytes >= 0, got -1.0"),
        (lambda s: collective("all_reduce", s, whole(s), math.nan), "finite number of bytes"),
        (lambda s: collective("all_reduce", s, ChipGroup(rows=6, cols=1), 1.0), "spans 6x1 chips"),
        (lambda s: collective("all_reduce", s, whole(s), 1.0, algorithm="magic"), "has no algorithm 'magic'"),
        (lambda s: collective("all_reduce", s, ChipGroup(rows=1, cols=5), 1.0, concurrent_groups=6), "need 30 chips"),
    ],
)
def test_bad_input_is_one_line(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TopologyError, match=message) as error:
        call(make_system("d1", "5x5"))
    assert "\n" not in str(error.value)


grids = st.tuples(st.integers(1, 12), st.integers(1, 12))
sizes = st.floats(min_value=0.0, max_value=1e10, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(grids, sizes, sizes, st.sampled_from(["d1", "h100"]))
def test_costs_are_non_negative_and_monotone_in_bytes(grid: tuple[int, int], a: float, b: float, chip: str) -> None:
    system = make_system(chip, Mesh(rows=grid[0], cols=grid[1]))
    small, large = sorted((a, b))
    for kind in KINDS:
        low = collective(kind, system, whole(system), small)
        high = collective(kind, system, whole(system), large)
        assert 0.0 <= low.time_s <= high.time_s
        for name, time_s in low.alternatives:
            assert time_s <= collective(kind, system, whole(system), large, algorithm=name).time_s


@settings(max_examples=60, deadline=None)
@given(grids, sizes, st.sampled_from(["d1", "h100"]))
def test_all_reduce_costs_at_least_reduce_scatter(grid: tuple[int, int], size: float, chip: str) -> None:
    system = make_system(chip, Mesh(rows=grid[0], cols=grid[1]))
    all_reduce = collective("all_reduce", system, whole(system), size)
    reduce_scatter = collective("reduce_scatter", system, whole(system), size)
    all_gather = collective("all_gather", system, whole(system), size)
    assert all_reduce.time_s >= reduce_scatter.time_s - 1e-18
    assert all_gather.time_s == pytest.approx(reduce_scatter.time_s)


@settings(max_examples=60, deadline=None)
@given(grids, sizes, st.floats(min_value=1.0, max_value=10.0), st.integers(1, 4))
def test_faster_links_are_never_slower_and_sharing_never_faster(
    grid: tuple[int, int], size: float, speedup: float, groups: int
) -> None:
    system = make_system("d1", Mesh(rows=grid[0], cols=grid[1] * 4))
    fabric = system.fabric
    faster = dataclasses.replace(
        fabric,
        link_bytes_per_s=fabric.link_bytes_per_s * speedup,
        inter_tile_link_bytes_per_s=fabric.inter_tile_link_bytes_per_s * speedup,
    )
    group = ChipGroup(rows=grid[0], cols=grid[1], col_stride=4)
    for kind in KINDS:
        base = collective_on(kind, system.mesh, fabric, group, size)
        assert collective_on(kind, system.mesh, faster, group, size).time_s <= base.time_s * (1 + 1e-12)
        assert collective_on(kind, system.mesh, fabric, group, size, concurrent_groups=groups).time_s >= (
            base.time_s * (1 - 1e-12)
        )


def test_columns_first_when_rows_cross_tile_edges() -> None:
    """5x10 D1 (two tiles side by side), N = 100 MB. Rows cross a tile edge (1.8 TB/s, alpha + h + h_edge
    per step); columns stay on a tile. Columns first: 2 x [(1.6 us + 0.8 N/B) + (4.5 us + 0.9 (N/5)/B_edge)]
    = 112.2 us; rows first: 2 x [(4.5 us + 0.9 N/B_edge) + (1.6 us + 0.8 (N/10)/B)] = 120.2 us."""
    system = make_system("d1", "5x10")
    cost = collective("all_reduce", system, whole(system), 100e6)
    assert cost.algorithm == "folded-ring-2d-columns-first"
    assert cost.time_s == pytest.approx(112.2e-6)
    assert dict(cost.alternatives)["folded-ring-2d"] == pytest.approx(120.2e-6)
