"""Ingest: camera bytes per sample and the host -> DIP -> tile path, against hand-computed figures."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwmodel import HwModelError, Workload, make_system, simulate
from hwmodel.ops.classes import OP_CLASSES
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.step.workload import OpRecord
from hwmodel.studies.ingest import AUTOPILOT_CAMERAS, CameraSample, DataFeed, IngestPath, dojo_ingest_path, ingest
from hwmodel.studies.sensitivity import sensitivity

SAMPLE_BYTES = 8 * 1280 * 960 * 12 / 8  # 8 cameras x 1280 x 960 x 12 bit = 14,745,600 bytes


def test_camera_sample_bytes() -> None:
    assert AUTOPILOT_CAMERAS.bytes_per_sample == SAMPLE_BYTES == 14_745_600


def test_other_inputs_add_to_the_sample() -> None:
    """HydraNet's feature queue: 8 frames x 256 channels x 100 x 100 in BF16 = 40.96 MB more."""
    sample = replace(AUTOPILOT_CAMERAS, other_bytes_per_sample=8 * 256 * 100 * 100 * 2)
    assert sample.camera_bytes_per_sample == SAMPLE_BYTES
    assert sample.bytes_per_sample == SAMPLE_BYTES + 40_960_000


@pytest.mark.parametrize(
    ("chips", "host_link", "dips", "host_bytes_per_s"),
    [
        (150, "pcie", 20, 640e9),  # a tray: 20 DIPs x 32 GB/s = the host's 640 GB/s PCIe
        (25, "pcie", 20 / 6, 20 / 6 * 32e9),  # a tile: one sixth of a tray
        (150, "ethernet", 20, 20 * 50e9),  # TTPoE: 50 GB/s per DIP
        (150, "pcie+ethernet", 20, 20 * 82e9),
        (3000, "pcie", 400, 400 * 32e9),  # an ExaPOD: 20 trays
    ],
)
def test_dojo_path(chips: int, host_link: str, dips: float, host_bytes_per_s: float) -> None:
    path = dojo_ingest_path(chips, host_link)
    assert path.dips == pytest.approx(dips, rel=1e-12)
    assert path.host_bytes_per_s == pytest.approx(host_bytes_per_s, rel=1e-12)
    assert path.dip_link_bytes_per_s == pytest.approx(dips * 900e9, rel=1e-12)


def test_tile_ingest_time_by_hand() -> None:
    """A tile at 25 samples: 368.64 MB over 106.67 GB/s of PCIe = 3.456 ms; the DIP links
    (3,000 GB/s) would take 0.123 ms. Over Ethernet: 368.64 MB / 166.67 GB/s = 2.2118 ms."""
    pcie = ingest(DataFeed(sample=AUTOPILOT_CAMERAS, path=dojo_ingest_path(25, "pcie")), 25)
    assert pcie.bytes_per_step == 25 * SAMPLE_BYTES
    assert pcie.time_s == pytest.approx(25 * SAMPLE_BYTES / (32e9 * 20 / 6), rel=1e-12)
    assert pcie.time_s == pytest.approx(3.456e-3, rel=1e-12)
    assert pcie.dip_link_s == pytest.approx(25 * SAMPLE_BYTES / (900e9 * 20 / 6), rel=1e-12)
    assert pcie.bound == "host pcie"
    assert pcie.samples_per_s_limit == pytest.approx(25 / 3.456e-3, rel=1e-12)
    ethernet = ingest(DataFeed(sample=AUTOPILOT_CAMERAS, path=dojo_ingest_path(25, "ethernet")), 25)
    assert ethernet.time_s == pytest.approx(25 * SAMPLE_BYTES / (50e9 * 20 / 6), rel=1e-12)
    assert ethernet.bound == "host ethernet"


def test_dip_link_bound_when_the_host_is_faster() -> None:
    path = IngestPath(name="fat-host", host_link="pcie", dips=1, host_bytes_per_s=2e12, dip_link_bytes_per_s=1e12)
    cost = ingest(DataFeed(sample=AUTOPILOT_CAMERAS, path=path), 10)
    assert cost.bound == "dip link"
    assert cost.time_s == pytest.approx(10 * SAMPLE_BYTES / 1e12, rel=1e-12)


@given(chips=st.integers(min_value=1, max_value=3000), batch=st.integers(min_value=1, max_value=10_000))
def test_ingest_time_is_linear_in_batch_and_inverse_in_chips(chips: int, batch: int) -> None:
    """Each chip's share of the path feeds the same samples per second, whatever the mesh."""
    cost = ingest(DataFeed(sample=AUTOPILOT_CAMERAS, path=dojo_ingest_path(chips)), batch)
    per_chip_rate = cost.samples_per_s_limit / chips
    assert per_chip_rate == pytest.approx(640e9 / 150 / SAMPLE_BYTES, rel=1e-9)
    assert cost.time_s >= cost.dip_link_s > 0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CameraSample(name="x", cameras=0, width_pixels=1, height_pixels=1, bits_per_pixel=8), "cameras"),
        (lambda: replace(AUTOPILOT_CAMERAS, other_bytes_per_sample=-1.0), "other_bytes_per_sample must be >= 0"),
        (lambda: dojo_ingest_path(0), "at least 1 chip"),
        (lambda: dojo_ingest_path(25, "usb"), "host link must be one of"),
        (
            lambda: IngestPath(name="p", host_link="pcie", dips=1, host_bytes_per_s=0, dip_link_bytes_per_s=1),
            "host_bytes_per_s must be > 0",
        ),
        (lambda: ingest(DataFeed(sample=AUTOPILOT_CAMERAS, path=dojo_ingest_path(25)), 0), "global batch >= 1"),
    ],
)
def test_bad_input_is_one_line(build: object, message: str) -> None:
    with pytest.raises(HwModelError, match=message) as error:
        build()  # type: ignore[operator]
    assert "\n" not in str(error.value)


def _tiny_step() -> Workload:
    """1 us of matmul per replica (one D1 at 362 TFLOP/s, every node busy), no parameters."""
    op = OpRecord(
        name="aten.mm.default",
        phase="forward",
        module="Net",
        flops=362e6,
        flop_source="torch",
        bytes_read=64,
        bytes_written=64,
        output_elements=64 * 354 * 10,
        dtype="float32",
    )
    return Workload(name="tiny", batch_size=1, ops=(op,))


UNIT_EFFICIENCY = EfficiencyTable(
    chip="test", compute=(1.0,) * len(OP_CLASSES), memory=(1.0,) * len(OP_CLASSES), calibration="peak"
)


def test_simulate_flags_an_ingest_bound_step() -> None:
    """25 samples on a tile need 3.456 ms of PCIe ingest against ~1 us of compute: the step waits
    for its data, and only the excess over the rest of the step shows as "ingest"."""
    feed = DataFeed(sample=AUTOPILOT_CAMERAS, path=dojo_ingest_path(25, "pcie"))
    plain = simulate(_tiny_step(), make_system("d1", "5x5"), efficiency=UNIT_EFFICIENCY)
    fed = simulate(_tiny_step(), make_system("d1", "5x5"), efficiency=UNIT_EFFICIENCY, ingest=feed)
    assert fed.step_time_s == pytest.approx(3.456e-3, rel=1e-12)
    assert fed.breakdown_s.ingest_s == pytest.approx(3.456e-3 - plain.step_time_s, rel=1e-9)
    assert sum(fed.breakdown_s.parts().values()) == pytest.approx(fed.step_time_s, rel=1e-9)
    assert fed.bound == "host pcie"


def test_simulate_hides_ingest_behind_a_longer_step() -> None:
    """With 10 ms of compute per replica the 3.456 ms of ingest is prefetched during the step."""
    step = Workload(name="long", batch_size=1, ops=(replace(_tiny_step().ops[0], flops=362e6 * 1e4),))
    feed = DataFeed(sample=AUTOPILOT_CAMERAS, path=dojo_ingest_path(25, "pcie"))
    plain = simulate(step, make_system("d1", "5x5"), efficiency=UNIT_EFFICIENCY)
    fed = simulate(step, make_system("d1", "5x5"), efficiency=UNIT_EFFICIENCY, ingest=feed)
    assert fed.step_time_s == plain.step_time_s
    assert fed.breakdown_s.ingest_s == 0.0
    assert fed.bound == "compute"


def test_sensitivity_ranks_ingest_first_for_an_ingest_bound_step() -> None:
    """Twice the host bandwidth halves the 3.456 ms ingest, still longer than the ~1 us of compute."""
    feed = DataFeed(sample=AUTOPILOT_CAMERAS, path=dojo_ingest_path(25, "pcie"))
    result = sensitivity(_tiny_step(), make_system("d1", "5x5"), feed=feed, efficiency=UNIT_EFFICIENCY)
    assert result.entries[0].knob == "ingest_bandwidth"
    assert result.entries[0].speedup == pytest.approx(2.0, rel=1e-12)
    assert result.entries[0].describe() == "2x host ingest bandwidth: 2.00x faster (bound host pcie)"
    assert all(entry.speedup == pytest.approx(1.0, abs=1e-3) for entry in result.entries[1:])
