"""Meshes, named meshes, XY routes, groups of chips, link sharing and per-link traffic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel.collectives.linkloads import link_loads
from hwmodel.collectives.routing import ChipGroup, Line, check_group, crosses_tile, group_lines, sharing
from hwmodel.errors import HwModelError, TopologyError
from hwmodel.spec.mesh import Mesh, mesh_names, parse_mesh
from hwmodel.spec.presets import make_system


@pytest.mark.parametrize(
    ("text", "rows", "cols"),
    [
        ("5x5", 5, 5),
        ("1x8", 1, 8),
        (" 2 X 8 ", 2, 8),
        ("tile", 5, 5),
        ("TRAY", 10, 15),
        ("cabinet", 10, 30),
        (" exapod ", 50, 60),
    ],
)
def test_parse_mesh_accepts(text: str, rows: int, cols: int) -> None:
    assert parse_mesh(text) == Mesh(rows=rows, cols=cols)


@pytest.mark.parametrize("text", ["5x", "x5", "0x5", "5x0", "-1x3", "5x5x5", "pod", "", "5.0x5"])
def test_parse_mesh_rejects_with_one_line(text: str) -> None:
    with pytest.raises(TopologyError) as error:
        parse_mesh(text)
    assert "\n" not in str(error.value)
    assert str(error.value).startswith(("mesh must be ROWSxCOLS", "mesh must have at least"))


def test_named_meshes_match_published_tile_counts() -> None:
    """dojo-hardware.md: tray 6 tiles [S], cabinet 2 trays = 12 tiles = 300 D1 [S], ExaPOD 120 tiles = 3,000 D1 [S]."""
    tiles = {name: parse_mesh(name).num_chips // 25 for name in mesh_names()}
    assert tiles == {"tile": 1, "tray": 6, "cabinet": 12, "exapod": 120}
    for name in mesh_names():
        mesh = parse_mesh(name)
        assert mesh.rows % 5 == 0 and mesh.cols % 5 == 0, f"{name} is not made of whole 5x5 tiles"
    assert parse_mesh("exapod").num_chips == 3000


def test_exapod_diameter() -> None:
    """50 x 60 chips: corner to corner 49 + 59 = 108 hops."""
    mesh = parse_mesh("exapod")
    assert mesh.diameter_hops == 108
    assert mesh.hops(0, mesh.num_chips - 1) == 108


meshes = st.builds(Mesh, rows=st.integers(1, 60), cols=st.integers(1, 60))


@given(meshes, st.data())
def test_hops_symmetric_triangle_and_bounded_by_diameter(mesh: Mesh, data: st.DataObject) -> None:
    chip = st.integers(0, mesh.num_chips - 1)
    a, b, c = data.draw(chip), data.draw(chip), data.draw(chip)
    assert mesh.hops(a, b) == mesh.hops(b, a)
    assert mesh.hops(a, a) == 0
    assert mesh.hops(a, c) <= mesh.hops(a, b) + mesh.hops(b, c)
    assert 0 <= mesh.hops(a, b) <= mesh.diameter_hops == (mesh.rows - 1) + (mesh.cols - 1)


def test_chip_group_validation_and_spans() -> None:
    group = ChipGroup(rows=5, cols=1, row_stride=5)
    assert (group.num_chips, group.span_rows, group.span_cols) == (5, 21, 1)
    for bad in ({"rows": 0, "cols": 1}, {"rows": 1, "cols": 2, "col_stride": 0}, {"rows": 1.5, "cols": 1}):
        with pytest.raises(TopologyError, match="chip group"):
            ChipGroup(**bad)  # type: ignore[arg-type]


def test_check_group_refuses_groups_that_do_not_fit() -> None:
    mesh = Mesh(rows=5, cols=5)
    check_group(mesh, ChipGroup(rows=5, cols=5), 1)
    check_group(mesh, ChipGroup(rows=1, cols=5), 5)
    with pytest.raises(TopologyError, match="spans 1x9 chips, more than mesh 5x5"):
        check_group(mesh, ChipGroup(rows=1, cols=5, col_stride=2), 1)
    with pytest.raises(TopologyError, match="6 groups of 5 chips need 30 chips"):
        check_group(mesh, ChipGroup(rows=1, cols=5), 6)
    with pytest.raises(TopologyError, match="concurrent_groups"):
        check_group(mesh, ChipGroup(rows=1, cols=5), 0)


def test_sharing_counts_interleaved_groups() -> None:
    # Stride 1: groups sit side by side, nothing is shared.
    assert sharing(ChipGroup(rows=1, cols=5), 5) == (1, 1)
    # Stride 5 along a row: up to 5 groups interleave on the same links.
    assert sharing(ChipGroup(rows=1, cols=5, col_stride=5), 5) == (5, 1)
    assert sharing(ChipGroup(rows=1, cols=5, col_stride=5), 2) == (2, 1)
    # 2 x 2 strides: 4 groups fill the offsets, 2 on each row of links and 2 on each column.
    assert sharing(ChipGroup(rows=2, cols=2, row_stride=2, col_stride=2), 4) == (2, 2)


def test_tile_crossing() -> None:
    assert not crosses_tile(5, 1, 5, 5, 1)  # one tile
    assert not crosses_tile(5, 1, 15, 5, 3)  # aligned 5-chip rows on a tray
    assert crosses_tile(15, 1, 15, 5, 1)  # a whole tray row
    assert crosses_tile(3, 1, 15, 5, 5)  # 3-chip groups at 0, 3, 6...: the one at 3 spans 3..5
    assert crosses_tile(5, 3, 15, 5, 1)  # chips 0, 3, ..., 12 cross the edges at 5 and 10
    assert crosses_tile(2, 2, 10, 5, 2)  # pairs {0, 2}, {1, 3}, {4, 6}, {5, 7}: {4, 6} crosses at 5
    assert not crosses_tile(2, 2, 10, 5, 1)  # alone: only {0, 2} runs
    assert not crosses_tile(2, 3, 15, 5, 1)  # alone: chips 0 and 3
    assert crosses_tile(2, 3, 15, 5, 2)  # blocks of 6: pairs {0, 3}, {1, 4}, {6, 9}, {7, 10}: the last crosses at 10
    assert not crosses_tile(1, 1, 15, 5, 1)


def test_route_latency_counts_tile_boundaries() -> None:
    """Hand: 10 hops at 100 ns on-tile, a route that can cross ceil(10/5) = 2 tile edges at 200 ns each."""
    line = Line(
        members=11,
        stride_hops=1,
        link_bytes_per_s=1.8e12,
        hop_latency_s=100e-9,
        boundary_latency_s=200e-9,
        tile_length=5,
        crosses_tile=True,
        switched=False,
    )
    assert line.route_latency_s(10) == pytest.approx(8 * 100e-9 + 2 * 200e-9)
    assert line.route_latency_s(0) == 0.0
    switch = Line(
        members=8,
        stride_hops=1,
        link_bytes_per_s=450e9,
        hop_latency_s=1e-6,
        boundary_latency_s=3e-6,
        tile_length=8,
        crosses_tile=False,
        switched=True,
    )
    assert switch.route_latency_s(1) == switch.route_latency_s(7) == 1e-6


def test_tray_rows_use_the_inter_tile_links() -> None:
    """dojo-hardware.md: off-tile 9 TB/s per edge [S] over 5 chips = 1.8 TB/s per link [D]; on-tile 2 TB/s [S/U]."""
    system = make_system("d1", "tray")
    row, col = group_lines(system.mesh, system.fabric, ChipGroup.whole(system.mesh), 1)
    assert row.crosses_tile and col.crosses_tile
    assert row.link_bytes_per_s == pytest.approx(1.8e12)
    row, col = group_lines(system.mesh, system.fabric, ChipGroup(rows=5, cols=5), 6)
    assert not row.crosses_tile and not col.crosses_tile
    assert row.link_bytes_per_s == pytest.approx(2e12)
    row, _ = group_lines(system.mesh, system.fabric, ChipGroup(rows=1, cols=5, col_stride=3), 3)
    assert row.link_bytes_per_s == pytest.approx(1.8e12 / 3)


def test_switch_lines_cross_nodes_over_the_network() -> None:
    system = make_system("h100", "2x8")
    row, col = group_lines(system.mesh, system.fabric, ChipGroup.whole(system.mesh), 1)
    assert row.switched and not row.crosses_tile and row.link_bytes_per_s == pytest.approx(450e9)
    assert col.crosses_tile and col.link_bytes_per_s == pytest.approx(50e9)


def test_link_loads_of_a_folded_ring_on_a_line() -> None:
    """1x3 all-reduce, N = 3 MB: reduce-scatter then all-gather, each moving (k-1)/k N = 2 MB over every
    directed link (the folded ring 0 -> 2 -> 1 -> 0 uses each link direction once per step)."""
    loads = link_loads("all_reduce", make_system("d1", "1x3"), 3e6, algorithm="folded-ring-2d")
    assert loads.directions == ("east", "west", "south", "north")
    assert loads.bytes_per_link[0][0] == pytest.approx([4e6, 0, 0, 0])
    assert loads.bytes_per_link[0][1] == pytest.approx([4e6, 4e6, 0, 0])
    assert loads.bytes_per_link[0][2] == pytest.approx([0, 4e6, 0, 0])
    assert loads.busy_s_per_link[0][1][0] == pytest.approx(4e6 / 2e12)


def test_link_loads_of_a_tile_all_reduce() -> None:
    """5x5, N = 100 MB, folded ring: each row link carries 2 x 4/5 x N = 160 MB, each column link
    2 x 4/5 x N/5 = 32 MB; 40 + 40 directed links each."""
    loads = link_loads("all_reduce", make_system("d1", "5x5"), 100e6)
    assert loads.algorithm == "folded-ring-2d"
    assert loads.bytes_per_link[2][2] == pytest.approx([160e6, 160e6, 32e6, 32e6])
    assert loads.bytes_per_link[0][0] == pytest.approx([160e6, 0, 32e6, 0])
    assert loads.total_bytes == pytest.approx(40 * 160e6 + 40 * 32e6)
    assert loads.max_utilization == pytest.approx((160e6 / 2e12) / loads.time_s)
    assert 0 < loads.max_utilization <= 1


def test_link_loads_use_slower_links_at_tile_edges() -> None:
    loads = link_loads("all_reduce", make_system("d1", "1x10"), 1e8, algorithm="folded-ring-2d")
    on_tile, edge = loads.busy_s_per_link[0][3][0], loads.busy_s_per_link[0][4][0]
    assert loads.bytes_per_link[0][3][0] == loads.bytes_per_link[0][4][0]
    assert edge / on_tile == pytest.approx(2e12 / 1.8e12)


def test_link_loads_of_a_broadcast_start_on_the_root_row() -> None:
    loads = link_loads("broadcast", make_system("d1", "4x4"), 1e3, algorithm="binomial-tree-2d")
    # Root row: 0 -> 2 (step 1) and 0 -> 1 (step 2) both cross the link 0 -> 1.
    assert loads.bytes_per_link[0][0][0] == pytest.approx(2e3)
    assert loads.bytes_per_link[0][1][0] == pytest.approx(1e3)
    assert loads.bytes_per_link[1][0][0] == 0.0  # other rows only receive along columns
    assert loads.bytes_per_link[0][3][2] > 0  # every column fans out


def test_link_loads_reject_switch_fabrics_and_point_to_point() -> None:
    with pytest.raises(TopologyError, match="mesh2d"):
        link_loads("all_reduce", make_system("h100", "1x8"), 1e6)
    with pytest.raises(HwModelError, match="link loads are mapped"):
        link_loads("point_to_point", make_system("d1", "5x5"), 1e6)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.floats(1.0, 1e10),
    st.sampled_from(["all_reduce", "reduce_scatter", "all_gather", "broadcast"]),
)
def test_no_link_is_busier_than_the_collective_lasts(rows: int, cols: int, size: float, kind: str) -> None:
    """Each step's transfer is priced at its busiest link, so no link's busy time exceeds the total;
    links off the mesh's edge carry nothing."""
    loads = link_loads(kind, make_system("d1", Mesh(rows=rows, cols=cols)), size)
    busy = loads.busy_s_per_link
    assert loads.max_utilization <= 1 + 1e-9
    assert min(min(min(chip) for chip in row) for row in busy) >= 0.0
    assert all(busy[r][cols - 1][0] == 0.0 and busy[r][0][1] == 0.0 for r in range(rows))
    assert all(busy[rows - 1][c][2] == 0.0 and busy[0][c][3] == 0.0 for c in range(cols))
