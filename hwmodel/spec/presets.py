"""Named chips and fabrics, each constant cited from ``shared/reference/dojo-hardware.md``.

Citations name the table and row of that file ("D1 chip: BF16 peak") and its tag: [S] stated by
the vendor, [D] derived (formula given), [U] uncertain. Presets are registered through
:func:`register_preset`, which refuses duplicate names.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from hwmodel.errors import SpecError
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import Mesh, parse_mesh
from hwmodel.spec.precision import FP32, MIXED_BF16, Precision
from hwmodel.spec.system import System
from hwmodel.spec.units import GB, GB_PER_S, GBIT_PER_S, GFLOP_PER_S, MB, NS, TB_PER_S, TFLOP_PER_S

HARDWARE_REFERENCE = "shared/reference/dojo-hardware.md"


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A chip with the fabric it ships in, the precision it trains in by default, and a one-line
    description for ``pytest --help``."""

    chip: ChipSpec
    fabric: FabricSpec
    description: str
    precision: Precision = MIXED_BF16


_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a preset under its chip's name; a second preset of the same name is an error."""
    name = preset.chip.name
    if name in _PRESETS:
        raise SpecError(f"preset {name!r} is already registered")
    _PRESETS[name] = preset
    return preset


def preset_names() -> tuple[str, ...]:
    """Registered preset names, in registration order."""
    return tuple(_PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return _PRESETS[name.strip().lower()]
    except KeyError:
        raise SpecError(f"unknown chip {name!r}; known chips: {', '.join(_PRESETS)}") from None


def make_system(chip_name: str, mesh: Mesh | str) -> System:
    """The system of ``mesh`` chips of preset ``chip_name`` in that preset's fabric."""
    preset = get_preset(chip_name)
    return System(chip=preset.chip, fabric=preset.fabric, mesh=parse_mesh(mesh) if isinstance(mesh, str) else mesh)


D1_NODES = 354  # D1 chip / Node: "nodes per D1 die 354" [S]
D1_CLOCK_HZ = 2e9  # Node: "clock 2 GHz" [S]
D1_NODE_GRID_DIAMETER_HOPS = 37
"""Hops corner to corner of the D1's node array. The grid is not published [U]; 354 nodes fill
about 18 x 20, diameter 18 + 19 = 37 hops at one cycle per hop (Node: on-chip network [S])."""

D1 = ChipSpec(
    name="d1",
    # D1 chip: "BF16 / CFP8 peak 362 TFLOP/s (354 x 1.024)" [S]
    matrix_bf16_flops_per_s=362 * TFLOP_PER_S,
    # D1 chip: "FP32 peak 22.6 TFLOP/s" [S]; no FP32 matrix mode is published, so FP32 matmuls run at it.
    matrix_fp32_flops_per_s=22.6 * TFLOP_PER_S,
    # Node: "FP32 64 GFLOP/s (1/16 of BF16)" [S] x 354 nodes = 22.656 TFLOP/s [D].
    vector_flops_per_s=D1_NODES * 64 * GFLOP_PER_S,
    compute_units=D1_NODES,
    # Node: "BF16 / CFP8 512 FLOP/cycle (8x8x4 matrix unit)" [S/D]: one pass yields an 8x8 output block.
    matrix_tile_output_elements=8 * 8,
    # The node's SIMD width is not published [U]: 64 B vectors, 16 FP32 lanes, as the 512 FLOP/cycle
    # matrix unit suggests; a vector op shorter than 16 x 354 elements leaves nodes idle.
    vector_tile_output_elements=16,
    # D1 chip: "SRAM 440 MB" [S]
    local_memory_bytes=440 * MB,
    # Node: "SRAM bandwidth 400 GB/s load, 270 GB/s store" [S] x 354 nodes [D].
    local_memory_read_bytes_per_s=D1_NODES * 400 * GB_PER_S,
    local_memory_write_bytes_per_s=D1_NODES * 270 * GB_PER_S,
    local_memory_full_duplex=True,
    local_memory_kind="sram",
    # No kernel launch on a compiler-scheduled D1; an op boundary is a barrier across the node
    # array: diameter x 1 cycle at 2 GHz = 18.5 ns [D/U].
    op_overhead_s=D1_NODE_GRID_DIAMETER_HOPS / D1_CLOCK_HZ,
    source=f"{HARDWARE_REFERENCE}: Node and D1 chip tables",
)

DIPS_PER_TILE = 4 * 5  # DIP: "DIPs per tile edge 5" [S] x 4 edges [D]
CHIPS_PER_TILE = 25  # Training tile: "chips 25 D1" [S]

DOJO_TILE_FABRIC = FabricSpec(
    name="dojo-tile-mesh",
    topology="mesh2d",
    # D1 chip: "off-chip ~2 TB/s per edge per direction" [S/U]; one edge faces one neighbour.
    link_bytes_per_s=2 * TB_PER_S,
    # D1 chip: "die-to-die latency ~100 ns" [S]
    hop_latency_s=100 * NS,
    # A collective step synchronises with its peer: one die-to-die round trip, 2 x 100 ns [D/U].
    collective_step_latency_s=2 * 100 * NS,
    tile_rows=5,
    tile_cols=5,
    # Training tile: "off-tile 9 TB/s per edge" [S] over the 5 chips on that edge = 1.8 TB/s [D].
    inter_tile_link_bytes_per_s=9 * TB_PER_S / 5,
    # Not published [U]: the tile edge adds a connector and the I/O dies; taken as 2 die hops.
    inter_tile_hop_latency_s=2 * 100 * NS,
    # DIP: "DIP HBM 32 GB" x 20 DIPs per tile / 25 chips = 25.6 GB per chip [D].
    backing_memory_bytes_per_chip=32 * GB * DIPS_PER_TILE / CHIPS_PER_TILE,
    # DIP: "800 GB/s" HBM behind a "900 GB/s" link: 800 GB/s per DIP x 20 / 25 chips = 640 GB/s [D].
    # NB: interior chips reach the edge DIPs over the mesh; the share assumes the mesh links are not
    # the bottleneck (20 DIP links x 0.9 TB/s = 18 TB/s against a 10 TB/s bisection: they can be).
    backing_memory_bytes_per_s_per_chip=800 * GB_PER_S * DIPS_PER_TILE / CHIPS_PER_TILE,
    # DIP table: "system tray 6 tiles (2x3), 20 DIPs (640 GB HBM)" [S]: beyond one tile, 20 DIPs serve
    # 6 x 25 = 150 chips; ExaPOD "13 TB HBM" [S] = 20 trays x 20 DIPs x 32 GB [D].
    backing_memory_pool_chips=6 * CHIPS_PER_TILE,
    source=f"{HARDWARE_REFERENCE}: D1 chip, Training tile and DIP tables",
)

register_preset(Preset(chip=D1, fabric=DOJO_TILE_FABRIC, description="Tesla D1 in 5x5 training tiles with DIP HBM"))

# GPU presets. Figures not in the reference file's "GPU presets" table are vendor datasheet values
# recorded in docs/hardware-model.md ("GPU figures beyond the reference table"), tagged [U] there:
# they are datasheet numbers we have not cross-checked against a second source.
GPUS_PER_NODE = 8  # GPU presets: "NVSwitch, 8 per node" [S] (DGX/HGX A100, H100, H200 baseboards)
GPU_KERNEL_LAUNCH_S = 4e-6
"""Fixed cost of one GPU op: a CUDA kernel launch plus PyTorch eager dispatch, a few microseconds [U]."""
GPU_MATRIX_TILE = 128 * 128
"""Output elements of one CTA of a tensor-core GEMM (a 128 x 128 tile, as cuBLAS/CUTLASS commonly
use) [U]: the occupancy granule; an op with fewer tiles than SMs leaves SMs idle."""
GPU_VECTOR_TILE = 1024
"""Output elements of one CTA of an elementwise kernel (256 threads x 4 elements) [U]."""
NVSWITCH_HOP_LATENCY_S = 936.25 * NS
"""One GPU-to-GPU trip through NVSwitch: ASTRA-sim's validated H100 per-link latency
(collectives-and-capture.md, "Reference points for validation") [U]; used for A100 too."""
NCCL_STEP_LATENCY_S = 2e-6
"""Fixed cost of one step of an NCCL collective (synchronisation and protocol), a few us [U]."""
INFINIBAND_LATENCY_S = 3e-6
"""End-to-end latency GPU to GPU between nodes over one InfiniBand switch level, with NIC and
PCIe: a few us [U]."""


def _gpu(
    name: str,
    *,
    bf16_tflops: float,
    tf32_tflops: float,
    fp32_tflops: float,
    sms: int,
    hbm_gb: float,
    hbm_tb_per_s: float,
    source: str,
) -> ChipSpec:
    """A GPU chip from datasheet units: TFLOP/s, GB, TB/s (converted to SI here, once)."""
    return ChipSpec(
        name=name,
        matrix_bf16_flops_per_s=bf16_tflops * TFLOP_PER_S,
        matrix_fp32_flops_per_s=tf32_tflops * TFLOP_PER_S,
        vector_flops_per_s=fp32_tflops * TFLOP_PER_S,
        compute_units=sms,
        matrix_tile_output_elements=GPU_MATRIX_TILE,
        vector_tile_output_elements=GPU_VECTOR_TILE,
        local_memory_bytes=hbm_gb * GB,
        # HBM: one bandwidth shared by reads and writes.
        local_memory_read_bytes_per_s=hbm_tb_per_s * TB_PER_S,
        local_memory_write_bytes_per_s=hbm_tb_per_s * TB_PER_S,
        local_memory_full_duplex=False,
        local_memory_kind="hbm",
        op_overhead_s=GPU_KERNEL_LAUNCH_S,
        source=source,
    )


def _gpu_node_fabric(
    name: str, *, nvlink_gb_per_s_bidirectional: float, nic_gbit_per_s: float, source: str
) -> FabricSpec:
    """8 GPUs behind NVSwitch per node, one NIC per GPU between nodes; datasheet units in."""
    return FabricSpec(
        name=name,
        topology="switch",
        # NVLink figures are the sum of both directions: per direction is half [D].
        link_bytes_per_s=nvlink_gb_per_s_bidirectional / 2 * GB_PER_S,
        hop_latency_s=NVSWITCH_HOP_LATENCY_S,
        collective_step_latency_s=NCCL_STEP_LATENCY_S,
        tile_rows=1,
        tile_cols=GPUS_PER_NODE,
        # One NIC per GPU (rail-optimised DGX/HGX), Gb/s per direction [U].
        inter_tile_link_bytes_per_s=nic_gbit_per_s * GBIT_PER_S,
        inter_tile_hop_latency_s=INFINIBAND_LATENCY_S,
        source=source,
    )


GPU_REFERENCE = (
    f"{HARDWARE_REFERENCE}: GPU presets table; docs/hardware-model.md: GPU figures beyond the reference table"
)

A100 = _gpu(
    "a100",
    bf16_tflops=312,  # GPU presets: A100 SXM 80GB "dense BF16 312 TFLOP/s" [S]
    tf32_tflops=156,  # A100 datasheet: TF32 tensor core 156 TFLOP/s dense [U]
    fp32_tflops=19.5,  # A100 datasheet: FP32 19.5 TFLOP/s [U]
    sms=108,  # A100 whitepaper: 108 SMs enabled on A100 [U]
    hbm_gb=80,  # GPU presets: "80 GB HBM2e" [S]
    hbm_tb_per_s=2.04,  # GPU presets: "2.04 TB/s" [S]
    source=GPU_REFERENCE,
)
H100 = _gpu(
    "h100",
    bf16_tflops=989,  # GPU presets: H100 SXM "dense BF16 989 TFLOP/s" [S]
    tf32_tflops=494.5,  # H100 SXM datasheet: TF32 989 TFLOP/s with sparsity, 494.5 dense [U/D]
    fp32_tflops=67,  # H100 SXM datasheet: FP32 67 TFLOP/s [U]
    sms=132,  # H100 SXM5: 132 SMs [U]
    hbm_gb=80,  # GPU presets: "80 GB HBM3" [S]
    hbm_tb_per_s=3.35,  # GPU presets: "3.35 TB/s" [S]
    source=GPU_REFERENCE,
)
H200 = _gpu(
    "h200",
    bf16_tflops=989,  # GPU presets: H200 SXM "dense BF16 989 TFLOP/s" [S]
    tf32_tflops=494.5,  # H200 SXM datasheet: as H100 SXM, 494.5 dense [U/D]
    fp32_tflops=67,  # H200 SXM datasheet: FP32 67 TFLOP/s [U]
    sms=132,  # H200 uses the H100 SXM5 die: 132 SMs [U]
    hbm_gb=141,  # GPU presets: "141 GB HBM3e" [S]
    hbm_tb_per_s=4.8,  # GPU presets: "4.8 TB/s" [S]
    source=GPU_REFERENCE,
)

# GPU presets: A100 "NVLink3 600 GB/s per GPU (NVSwitch, 8 per node)" [S]; DGX A100: 8 x 200 Gb/s
# HDR InfiniBand compute NICs, one per GPU [U].
DGX_A100_FABRIC = _gpu_node_fabric(
    "dgx-a100-nvswitch-hdr", nvlink_gb_per_s_bidirectional=600, nic_gbit_per_s=200, source=GPU_REFERENCE
)
# GPU presets: H100/H200 "NVLink4 900 GB/s per GPU (NVSwitch)" [S]; DGX H100/H200: 8 x 400 Gb/s NDR
# InfiniBand (ConnectX-7), one per GPU = 50 GB/s per GPU per direction [U].
DGX_H100_FABRIC = _gpu_node_fabric(
    "dgx-h100-nvswitch-ndr", nvlink_gb_per_s_bidirectional=900, nic_gbit_per_s=400, source=GPU_REFERENCE
)

register_preset(
    Preset(
        chip=A100,
        fabric=DGX_A100_FABRIC,
        description="NVIDIA A100 SXM 80GB, 8 per NVSwitch node (mesh NODESx8), HDR InfiniBand between",
    )
)
register_preset(
    Preset(
        chip=H100,
        fabric=DGX_H100_FABRIC,
        description="NVIDIA H100 SXM, 8 per NVSwitch node (mesh NODESx8), NDR InfiniBand between",
    )
)
register_preset(
    Preset(
        chip=H200,
        fabric=DGX_H100_FABRIC,
        description="NVIDIA H200 SXM 141GB, 8 per NVSwitch node (mesh NODESx8), NDR InfiniBand between",
    )
)

# The host preset is measured, not published: rates from the calibration file of hwmodel/spec/host.py
# (written by python -m pytest_dojo.hostbench), so --dojo-chip=host --dojo-mesh=1x1 predicts this machine.
# A missing or broken calibration leaves the other presets usable and says why in one warning.
from hwmodel.spec.host import HostCalibrationWarning, host_chip_and_fabric  # noqa: E402

try:
    _HOST_CHIP, _HOST_FABRIC = host_chip_and_fabric()
except SpecError as _host_error:
    warnings.warn(f"no host preset: {_host_error}", HostCalibrationWarning, stacklevel=1)
else:
    register_preset(
        Preset(
            chip=_HOST_CHIP,
            fabric=_HOST_FABRIC,
            description="this machine's CPU, rates from pytest_dojo.hostbench",
            # A CPU trains in FP32 (its BF16 matmuls exist, but eager PyTorch steps on a CPU are FP32).
            precision=FP32,
        )
    )
