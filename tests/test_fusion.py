"""Compiled execution: the fusion rule on hand-built chains, its invariants, and the option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel import make_system, simulate
from hwmodel.errors import SpecError
from hwmodel.ops.cost_model import step_op_costs
from hwmodel.ops.fusion import check_execution, fuse
from hwmodel.spec.precision import parse_precision
from hwmodel.step.confidence import BANDS_FILE
from hwmodel.step.report import Report
from hwmodel.step.sections import Confidence
from hwmodel.step.workload import OpRecord, TensorRecord, Workload

N = 1024
"""Elements of a full-size tensor in the hand-built chains (4 KiB in FP32)."""
FP32 = parse_precision("fp32")


class Chain:
    """A workload built op by op: tensors by name, bytes and element counts exact."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.ops: list[OpRecord] = []

    def tensor(self, name: str, elements: int, kind: str = "activation") -> str:
        self.sizes[name], self.kinds[name] = elements, kind
        return name

    def op(self, name: str, inputs: list[str], output: str, elements: int, *, flops: float = 0.0) -> None:
        self.tensor(output, elements)
        ids = list(self.sizes)
        self.ops.append(
            OpRecord(
                name=f"aten.{name}.default",
                phase="forward",
                module="m",
                flops=flops or float(elements),
                flop_source="formula",
                bytes_read=4 * sum(self.sizes[i] for i in dict.fromkeys(inputs)),
                bytes_written=4 * elements,
                output_elements=elements,
                dtype="float32",
                input_ids=tuple(ids.index(i) for i in inputs),
                output_ids=(ids.index(output),),
                implicit_gemms=((1, 32, 32, 32),) if name == "mm" else (),
            )
        )

    def workload(self) -> Workload:
        names = list(self.sizes)
        tensors = tuple(
            TensorRecord(
                tensor_id=i, nbytes=4 * self.sizes[n], dtype="float32", kind=self.kinds[n], first_op=-1, last_op=-1
            )
            for i, n in enumerate(names)
        )
        return Workload(name="chain", batch_size=1, ops=tuple(self.ops), tensors=tensors)


def pointwise_chain() -> Workload:
    """relu(x) -> a; a * 2 -> b; b + c -> out; mm(out, w): three pointwise ops into one kernel."""
    chain = Chain()
    chain.tensor("x", N, "input")
    chain.tensor("c", N, "input")
    chain.tensor("w", N, "parameter")
    chain.op("relu", ["x"], "a", N)
    chain.op("mul", ["a"], "b", N)
    chain.op("add", ["b", "c"], "out", N)
    chain.op("mm", ["out", "w"], "y", N, flops=2 * 32**3)
    return chain.workload()


def test_a_pointwise_chain_is_one_kernel_that_reads_its_inputs_and_writes_its_output() -> None:
    fusion = fuse(pointwise_chain())
    assert fusion.group.tolist() == [0, 0, 0, -1] and fusion.groups == 1
    assert fusion.leader.tolist() == [True, False, False, False]
    # relu reads x (4N bytes), a and b never reach memory, add reads c and writes out
    assert fusion.read_bytes.tolist()[:3] == [4 * N, 0, 4 * N]
    assert fusion.written_bytes.tolist()[:3] == [0, 0, 4 * N]
    assert (fusion.read_bytes[3], fusion.written_bytes[3]) == (8 * N, 4 * N)  # the mm as captured


def test_a_matmul_fuses_with_neither_neighbour() -> None:
    """relu -> mm -> relu: Inductor calls the matmul as an extern kernel; no group forms."""
    chain = Chain()
    chain.tensor("x", N, "input")
    chain.tensor("w", N, "parameter")
    chain.op("relu", ["x"], "a", N)
    chain.op("mm", ["a", "w"], "b", N, flops=2 * 32**3)
    chain.op("relu", ["b"], "c", N)
    fusion = fuse(chain.workload())
    assert fusion.group.tolist() == [-1, -1, -1] and fusion.groups == 0
    assert fusion.read_bytes.tolist() == [4 * N, 8 * N, 4 * N]


def test_a_tensor_read_outside_the_group_stays_in_memory() -> None:
    """relu -> a, read by mul (fused) and by a later mm: a is written; mul still reads it from registers."""
    chain = Chain()
    chain.tensor("x", N, "input")
    chain.tensor("w", N, "parameter")
    chain.op("relu", ["x"], "a", N)
    chain.op("mul", ["a"], "b", N)
    chain.op("mm", ["b", "w"], "y", N)
    chain.op("mm", ["a", "w"], "z", N)
    fusion = fuse(chain.workload())
    assert fusion.group.tolist()[:2] == [0, 0]
    assert fusion.written_bytes.tolist()[:2] == [4 * N, 4 * N]
    assert fusion.read_bytes.tolist()[:2] == [4 * N, 0]


def test_a_reduction_takes_its_pointwise_producer_and_epilogue() -> None:
    """exp(x) over 64 x 16, sum over the rows' 16 -> s (64), div(e, s) -> p: softmax, one kernel;
    a pointwise op over the 64-element output (the epilogue) joins it too."""
    rows, width = 64, 16
    chain = Chain()
    chain.tensor("x", rows * width, "input")
    chain.op("exp", ["x"], "e", rows * width)
    chain.op("sum", ["e"], "s", rows)
    chain.op("div", ["e", "s"], "p", rows * width)
    chain.op("mul", ["s"], "t", rows)
    chain.op("mm", ["p", "t"], "y", rows)
    fusion = fuse(chain.workload())
    assert fusion.group.tolist() == [0, 0, 0, 0, -1]
    assert fusion.read_bytes.tolist()[:4] == [4 * rows * width, 0, 0, 0]
    assert fusion.written_bytes.tolist()[:4] == [0, 0, 4 * rows * width, 4 * rows]


def test_an_allocation_is_a_new_tensor_and_a_view_is_its_input() -> None:
    """empty_like(x) -> m; bernoulli_(m); mul(x, m) -> y: the mask m is its own tensor (read back
    from registers), so the fused kernel reads x once and writes y; a view of y read by an mm keeps
    y in memory."""
    chain = Chain()
    chain.tensor("x", N, "input")
    chain.tensor("w", N, "parameter")
    chain.op("empty_like", ["x"], "m", N)
    chain.op("bernoulli_", ["m"], "m2", N)
    chain.op("mul", ["x", "m2"], "y", N)
    chain.op("view", ["y"], "v", N)
    chain.op("mm", ["v", "w"], "z", N)
    fusion = fuse(chain.workload())
    assert fusion.group.tolist() == [-1, 0, 0, -1, -1]
    assert fusion.read_bytes.tolist()[1:3] == [4 * N, 4 * N]  # m (fresh, as captured), then x
    assert fusion.written_bytes.tolist()[1:3] == [0, 4 * N]  # m2 stays in registers, y is read by the mm


def test_ops_of_another_size_start_a_new_group() -> None:
    chain = Chain()
    chain.tensor("x", N, "input")
    chain.op("relu", ["x"], "a", N)
    chain.op("neg", ["a"], "b", N)
    chain.op("repeat", ["b"], "c", 3 * N)  # a broadcast to another iteration space
    chain.op("neg", ["c"], "d", 3 * N)
    chain.op("mm", ["d", "b"], "y", N)
    fusion = fuse(chain.workload())
    assert fusion.group.tolist() == [0, 0, 1, 1, -1] and fusion.groups == 2


def test_a_fused_group_pays_one_launch_on_a_gpu() -> None:
    workload = pointwise_chain()
    chip = make_system("a100", "1x1").chip
    eager = step_op_costs(workload, chip, FP32, None)
    compiled = step_op_costs(workload, chip, FP32, None, execution="compiled")
    assert compiled.overhead_s.tolist() == [chip.op_overhead_s, 0.0, 0.0, eager.overhead_s[3]]
    assert eager.overhead_s[:3].tolist() == [chip.op_overhead_s] * 3
    assert compiled.time_s[3] == eager.time_s[3] and np.array_equal(compiled.flops, eager.flops)
    assert float(np.sum(compiled.memory_s[:3])) < float(np.sum(eager.memory_s[:3]))


def test_a_bad_execution_mode_is_one_line() -> None:
    with pytest.raises(SpecError, match=r"^execution must be one of eager, compiled, got 'jit'$"):
        check_execution("jit")
    assert check_execution("compiled") == "compiled"


KINDS = ("relu", "mul", "sum", "mm")


@st.composite
def random_chains(draw: st.DrawFn) -> Workload:
    """Chains of pointwise ops, reductions and matmuls, each reading one or two earlier tensors."""
    chain = Chain()
    names = [chain.tensor("x0", N, "input"), chain.tensor("x1", N, "input")]
    for index in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(KINDS))
        inputs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2))
        elements = 32 if kind == "sum" else N
        chain.op(kind, inputs, f"t{index}", elements)
        names.append(f"t{index}")
    return chain.workload()


@settings(max_examples=60, deadline=None)
@given(random_chains())
def test_compiled_never_moves_more_bytes_or_launches_more_kernels(workload: Workload) -> None:
    chip = make_system("a100", "1x1").chip
    eager = step_op_costs(workload, chip, FP32, None)
    compiled = step_op_costs(workload, chip, FP32, None, execution="compiled")
    fusion = fuse(workload)
    captured = np.array([op.bytes_read + op.bytes_written for op in workload.ops], dtype=np.float64)
    assert np.all(fusion.read_bytes + fusion.written_bytes <= captured)
    assert np.all(compiled.memory_s <= eager.memory_s) and np.all(compiled.overhead_s <= eager.overhead_s)
    assert np.count_nonzero(compiled.overhead_s) <= np.count_nonzero(eager.overhead_s)
    assert np.array_equal(compiled.flops, eager.flops)
    assert float(np.sum(compiled.time_s)) <= float(np.sum(eager.time_s))


def test_the_d1_runs_compiled_and_the_gpus_eager_unless_told() -> None:
    workload = pointwise_chain()
    d1 = simulate(workload, make_system("d1", "1x1"))
    gpu = simulate(workload, make_system("a100", "1x1"))
    assert d1.op_cost_model is not None and gpu.op_cost_model is not None
    assert (d1.op_cost_model.execution, d1.op_cost_model.fused_groups) == ("compiled", 1)
    assert (gpu.op_cost_model.execution, gpu.op_cost_model.fused_groups) == ("eager", 0)
    eager_d1 = simulate(workload, make_system("d1", "1x1"), execution="eager")
    assert eager_d1.step_time_s > d1.step_time_s


def test_the_report_states_its_band_and_its_source() -> None:
    workload = pointwise_chain()
    d1_report = simulate(workload, make_system("d1", "1x1"))
    assert Report.from_dict(d1_report.to_dict()) == d1_report
    d1 = d1_report.to_dict()["confidence"]
    assert d1["source"] == "GPU leave-one-device-out proxy" and 0 < d1["band"] < 1
    assert any("bf16 compute is not validated" in note or "bfloat16" in note for note in d1["notes"])
    assert any(note.startswith("compiled execution validated on") for note in d1["notes"])
    tf32 = simulate(workload, make_system("a100-pcie-40gb", "1x1"), precision=parse_precision("tf32"))
    assert tf32.confidence is not None and tf32.confidence.notes == (
        "all measured data is FP32: TF32 matmuls and convolutions are not validated",
    )
    # TF32 asked of a V100 runs as the IEEE FP32 its step validation measured: nothing to warn of
    no_tf32 = simulate(workload, make_system("v100-pcie-32gb", "1x1"), precision=parse_precision("tf32"))
    assert no_tf32.confidence is not None and not any("TF32" in note for note in no_tf32.confidence.notes)
    compiled = simulate(workload, make_system("a100-pcie-40gb", "1x1"), precision=FP32, execution="compiled")
    assert compiled.confidence is not None and compiled.confidence.basis.startswith("a100-pcie-40gb fusion: 4 measured")
    measured = simulate(workload, make_system("v100-pcie-32gb", "1x1"), precision=FP32).to_dict()["confidence"]
    assert measured["source"] == "step validation" and not any("FP32" in note for note in measured["notes"])
    bands = json.loads(BANDS_FILE.read_text())["devices"]["v100-pcie-32gb"]["train"]
    assert (measured["band"], measured["median"]) == (bands["worst"], bands["median"])
    host = simulate(workload, make_system("host", "1x1")).to_dict()["confidence"]
    assert "band" not in host and host["source"] == "none"
    assert Report.from_dict(simulate(workload, make_system("host", "1x1")).to_dict()).confidence == Confidence(
        **{**host, "notes": tuple(host["notes"])}
    )
