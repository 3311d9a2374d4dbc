"""Presets: datasheet figures, published system totals, sources, and the registry's refusals."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from synthetic_workloads import chain_workload

from hwmodel import simulate
from hwmodel.collectives.algorithms import collective
from hwmodel.collectives.routing import ChipGroup
from hwmodel.errors import SpecError
from hwmodel.ops.efficiency import efficiency_for
from hwmodel.spec import presets
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import parse_mesh
from hwmodel.spec.presets import (
    Preset,
    get_preset,
    make_system,
    parse_preset,
    preset_names,
    register_preset,
    register_preset_file,
)
from hwmodel.studies.ingest import ingest_path_for

GIB = 2**30
"""A GPU's memory is built and sold in binary units (gpus.md, "Conventions")."""


def test_the_four_chips_are_registered() -> None:
    assert set(preset_names()) >= {"d1", "a100", "h100", "h200"}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_cites_its_source(name: str) -> None:
    preset = get_preset(name)
    assert preset.chip.source.strip()
    assert preset.fabric.source.strip()
    assert preset.description.strip()
    if name == "d1":  # published presets cite the reference file; host is measured
        assert "dojo-hardware.md" in preset.chip.source
        assert "dojo-hardware.md" in preset.fabric.source
    elif name != "host":
        assert "docs/reference/gpus.md" in preset.chip.source
        assert "docs/reference/gpus.md" in preset.fabric.source


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    before = preset_names()
    d1 = get_preset("d1")
    with pytest.raises(SpecError, match="preset 'd1' is already registered"):
        register_preset(Preset(chip=d1.chip, fabric=d1.fabric, description="again"))
    assert preset_names() == before
    with pytest.raises(SpecError, match=r"unknown chip 'tpu'; known chips: .*a100, d1, h100.*; aliases: ") as raised:
        get_preset("tpu")
    assert "a100-sxm4-80gb = a100" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "bf16", "tf32", "fp32", "sms", "hbm_bytes", "hbm_bytes_per_s", "nvlink", "network"),
    [
        # gpus.md "A100", "H100 SXM", "H200 SXM" [S]; memory in binary units ("Conventions");
        # NVLink bidirectional, halved per direction;
        # DGX A100 HDR 200 Gb/s, DGX H100 NDR 400 Gb/s per GPU [S].
        ("a100", 312e12, 156e12, 19.5e12, 108, 80 * GIB, 2.04e12, 300e9, 25e9),
        ("h100", 989e12, 494.5e12, 67e12, 132, 80 * GIB, 3.35e12, 450e9, 50e9),
        ("h200", 989e12, 494.5e12, 67e12, 132, 141 * GIB, 4.8e12, 450e9, 50e9),
    ],
)
def test_gpu_datasheet_figures(
    name: str,
    bf16: float,
    tf32: float,
    fp32: float,
    sms: int,
    hbm_bytes: float,
    hbm_bytes_per_s: float,
    nvlink: float,
    network: float,
) -> None:
    preset = get_preset(name)
    chip, fabric = preset.chip, preset.fabric
    assert chip.matrix_bf16_flops_per_s == pytest.approx(bf16)
    assert chip.matrix_flops_per_s("float32", tf32=True) == pytest.approx(tf32)
    assert chip.matrix_flops_per_s("float32") == chip.vector_flops_per_s == pytest.approx(fp32)
    assert chip.compute_units == sms
    assert chip.local_memory_bytes == pytest.approx(hbm_bytes)
    assert chip.local_memory_read_bytes_per_s == pytest.approx(hbm_bytes_per_s)
    assert chip.local_memory_kind == "hbm" and not chip.local_memory_full_duplex
    assert 1e-6 <= chip.op_overhead_s <= 10e-6  # a kernel launch: a few microseconds
    assert fabric.topology == "switch"
    assert (fabric.tile_rows, fabric.tile_cols) == (1, 8)
    assert fabric.link_bytes_per_s == pytest.approx(nvlink)
    assert fabric.inter_tile_link_bytes_per_s == pytest.approx(network)
    assert fabric.backing_memory_bytes_per_chip == 0.0


def test_gpu_meshes_are_nodes_of_eight() -> None:
    one, two = make_system("h100", "1x8"), make_system("h100", "2x8")
    assert (one.num_chips, two.num_chips) == (8, 16)
    assert two.peak_bf16_flops_per_s == pytest.approx(16 * 989e12)
    within = collective("all_reduce", one, ChipGroup.whole(one.mesh), 1e8)
    across = collective("all_reduce", two, ChipGroup.whole(two.mesh), 1e8)
    assert across.time_s > within.time_s  # the second node is reached over InfiniBand


@pytest.mark.parametrize(
    ("mesh", "published_bf16_flops_per_s", "rel"),
    [
        ("tile", 9e15, 0.01),  # Training tile: "BF16 peak 9 PFLOP/s" [S]; 25 x 362 = 9.05
        ("tray", 54e15, 0.01),  # DIP, host, system: "system tray ... 54 PFLOP/s" [S]; 150 x 362 = 54.3
        ("exapod", 1.1e18, 0.02),  # "ExaPOD ... 1.1 EFLOP/s BF16" [S]; 3,000 x 362 = 1.086
    ],
)
def test_dojo_systems_reach_the_published_peaks(mesh: str, published_bf16_flops_per_s: float, rel: float) -> None:
    assert make_system("d1", mesh).peak_bf16_flops_per_s == pytest.approx(published_bf16_flops_per_s, rel=rel)


def test_dojo_tile_links_add_up_to_the_published_tile_figures() -> None:
    """Training tile [S]: bisection 10 TB/s = 5 cut links x 2 TB/s; off-tile 9 TB/s per edge = 5 x 1.8 TB/s;
    SRAM 11 GB = 25 x 440 MB."""
    system = make_system("d1", "tile")
    fabric, chip = system.fabric, system.chip
    assert system.mesh.rows * fabric.link_bytes_per_s == pytest.approx(10e12)
    assert fabric.tile_cols * fabric.inter_tile_link_bytes_per_s == pytest.approx(9e12)
    assert system.num_chips * chip.local_memory_bytes == pytest.approx(11e9)
    assert parse_mesh("exapod").num_chips * chip.local_memory_bytes == pytest.approx(1.3e12, rel=0.02)


def _d1_document() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("hwmodel.spec").joinpath("presets", "d1.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def test_a_preset_file_builds_the_registered_preset() -> None:
    preset = parse_preset("d1.toml", _d1_document(), {})
    assert preset == get_preset("d1")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda doc: doc["chip"].update(boost_clock={"value": 2, "unit": "GHz", "source": "x"}), "unknown field"),
        (lambda doc: doc["chip"].update(clock_hz={"value": 2, "unit": "PHz", "source": "x"}), "unknown unit 'PHz'"),
        (lambda doc: doc["chip"].update(l2_cache_bytes={"value": -1, "unit": "MB", "source": "x"}), "l2_cache_bytes"),
        (lambda doc: doc["chip"].pop("matrix_tf32_flops_per_s"), "matrix_tf32_flops_per_s"),
        (lambda doc: doc["preset"].update(aliases="d-one"), "aliases must be a list"),
        (lambda doc: doc["fabric"].update(colour="blue"), "unknown field"),
        (lambda doc: doc["preset"].update(vendor="Tesla"), "unknown field"),
        (lambda doc: doc["chip"]["compute_units"].pop("source"), "needs a value and a source"),
        (lambda doc: doc["chip"]["local_memory_bytes"].update(unit="MiB"), "unknown unit 'MiB'"),
        (lambda doc: doc["chip"].pop("op_cost_model"), "op_cost_model"),
        (lambda doc: doc["chip"]["op_cost_model"].update(value="ideal"), "op_cost_model must be one of"),
        (lambda doc: doc["chip"]["op_cost_model"].update(value="efficiency"), "needs efficiency_row"),
        (lambda doc: doc.update(extra={}), "unknown table"),
    ],
)
def test_a_bad_preset_file_is_one_line(edit: Callable[[dict[str, Any]], object], message: str) -> None:
    document = _d1_document()
    edit(document)
    with pytest.raises(SpecError, match=message) as raised:
        parse_preset("d1.toml", document, {})
    assert "\n" not in str(raised.value)


def test_a_fabric_defined_twice_is_refused() -> None:
    fabrics: dict[str, FabricSpec] = {}
    parse_preset("d1.toml", _d1_document(), fabrics)
    with pytest.raises(SpecError, match="fabric 'dojo-tile-mesh' is defined twice"):
        parse_preset("d1-again.toml", _d1_document(), fabrics)


def test_presets_name_their_cost_model_and_only_the_host_runs_on_an_efficiency_row() -> None:
    """No chip runs on peak ceilings: every GPU and the D1 are costed by the kernel models; the
    host by its measured row."""
    for name in preset_names():
        chip = get_preset(name).chip
        expected = ("efficiency", "host") if name == "host" else ("kernels", None)
        assert (chip.op_cost_model, chip.efficiency_row) == expected
    with pytest.raises(SpecError, match="unknown efficiency row 'ideal'"):
        efficiency_for("ideal")


def test_a_new_chip_is_one_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chip that ships with no code: a TOML file that names a shipped fabric, then simulated."""
    monkeypatch.setattr(presets, "_PRESETS", dict(presets._PRESETS))
    h100 = (resources.files("hwmodel.spec") / "presets" / "h100.toml").read_text(encoding="utf-8")
    chip_only = h100.replace('name = "h100"', 'name = "x1"').replace('aliases = ["h100-sxm"]', "")
    chip_file = tmp_path / "x1.toml"
    chip_file.write_text(chip_only.replace("value = 989,", "value = 1978,", 1), encoding="utf-8")
    preset = register_preset_file(chip_file)
    assert preset.chip.matrix_bf16_flops_per_s == 2 * get_preset("h100").chip.matrix_bf16_flops_per_s
    assert preset.fabric is get_preset("h100").fabric
    workload = chain_workload(layers=2, batch=8, width=64, batchnorm=False)
    report = simulate(workload, make_system("x1", "1x8"))
    assert report.chip == "x1"
    assert report.step_time_s <= simulate(workload, make_system("h100", "1x8")).step_time_s


def test_only_the_dojo_fabric_feeds_its_chips_through_dips() -> None:
    assert {name: get_preset(name).fabric.host_ingest for name in preset_names()} == dict.fromkeys(
        preset_names(), "none"
    ) | {"d1": "dip"}
    assert ingest_path_for(make_system("d1", "5x5")) is not None
    assert ingest_path_for(make_system("h100", "1x8")) is None


#: The GPU presets by hand from docs/reference/gpus.md: SMs, FP32 (CUDA cores), TF32 tensor (FP32
#: where there is none), BF16 tensor (FP16 tensor before Ampere; P100: FP16 on the vector units,
#: P4: FP32, no fast FP16), memory bandwidth, L2, memory (GiB), boost clock, power limit, PCIe (or NVLink).
GPU_DATASHEETS = {
    "p100-pcie-16gb": (56, 9.3e12, 9.3e12, 18.7e12, 732e9, 4e6, 16 * GIB, 1.30e9, 250, "pcie"),
    "p4": (20, 5.5e12, 5.5e12, 5.5e12, 192e9, 2e6, 8 * GIB, 1.063e9, 75, "pcie"),
    "t4": (40, 8.1e12, 8.1e12, 65e12, 320e9, 4e6, 16 * GIB, 1.59e9, 70, "pcie"),
    "v100-pcie-32gb": (80, 14e12, 14e12, 112e12, 900e9, 6e6, 32 * GIB, 1.37e9, 250, "pcie"),
    "a100-pcie-40gb": (108, 19.5e12, 156e12, 312e12, 1555e9, 40e6, 40 * GIB, 1.41e9, 250, "pcie"),
    "a100-pcie-80gb": (108, 19.5e12, 156e12, 312e12, 1935e9, 40e6, 80 * GIB, 1.41e9, 300, "pcie"),
    "a100-sxm4-40gb": (108, 19.5e12, 156e12, 312e12, 1555e9, 40e6, 40 * GIB, 1.41e9, 400, "nvlink"),
    "a100-sxm4-80gb": (108, 19.5e12, 156e12, 312e12, 2.04e12, 40e6, 80 * GIB, 1.41e9, 400, "nvlink"),
    "h100-sxm": (132, 67e12, 494.5e12, 989e12, 3.35e12, 50e6, 80 * GIB, 1.98e9, 700, "nvlink"),
    "h200-sxm": (132, 67e12, 494.5e12, 989e12, 4.8e12, 50e6, 141 * GIB, 1.98e9, 700, "nvlink"),
    "l4": (58, 30.3e12, 60e12, 121e12, 300e9, 48e6, 24 * GIB, 2.04e9, 72, "pcie"),
}
#: Per-direction link of each fabric kind: PCIe Gen3 x16 16 GB/s, Gen4 x16 32 GB/s; NVLink 3
#: 300 GB/s, NVLink 4 450 GB/s (gpus.md, "Conventions" and the interconnect rows).
PCIE_LINKS = {16e9: "pcie3-x16-node8", 32e9: "pcie4-x16-node8"}
NVLINK_LINKS = (300e9, 450e9)
#: Chip fields that a GPU preset takes from the datasheet: each must cite gpus.md.
DATASHEET_FIELDS = (
    "matrix_bf16_flops_per_s",
    "matrix_tf32_flops_per_s",
    "matrix_fp32_flops_per_s",
    "vector_flops_per_s",
    "compute_units",
    "clock_hz",
    "power_limit_w",
    "l2_cache_bytes",
    "local_memory_bytes",
    "local_memory_read_bytes_per_s",
    "local_memory_write_bytes_per_s",
    "local_memory_kind",
)


def _preset_document(name: str) -> dict[str, Any]:
    file = presets.get_preset(name).chip.name + ".toml"
    return tomllib.loads((resources.files("hwmodel.spec") / "presets" / file).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(GPU_DATASHEETS))
def test_gpu_presets_match_their_datasheets(name: str) -> None:
    sms, fp32, tf32, bf16, bandwidth, l2, memory, clock, power, link = GPU_DATASHEETS[name]
    preset = get_preset(name)
    chip, fabric = preset.chip, preset.fabric
    assert chip.compute_units == sms
    assert chip.matrix_fp32_flops_per_s == chip.vector_flops_per_s == pytest.approx(fp32)
    assert chip.matrix_tf32_flops_per_s == pytest.approx(tf32)
    assert chip.matrix_bf16_flops_per_s == pytest.approx(bf16)
    assert chip.local_memory_read_bytes_per_s == chip.local_memory_write_bytes_per_s == pytest.approx(bandwidth)
    assert chip.l2_cache_bytes == pytest.approx(l2)
    assert chip.local_memory_bytes == pytest.approx(memory)
    assert chip.clock_hz == pytest.approx(clock)
    assert chip.power_limit_w == pytest.approx(power)
    assert fabric.topology == "switch" and (fabric.tile_rows, fabric.tile_cols) == (1, 8)
    if link == "pcie":
        assert PCIE_LINKS[fabric.link_bytes_per_s] == fabric.name
    else:
        assert fabric.link_bytes_per_s in NVLINK_LINKS and "nvswitch" in fabric.name


@pytest.mark.parametrize("name", sorted(GPU_DATASHEETS))
def test_every_datasheet_constant_cites_gpus_md(name: str) -> None:
    document = _preset_document(name)
    section = document["chip"]["source"].split("gpus.md, ")[1]
    for field in DATASHEET_FIELDS:
        source = document["chip"][field]["source"]
        assert f"gpus.md, {section}" in source, (field, source)
        assert any(tag in source for tag in ("[S]", "[D]", "[U]", "[U, D]")), (field, source)


def test_the_shared_fabrics_cite_gpus_md_for_their_links() -> None:
    fabrics = tomllib.loads((resources.files("hwmodel.spec") / "fabrics.toml").read_text(encoding="utf-8"))
    for table in fabrics["fabric"]:
        assert "docs/reference/gpus.md" in table["source"]
        assert "gpus.md, " in table["link_bytes_per_s"]["source"], table["name"]
    names = [table["name"] for table in fabrics["fabric"]]
    assert len(names) == len(set(names))
    shared = {get_preset(name).fabric.name for name in GPU_DATASHEETS}
    assert shared == set(names)


@pytest.mark.parametrize(("name", "part"), [("a100", "a100-sxm4-80gb"), ("h100", "h100-sxm"), ("h200", "h200-sxm")])
def test_the_short_names_are_the_sxm_parts(name: str, part: str) -> None:
    assert get_preset(part) is get_preset(name) is get_preset(part.upper())
    assert presets.preset_aliases()[part] == name
    assert get_preset(part).chip.name == name  # reports keep the short name
    assert "SXM" in get_preset(name).description
    assert make_system(part, "1x8").chip is get_preset(name).chip


def test_an_alias_cannot_take_a_registered_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets, "_PRESETS", dict(presets._PRESETS))
    monkeypatch.setattr(presets, "_ALIASES", dict(presets._ALIASES))
    l4 = (resources.files("hwmodel.spec") / "presets" / "l4.toml").read_text(encoding="utf-8")
    chip_file = tmp_path / "l4-again.toml"
    chip_file.write_text(l4.replace('name = "l4"', 'name = "l4x"').replace("[chip]", 'aliases = ["t4"]\n\n[chip]'))
    with pytest.raises(SpecError, match="preset 't4' is already registered"):
        register_preset_file(chip_file)


@pytest.mark.parametrize("name", sorted(set(GPU_DATASHEETS) | {"d1", "host"}))
def test_fp32_is_ieee_and_tf32_is_the_tensor_rate(name: str) -> None:
    chip = get_preset(name).chip
    ieee, tf32 = chip.matrix_rate("float32"), chip.matrix_rate("float32", tf32=True)
    assert ieee == ("ieee-fp32-matrix", chip.matrix_fp32_flops_per_s)
    assert chip.matrix_rate("bfloat16") == ("bf16-matrix", chip.matrix_bf16_flops_per_s)
    ampere_or_later = name.startswith(("a100", "h100", "h200", "l4"))
    assert chip.has_tf32_matrix == ampere_or_later  # no TF32 mode before Ampere, on a D1 or a CPU
    # without a TF32 mode, PyTorch's TF32 flag changes nothing: IEEE FP32 at its rate, and so labelled
    assert tf32 == (("tf32-matrix", chip.matrix_tf32_flops_per_s) if ampere_or_later else ieee)
    assert tf32[1] >= ieee[1]


def test_the_new_chip_fields_of_d1_and_host() -> None:
    d1, host = get_preset("d1").chip, get_preset("host").chip
    assert (d1.clock_hz, d1.l2_cache_bytes, d1.matrix_tf32_flops_per_s) == (2e9, 0, d1.matrix_fp32_flops_per_s)
    assert host.clock_hz is None and host.power_limit_w is None
    assert host.l2_cache_bytes == (host.cache_tiers[-1][0] if host.cache_tiers else 0.0)
