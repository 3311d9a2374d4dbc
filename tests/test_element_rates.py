"""What a host step's ops pay beyond the core rates: element functions at their measured rate and
GEMM operands fetched from beyond the caches (``hwmodel.ops.element_rates``, ``hwmodel.ops.matrix``,
``pytest_dojo.hostbench_in_step``)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel import OpRecord, SpecError, Workload
from hwmodel.ops.classes import OP_CLASSES
from hwmodel.ops.cost import op_costs
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.ops.element_rates import ELEMENT_FUNCTIONS, element_function
from hwmodel.spec.host import calibration_from_dict, host_chip
from hwmodel.spec.precision import FP32
from hwmodel.spec.presets import measured_chip_fields
from pytest_dojo import hostbench_in_step

HOST_FIELDS = measured_chip_fields("host")

DOCUMENT: dict[str, Any] = {
    "schema_version": 1,
    "measured_utc": "2026-12-02T00:00:00Z",
    "command": "python -m pytest_dojo.hostbench",
    "threads": 1,
    "machine": {"processor": "Test CPU", "hostname": "box", "memory_bytes": 1e10},
    "matrix_fp32_flops_per_s": 1e11,
    "matrix_bf16_flops_per_s": 2e11,
    "vector_flops_per_s": 2e10,
    "memory_bytes_per_s": 1e10,
    "op_overhead_s": 1e-5,
    "dispatch_overhead_s": 2e-6,
}
"""A calibration of no cache tiers: every op's bytes move at the DRAM copy's 1e10 B/s."""


def _costs(ops: tuple[OpRecord, ...], compute: float = 1.0, **measured: Any) -> Any:
    chip = host_chip(calibration_from_dict(DOCUMENT | measured), HOST_FIELDS)
    count = len(OP_CLASSES)
    table = EfficiencyTable(chip="host", compute=(compute,) * count, memory=(1.0,) * count, calibration="test")
    return op_costs(Workload(name="w", batch_size=1, ops=ops), chip, table, FP32)


def _op(name: str, elements: int, flops: float, phase: str = "forward", **fields: Any) -> OpRecord:
    return OpRecord(
        name=name,
        phase=phase,
        module="m",
        flops=flops,
        flop_source="formula",
        bytes_read=4 * elements,
        bytes_written=4 * elements,
        output_elements=elements,
        dtype="float32",
        **fields,
    )


@pytest.mark.parametrize(
    ("op_name", "function"),
    [
        ("aten.sqrt.default", "sqrt"),
        ("aten.sqrt_.default", "sqrt"),
        ("aten._foreach_sqrt.default", "sqrt"),
        ("aten._foreach_sqrt_.default", "sqrt"),
        ("aten.silu_backward.grad_input", "silu_backward"),
        ("aten.mul.Tensor", "mul"),
        ("aten.__and__.Tensor", "__and__"),
    ],
)
def test_an_op_names_its_element_function(op_name: str, function: str) -> None:
    assert element_function(op_name) == function


def test_a_measured_function_computes_at_its_rate_and_takes_no_fitted_fraction() -> None:
    """A sqrt of 1e6 elements at a measured 1e9 elements/s computes for 1 ms whatever the class's
    compute fraction (0.01 here); its 8 MB at 1e10 B/s take 0.8 ms: 1 ms + 2 us of dispatch. A mul of
    the same size, 1e6 FLOPs, stays priced by FLOPs: 1e6 / (2e10 x 0.01) = 5 ms."""
    ops = (_op("aten.sqrt.default", 10**6, 1e6), _op("aten.mul.Tensor", 10**6, 1e6))
    costs = _costs(ops, compute=0.01, element_rates_per_s={"sqrt": 1e9})
    assert costs.compute_s.tolist() == pytest.approx([1e-3, 5e-3])
    assert costs.time_s[0] == pytest.approx(1e-3 + 2e-6)


def test_a_foreach_function_times_every_element_of_its_list() -> None:
    """``_foreach_sqrt`` over 3 tensors of 1e5 elements: 3e5 / 1e8 = 3 ms, and one dispatch per tensor."""
    op = _op("aten._foreach_sqrt.default", 3 * 10**5, 3e5, phase="optimizer", input_ids=(0, 1, 2))
    costs = _costs((op,), element_rates_per_s={"sqrt": 1e8})
    assert costs.compute_s[0] == pytest.approx(3e-3)


def test_a_measured_function_never_beats_its_flops_at_the_vector_peak() -> None:
    """A gelu counted at 5 FLOPs an element, measured at 1e12 elements/s (faster than 2e10 FLOP/s
    allows): 1e6 elements take 5e6 / 2e10 = 250 us, not 1 us."""
    costs = _costs((_op("aten.gelu.default", 10**6, 5e6),), element_rates_per_s={"gelu": 1e12})
    assert costs.compute_s[0] == pytest.approx(2.5e-4)


def test_without_measured_functions_an_op_is_priced_by_its_flops() -> None:
    costs = _costs((_op("aten.sqrt.default", 10**6, 1e6),), compute=0.5)
    assert costs.compute_s[0] == pytest.approx(1e6 / (2e10 * 0.5))


def test_a_gemm_fetches_its_operands_at_the_cold_rate() -> None:
    """A 64^3 mm at a measured 1e10 FLOP/s takes 52.43 us; its operands, 2 x 64 x 64 x 4 = 32,768 bytes,
    at a cold-fetch rate of 1e9 B/s add 32.77 us: 85.20 us."""
    mm = OpRecord(
        name="aten.mm.default",
        phase="forward",
        module="m",
        flops=2.0 * 64**3,
        flop_source="torch",
        bytes_read=32768,
        bytes_written=16384,
        output_elements=4096,
        dtype="float32",
        gemms=((1, 64, 64, 64),),
    )
    table = {"dims": [1, 64], "flops_per_s": [1e10] * 8}
    warm = _costs((mm,), gemm_flops_per_s=table)
    cold = _costs((mm,), gemm_flops_per_s=table, gemm_cold_operand_bytes_per_s=1e9)
    assert warm.compute_s[0] == pytest.approx(2.0 * 64**3 / 1e10)
    assert cold.compute_s[0] == pytest.approx(2.0 * 64**3 / 1e10 + 32768 / 1e9)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(min_value=1e6, max_value=1e12),
    factor=st.floats(min_value=1.0, max_value=100.0),
    elements=st.integers(min_value=0, max_value=10**8),
    function=st.sampled_from(ELEMENT_FUNCTIONS),
)
def test_a_faster_function_never_makes_its_op_slower(rate: float, factor: float, elements: int, function: str) -> None:
    op = _op(f"aten.{function}.default", elements, 3.0 * elements)
    slow = _costs((op,), element_rates_per_s={function: rate}).time_s[0]
    fast = _costs((op,), element_rates_per_s={function: rate * factor}).time_s[0]
    assert fast <= slow


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"element_rates_per_s": {"sqrt": 0.0}}, "host calibration: element rate of sqrt must be > 0, got 0.0"),
        ({"element_rates_per_s": ["sqrt"]}, "host calibration is malformed: AttributeError*"),
        ({"element_rates_per_s": {"sqrt": "fast"}}, "host calibration is malformed: ValueError*"),
        (
            {"gemm_cold_operand_bytes_per_s": -1.0},
            "host calibration: gemm_cold_operand_bytes_per_s must be > 0, got -1.0",
        ),
    ],
)
def test_a_bad_in_step_measurement_is_a_one_line_error(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        calibration_from_dict(DOCUMENT | overrides)
    text = str(error.value)
    assert "\n" not in text
    assert text == message or (message.endswith("*") and text.startswith(message[:-1]))


def test_a_calibration_without_in_step_measurements_reads_as_none() -> None:
    calibration = calibration_from_dict(DOCUMENT | {"gemm_cold_operand_bytes_per_s": None})
    assert calibration.gemm_cold_operand_bytes_per_s is None
    assert calibration.element_rates == ()


def test_the_probes_measure_every_function_and_a_positive_cold_rate() -> None:
    rates = hostbench_in_step.element_rates_per_s(elements=4096, repeats=1, inner=1)
    assert tuple(rates) == ELEMENT_FUNCTIONS
    assert all(math.isfinite(rate) and rate > 0 for rate in rates.values())
    cold = hostbench_in_step.gemm_cold_operand_bytes_per_s(((64, 512, 512),), repeats=3)
    assert cold is None or (math.isfinite(cold) and cold > 0)
