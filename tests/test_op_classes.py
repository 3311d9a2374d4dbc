"""Op classes: one module per class, a new class added as one module, and the registry's one-line errors."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

from hwmodel import OpRecord, SpecError, Workload, get_preset, make_system, simulate
from hwmodel.ops.calibration import peak_table
from hwmodel.ops.classes import (
    DATA_MOVEMENT_OPS,
    MATRIX_CLASSES,
    OP_CLASSES,
    OpClass,
    op_class,
    op_classes,
    register_op_class,
)
from hwmodel.ops.cost import op_costs
from hwmodel.ops.cost_model import kernel_op_costs
from hwmodel.ops.flops import flop_count
from hwmodel.ops.kernels.gemm import tile_efficiency
from hwmodel.ops.kernels.parameters import load_parameters
from hwmodel.ops.matrix import class_indices

BUILT_IN = ("matmul", "convolution", "attention", "elementwise", "reduction", "normalization", "softmax", "copy")
BUILT_IN = (*BUILT_IN, "optimizer")

NEW_CLASS_MODULE = '''"""``blocksparse``: block-sparse matrix products, on the matrix unit.

A class of its own: its kernels skip the zero blocks, so they reach their own fraction of the matrix
peak; the gather that packs the blocks only moves data.
"""

from hwmodel.ops.classes import OpClass

OP_CLASS = OpClass(
    name="blocksparse",
    packets=frozenset({"_dojo_block_sparse_mm", "_dojo_block_gather"}),
    data_movement=frozenset({"_dojo_block_gather"}),
    unit="matrix",
    description="Block-sparse matrix products, on the matrix unit.",
)
'''

OP_NAME = "aten._dojo_block_sparse_mm.default"
D1_UNITS, D1_MATRIX_TILE = 354, 64


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def new_class_module(tmp_path: Path) -> ModuleType:
    """The new class, written as one module (as a newcomer would add it) and imported."""
    path = tmp_path / "blocksparse.py"
    path.write_text(NEW_CLASS_MODULE, encoding="utf-8")
    return _load_module(path)


def _one_op_workload() -> Workload:
    """One forward op of the new class: 362 GFLOP, 354 x 64 output elements (one full wave of D1 tiles)."""
    elements = D1_UNITS * D1_MATRIX_TILE
    op = OpRecord(
        name=OP_NAME,
        phase="forward",
        module="sparse",
        flops=362e9,
        flop_source="formula",
        bytes_read=8 * elements,
        bytes_written=4 * elements,
        output_elements=elements,
        dtype="float32",
    )
    return Workload(name="blocksparse", batch_size=1, ops=(op,))


def test_an_op_class_added_as_one_module_runs_on_the_unit_it_declares(new_class_module: ModuleType) -> None:
    """On D1 in BF16 the op's 362 GFLOP run at the matrix rate, 362 TFLOP/s: 1 ms at peak. Its 354 x 64
    output elements are one 64-element tile per node, so occupancy is 1; with no GEMM shape recorded
    the kernel model runs it at the fraction of peak of the node's 8 x 8 BF16 block. Without the class
    the op is ``elementwise``, on the vector unit at 22.656 TFLOP/s: 362e9 / 22.656e12 = 15.98 ms.
    The same workload object is simulated before, during and after the registration, so its cached
    class indices must follow the registry."""
    workload = _one_op_workload()
    system = make_system("d1", "1x1")
    d1 = get_preset("d1")
    assert op_class(OP_NAME) == "elementwise"
    vector = simulate(workload, system)
    assert vector.breakdown_s.compute_s == pytest.approx(362e9 / 22.656e12, rel=1e-12)

    with register_op_class(new_class_module.OP_CLASS):
        assert OP_CLASSES[:] == (*BUILT_IN, "blocksparse")
        assert op_class(OP_NAME) == "blocksparse" and "blocksparse" in MATRIX_CLASSES
        assert class_indices(workload, d1.chip).tolist() == [OP_CLASSES.index("blocksparse")]
        compute_s = 1e-3 / tile_efficiency(8, 8, load_parameters(), 2.0)
        costs = kernel_op_costs(workload, d1.chip, d1.precision)
        assert costs.compute_s.tolist() == pytest.approx([compute_s], rel=1e-12)
        assert op_costs(workload, d1.chip, peak_table(), d1.precision).compute_s.tolist() == pytest.approx([1e-3])
        matrix = simulate(workload, system)
        assert matrix.breakdown_s.compute_s == pytest.approx(compute_s, rel=1e-12)
        assert matrix.op_cost_model is not None and matrix.op_cost_model.fallback_ops == 1
        assert matrix.top_ops == [(OP_NAME, matrix.step_time_s)]
        assert flop_count("aten._dojo_block_gather.default", [], [(4, 4)]) == 0.0
        assert "_dojo_block_gather" in DATA_MOVEMENT_OPS

    assert "blocksparse" not in OP_CLASSES and op_class(OP_NAME) == "elementwise"
    assert flop_count("aten._dojo_block_gather.default", [], [(4, 4)]) is None
    assert simulate(workload, system).to_dict() == vector.to_dict()


def test_a_fitted_row_refuses_a_new_class_and_a_stale_table_is_refused(new_class_module: ModuleType) -> None:
    host = get_preset("host")
    with register_op_class(new_class_module.OP_CLASS):
        with pytest.raises(SpecError) as refused:
            host.efficiency  # noqa: B018
        assert str(refused.value) == (
            "efficiency row 'host' has no entry for op class 'blocksparse'; "
            "re-fit it with `pytest-dojo calibrate` while the class is registered"
        )
        stale = peak_table()
    assert host.efficiency is not None and host.efficiency.classes == BUILT_IN
    with pytest.raises(SpecError, match=r"^efficiency peak was made for op classes \(.*blocksparse\)"):
        op_costs(_one_op_workload(), host.chip, stale, host.precision)


def test_a_registration_is_removed_by_its_handle_even_on_error(new_class_module: ModuleType) -> None:
    version = op_classes().version
    with pytest.raises(RuntimeError), register_op_class(new_class_module.OP_CLASS):
        raise RuntimeError("boom")
    assert OP_CLASSES[:] == BUILT_IN
    handle = register_op_class(new_class_module.OP_CLASS)
    assert op_classes().version > version
    handle.remove()
    handle.remove()
    assert OP_CLASSES[:] == BUILT_IN


def _make(**fields: object) -> OpClass:
    values: dict[str, object] = {
        "name": "extra",
        "packets": frozenset({"_dojo_extra"}),
        "description": "An extra class.",
    }
    return OpClass(**(values | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"packets": frozenset({"embedding_dense_backward"})},
            "packet 'embedding_dense_backward' already belongs to op class 'copy'",
        ),
        ({"name": "matmul"}, "op class 'matmul' is registered twice"),
        ({"packets": frozenset({"_foreach_thing"})}, "already belongs to op class 'optimizer' (prefix '_foreach_')"),
        ({"prefixes": ("_fused_adam",)}, "prefix '_fused_adam' overlaps prefix '_fused_' of op class 'optimizer'"),
        ({"catch_all": True}, "only one class may be catch_all"),
        ({"order": 0}, "order 0 is taken by another class"),
    ],
)
def test_a_clash_with_a_registered_class_is_one_line(fields: dict[str, object], message: str) -> None:
    version = op_classes().version
    with pytest.raises(SpecError) as error:
        register_op_class(_make(**fields))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert op_classes().version == version and OP_CLASSES[:] == BUILT_IN


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Block Sparse"}, "op class name must be a lower-case identifier"),
        ({"unit": "tensor"}, "unit must be one of matrix, vector, got 'tensor'"),
        ({"packets": {"_dojo_extra"}}, "packets must be a frozenset of overload packets, got set"),
        ({"packets": frozenset({"aten.mm.default"})}, "entries must be overload packets like 'mm'"),
        ({"data_movement": frozenset({"cat"})}, "data_movement packets must be among its packets, not: cat"),
        ({"description": "two\nlines"}, "description must be one non-empty line"),
        ({"packets": frozenset()}, "owns no ops"),
    ],
)
def test_a_malformed_class_is_one_line(fields: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as error:
        _make(**fields)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_register_op_class_takes_an_op_class() -> None:
    with pytest.raises(SpecError, match=r"^register_op_class takes an OpClass, got str$"):
        register_op_class("blocksparse")  # type: ignore[arg-type]


def _built_in_modules() -> list[ModuleType]:
    package = importlib.import_module("hwmodel.ops.classes")
    names = [info.name for info in pkgutil.iter_modules(package.__path__) if info.name not in ("base", "registry")]
    return [importlib.import_module(f"hwmodel.ops.classes.{name}") for name in names]


def test_every_built_in_class_is_one_documented_module_and_their_packets_are_disjoint() -> None:
    modules = _built_in_modules()
    classes = [module.OP_CLASS for module in modules]
    assert (
        sorted(op.name for op in classes)
        == sorted(BUILT_IN)
        == sorted(module.__name__.rsplit(".")[-1] for module in modules)
    )
    for module in modules:
        assert module.__doc__ is not None and f"``{module.OP_CLASS.name}``" in module.__doc__
        assert "class of its own" in module.__doc__ or module.OP_CLASS.catch_all or module.OP_CLASS.name == "matmul"
    owners: dict[str, str] = {}
    for op in classes:
        for packet in op.packets:
            assert packet not in owners, f"{packet} in {owners.get(packet)} and {op.name}"
            owners[packet] = op.name
    for op in classes:
        for other in classes:
            if other is not op:
                assert not any(other.owns(packet) for packet in op.packets)
    assert [op.name for op in sorted(classes, key=lambda op: op.order or 0)] == list(BUILT_IN)
    assert [op.name for op in classes if op.catch_all] == ["elementwise"]
    assert OP_CLASSES[:] == BUILT_IN and set(MATRIX_CLASSES) == {"matmul", "convolution", "attention"}
