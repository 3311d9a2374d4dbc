"""Memory model: the per-chip working set, spill to DIP HBM, recomputation, and the one-line error."""

from __future__ import annotations

from dataclasses import replace

import pytest
from synthetic_workloads import chain_workload

from hwmodel import MemoryCapacityError, Plan, make_system, simulate
from hwmodel.spec.mesh import parse_mesh
from hwmodel.spec.precision import FP32, MIXED_BF16
from hwmodel.spec.presets import get_preset
from hwmodel.spec.system import System
from hwmodel.step.memory import ChipShare, activation_peak_bytes, footprint, spill_bytes_per_s
from hwmodel.step.workload import OpRecord, TensorRecord, Workload

D1 = get_preset("d1").chip
DOJO_TILE_FABRIC = get_preset("d1").fabric


def _three_op_workload() -> Workload:
    """Input 100 B (alive to op 1), a 200 B activation written by op 0 and read by op 2, a 50 B
    temporary written and read by op 1 only. Alive per op: op 0: 100 + 200 = 300; op 1: 100 + 200
    + 50 = 350; op 2: 200. Peak 350 B (FP32 as captured)."""

    def op(inputs: tuple[int, ...], outputs: tuple[int, ...]) -> OpRecord:
        return OpRecord(
            name="aten.add.Tensor",
            phase="forward",
            module="m",
            flops=1.0,
            flop_source="formula",
            bytes_read=4,
            bytes_written=4,
            output_elements=1,
            dtype="float32",
            input_ids=inputs,
            output_ids=outputs,
        )

    return Workload(
        name="three",
        batch_size=1,
        ops=(op((0,), (1,)), op((0,), (2,)), op((1,), ())),
        tensors=(
            TensorRecord(tensor_id=0, nbytes=100, dtype="float32", kind="input", first_op=-1, last_op=1),
            TensorRecord(tensor_id=1, nbytes=200, dtype="float32", kind="activation", first_op=0, last_op=2),
            TensorRecord(tensor_id=2, nbytes=50, dtype="float32", kind="activation", first_op=1, last_op=1),
        ),
    )


def test_activation_peak_follows_liveness() -> None:
    workload = _three_op_workload()
    assert activation_peak_bytes(workload, FP32) == 350.0
    assert activation_peak_bytes(workload, MIXED_BF16) == 175.0  # stored in BF16: half


def test_static_state_follows_the_precision_policy() -> None:
    """4 layers of 256x256 weights + 256 BN scales = 263,168 parameters: FP32 master + BF16 copy =
    6 B each, FP32 gradients 4 B, two FP32 moments 8 B (as captured)."""
    workload = chain_workload(layers=4, batch=8, width=256)
    parameters = 4 * 256 * 256 + 4 * 256
    memory = footprint(workload, D1, DOJO_TILE_FABRIC, MIXED_BF16)
    assert memory.weights_bytes == 6 * parameters
    assert memory.gradients_bytes == 4 * parameters
    assert memory.optimizer_state_bytes == 8 * parameters
    assert memory.strategy == "none" and memory.spilled_bytes == 0 and memory.spill_s == 0
    half = footprint(workload, D1, DOJO_TILE_FABRIC, MIXED_BF16, ChipShare(parameter_fraction=0.5))
    assert half.weights_bytes == 3 * parameters


def test_spill_bandwidth_of_a_tile_is_the_dip_share() -> None:
    """20 DIPs x 800 GB/s over 25 chips = 640 GB/s; the 12 links into a 5x5 tile's 3x3 interior
    carry 12 x 2 TB/s / 9 = 2.67 TB/s per interior chip, so the DIPs bound it."""
    assert spill_bytes_per_s(DOJO_TILE_FABRIC, make_system("d1", "5x5").mesh) == pytest.approx(640e9)
    slow = replace(DOJO_TILE_FABRIC, link_bytes_per_s=100e9)
    assert spill_bytes_per_s(slow, make_system("d1", "5x5").mesh) == pytest.approx(100e9 * 12 / 9)
    # a 2x2 mesh has no interior chip: every chip touches the edge
    assert spill_bytes_per_s(slow, make_system("d1", "2x2").mesh) == pytest.approx(640e9)


def test_spill_costs_twice_the_excess_over_the_dip_share() -> None:
    workload = chain_workload(layers=4, batch=8, width=1024)
    needed = footprint(workload, D1, DOJO_TILE_FABRIC, MIXED_BF16).total_bytes
    small = replace(D1, local_memory_bytes=needed - 10e6)
    memory = footprint(workload, small, DOJO_TILE_FABRIC, MIXED_BF16, mesh=make_system("d1", "5x5").mesh)
    assert memory.strategy == "spill"
    assert memory.spilled_bytes == pytest.approx(10e6)
    assert memory.spill_s == pytest.approx(2 * 10e6 / 640e9)
    assert memory.local_peak_bytes == pytest.approx(small.local_memory_bytes)


def test_recompute_is_chosen_when_cheaper_than_spilling() -> None:
    """An excess of half the 14.7 MB activation peak (7.3 MB): recomputing half of a 1 us forward
    costs 0.5 us; spilling costs 2 x 7.3 MB / 640 GB/s = 22.9 us. With a 100 us forward (50 us
    to recompute half), spilling wins."""
    workload = chain_workload(layers=2, batch=4096, width=256)
    base = footprint(workload, D1, DOJO_TILE_FABRIC, MIXED_BF16)
    small = replace(D1, local_memory_bytes=base.total_bytes - base.activations_peak_bytes / 2)
    excess = base.activations_peak_bytes / 2
    cheap = footprint(workload, small, DOJO_TILE_FABRIC, MIXED_BF16, ChipShare(recompute_forward_s=1e-6))
    assert cheap.strategy == "recompute"
    assert cheap.recompute_fraction == pytest.approx(0.5)
    assert cheap.recompute_s == pytest.approx(0.5e-6)
    assert cheap.spilled_bytes == 0
    assert cheap.local_peak_bytes == pytest.approx(base.total_bytes - excess)
    dear = footprint(workload, small, DOJO_TILE_FABRIC, MIXED_BF16, ChipShare(recompute_forward_s=100e-6))
    assert dear.strategy == "spill"
    assert dear.spill_s == pytest.approx(2 * excess / 640e9)


def test_recompute_then_spill_when_activations_alone_are_not_enough() -> None:
    workload = chain_workload(layers=2, batch=4096, width=256)
    base = footprint(workload, D1, DOJO_TILE_FABRIC, MIXED_BF16)
    small = replace(D1, local_memory_bytes=base.total_bytes - base.activations_peak_bytes - 1e6)
    memory = footprint(workload, small, DOJO_TILE_FABRIC, MIXED_BF16, ChipShare(recompute_forward_s=1e-9))
    assert memory.strategy == "recompute+spill"
    assert memory.recompute_fraction == pytest.approx(1.0)
    assert memory.spilled_bytes == pytest.approx(1e6)


def test_what_fits_nowhere_is_one_line_naming_the_shortfall() -> None:
    workload = chain_workload(layers=2, batch=64, width=256)
    tiny = replace(D1, local_memory_bytes=1e3)
    no_backing = replace(DOJO_TILE_FABRIC, backing_memory_bytes_per_chip=0.0, backing_memory_bytes_per_s_per_chip=0.0)
    with pytest.raises(MemoryCapacityError) as raised:
        footprint(workload, tiny, no_backing, MIXED_BF16)
    message = str(raised.value)
    assert "\n" not in message
    assert "GB over" in message and "chain at batch 64" in message


def test_a_step_too_large_for_a_gpu_names_its_memory_in_gib() -> None:
    """4 x 8,192^2 + 4 x 8,192 weights at FP32 (4 B) and gradients (4 B): 2.15 GB, over 1 GiB."""
    workload = chain_workload(layers=4, batch=8, width=8192)
    a100 = get_preset("a100")
    small = replace(a100.chip, local_memory_bytes=2**30)
    with pytest.raises(MemoryCapacityError, match=r"but a100 has 1\.0 GiB HBM: ") as raised:
        footprint(workload, small, a100.fabric, FP32)
    assert "\n" not in str(raised.value)


def test_report_shows_peak_sram_spill_and_the_remedy_in_the_breakdown() -> None:
    workload = chain_workload(layers=2, batch=4096, width=256)
    system = make_system("d1", "1x1")
    needed = footprint(workload, D1, DOJO_TILE_FABRIC, MIXED_BF16).total_bytes
    small = System(chip=replace(D1, local_memory_bytes=needed - 5e6), fabric=system.fabric, mesh=system.mesh)
    report = simulate(workload, small, recompute=False)
    assert report.sram_peak_bytes_per_chip == pytest.approx(needed - 5e6)
    assert report.spilled_bytes_per_chip == pytest.approx(5e6)
    assert report.breakdown_s.spill_s == pytest.approx(2 * 5e6 / 640e9)
    assert report.memory_strategy.strategy == "spill"
    assert sum(report.breakdown_s.parts().values()) == pytest.approx(report.step_time_s, rel=1e-12)


def test_pipeline_stage_holds_its_share_of_the_weights() -> None:
    """Four equal layers over four stages: each stage holds a quarter of the weights."""
    workload = chain_workload(layers=4, batch=8, width=256, batchnorm=False)
    whole = simulate(workload, make_system("d1", "1x1"))
    plan = Plan(data_parallel=1, pipeline_parallel=4, micro_batches=4)
    staged = simulate(workload, make_system("d1", "1x4"), plan=plan)
    assert staged.memory_bytes_per_chip.weights_bytes == pytest.approx(whole.memory_bytes_per_chip.weights_bytes / 4)


def test_dip_share_shrinks_beyond_one_tile_as_published() -> None:
    """A tray has 20 DIPs (640 GB) for its 150 chips [S]: 640/150 = 4.27 GB and 20 x 800/150 =
    106.7 GB/s per chip, against 25.6 GB and 640 GB/s for a chip of a lone tile. An ExaPOD's 3,000
    chips share 400 DIPs: 12.8 TB in all (published: 13 TB)."""
    tray, exapod = parse_mesh("tray"), parse_mesh("exapod")
    per_chip_tray = DOJO_TILE_FABRIC.backing_memory_bytes_per_chip * DOJO_TILE_FABRIC.backing_share(tray.num_chips)
    assert per_chip_tray == pytest.approx(640e9 / 150)
    assert spill_bytes_per_s(DOJO_TILE_FABRIC, tray) == pytest.approx(20 * 800e9 / 150)
    exapod_total = (
        DOJO_TILE_FABRIC.backing_memory_bytes_per_chip * DOJO_TILE_FABRIC.backing_share(exapod.num_chips) * 3000
    )
    assert exapod_total == pytest.approx(400 * 32e9)
