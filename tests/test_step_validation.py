"""The step validation (``pytest-dojo validate steps``): the labels, the per-layer reading, the op
classes of a capture, the attribution and the table, by hand; one small measured label end to end
(needs the ``[validation]`` extra); the whole table against the targets (slow)."""

from __future__ import annotations

import csv
import gzip
import statistics
import sys
from pathlib import Path

import pytest
import torch

from dojo_validation.steps import table
from dojo_validation.steps.labels import Published, StepLabel, load_labels, published_errors, published_for
from dojo_validation.steps.layers import (
    DROPOUT_BACKWARD_SCALE,
    MeasuredClasses,
    attribute,
    captured_classes,
    measured_classes,
)
from dojo_validation.steps.memory_fit import (
    ATTEMPTED,
    NEAR_CAPACITY,
    MemoryOutcome,
    attempted_steps,
    format_outcomes,
    memory_outcomes,
)
from dojo_validation.steps.predict import StepPrediction
from hwmodel import make_system
from pytest_dojo.capture import capture_train_step

LABELS = load_labels()


def test_the_labels_are_the_nvidia_steps() -> None:
    groups = [label.group for label in LABELS]
    assert len(LABELS) == 49
    assert (groups.count("train"), groups.count("inf"), groups.count("fusion")) == (11, 31, 4)
    compiled = {label.name for label in LABELS if label.execution == "compiled"}
    assert compiled == {
        "bert_large inf s512 b8 fusion",
        "bert_large inf s512 b16 fusion",
        "gpt2_large inf s1024 b4 fusion",
        "gpt2_large inf s1024 b8 fusion",
    }
    assert sorted(label.parallel for label in LABELS if label.distributed) == ["dp4", "pp4_1", "tp4"]
    train = {label.short_device for label in LABELS if label.group == "train"}
    assert train == {"A100-80", "V100"}
    for label in LABELS:
        assert make_system(label.preset, label.mesh).num_chips == (4 if label.distributed else 1)
        assert label.measured_ms == pytest.approx(label.forward_ms + label.backward_ms) or label.distributed
    dp, tp, pp = (next(label for label in LABELS if label.parallel == p) for p in ("dp4", "tp4", "pp4_1"))
    assert (dp.replica_batches, tp.replica_batches, pp.replica_batches) == ((1,), (4,), (4,))
    assert pp.plan is not None and (pp.plan.pipeline_parallel, pp.plan.micro_batches) == (4, 1)


def test_published_figures_are_the_papers() -> None:
    figures = published_errors()
    by_name = {(label.short_device, label.name): published_for(label, figures) for label in LABELS}
    xl, p4, tp = (
        by_name[key]
        for key in (
            ("A100-80", "gpt3_xl train s2048 b1"),
            ("P4", "gpt2_large inf s1024 b4"),
            ("4xA100-SXM", "gpt2_large train s1024 b4 tp4"),
        )
    )
    assert (xl.neusight, xl.roofline, p4.neusight, p4.roofline) == pytest.approx((0.279, 0.122, 0.653, 0.413))
    assert tp.neusight == pytest.approx(0.084) and tp.roofline is None
    # NeuSight publishes no figure for the torch.compile labels
    assert all((p.neusight is None) == name.endswith("fusion") for (_, name), p in by_name.items())


def write_layer_label(path: Path) -> None:
    """A made-up per-layer label: an embedding, one layer (a projection, a matrix product, a
    dropout), the final norm and the head, with no-kernel nodes around."""
    rows = [
        ("placeholder", "input_ids", "input_ids", 0.0, 0.0, 0.0),
        ("call_method", "view", "view", 0.0092, 0.0, 0.0),
        ("call_module", "transformer.wte", "transformer_wte", 0.1, 0.2, 0.3),
        ("call_module", "transformer.h.0.attn.c_attn", "c_attn", 1.0, 2.0, 0.1),
        ("call_function", "<built-in method matmul of type object at 0x1>", "matmul", 0.5, 1.0, 0.0),
        ("call_method", "size", "size_3", 0.0082, 0.0, 0.0),
        ("call_module", "transformer.h.0.attn.attn_dropout", "attn_dropout", 0.2, 0.5, 0.0),
        ("call_module", "transformer.ln_f", "transformer_ln_f", 0.05, 0.05, 0.01),
        ("call_module", "lm_head", "lm_head", 3.0, 6.0, 0.0),
    ]
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("op", "target", "Name", "fw_latency", "bw_latency", "acc_latency"))
        writer.writerows(rows)


def test_a_per_layer_label_reads_as_a_whole_step(tmp_path: Path) -> None:
    path = tmp_path / "made_up-train-8-1.csv.gz"
    write_layer_label(path)
    measured = measured_classes(path, num_layers=4)
    # the layer's nodes four times, the others once, the no-kernel nodes not at all
    assert measured.forward_ms == pytest.approx(
        {"embedding": 0.1, "linear": 4.0, "attention": 2.0, "dropout": 0.8, "layernorm": 0.05, "vocab": 3.0}
    )
    assert measured.backward_ms["dropout"] == pytest.approx(4 * 0.5 * 9 / 25)
    assert pytest.approx(9 / 25) == DROPOUT_BACKWARD_SCALE
    assert measured.backward_ms["accumulation"] == pytest.approx(0.3 + 4 * 0.1 + 0.01)
    assert measured.total_ms("linear") == pytest.approx(12.0)


class TinyBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(32)
        self.c_attn = torch.nn.Linear(32, 32)
        self.attn_dropout = torch.nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_attn(self.ln_1(x))
        scores = torch.softmax(torch.bmm(h, h.transpose(1, 2)), dim=-1)
        output: torch.Tensor = torch.bmm(self.attn_dropout(scores), h)
        return output


class TinyLanguageModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = torch.nn.Embedding(100, 32)
        self.h = torch.nn.ModuleList([TinyBlock()])
        self.lm_head = torch.nn.Linear(32, 100, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.lm_head(self.h[0](self.wte(ids)))
        return logits


def test_captured_ops_fall_in_the_classes_of_the_per_layer_labels() -> None:
    def loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.view(-1, 100), ids.view(-1))

    ids = torch.zeros(2, 8, dtype=torch.int64)
    workload = capture_train_step(TinyLanguageModel().train(), ids, targets=ids, loss_fn=loss, mode="forward_backward")
    pairs = list(zip(workload.ops, captured_classes(workload), strict=True))
    by_op = {(op.phase, op.name.split(".")[1]): name for op, name in pairs}
    assert by_op["forward", "embedding"] == by_op["backward", "embedding_dense_backward"] == "embedding"
    assert by_op["forward", "native_layer_norm"] == by_op["backward", "native_layer_norm_backward"] == "layernorm"
    assert by_op["forward", "bmm"] == by_op["backward", "bmm"] == "attention"
    assert by_op["forward", "_softmax"] == by_op["backward", "_softmax_backward_data"] == "softmax"
    assert by_op["forward", "bernoulli_"] == by_op["forward", "div_"] == "dropout"
    assert by_op["forward", "addmm"] == "linear"
    assert by_op["forward", "_log_softmax"] == by_op["backward", "nll_loss_backward"] == "loss"
    head = [name for op, name in pairs if op.module.endswith("lm_head")]
    assert head and set(head) == {"vocab"}
    # the backward multiply by the dropout mask runs outside the dropout module, and is dropout's
    masked = [name for op, name in pairs if op.phase == "backward" and op.name == "aten.mul.Tensor"]
    assert "dropout" in masked


def test_the_top_error_class_is_the_farthest_off() -> None:
    measured = MeasuredClasses(forward_ms={"linear": 10.0, "softmax": 1.0}, backward_ms={"linear": 20.0})
    attribution = attribute({"linear": 27.0, "softmax": 1.5, "loss": 0.5}, measured, step_ms=40.0)
    assert attribution.delta_ms["linear"] == pytest.approx(-3.0)
    assert attribution.delta_ms["loss"] == pytest.approx(0.5)
    # 31 ms of nodes against a 40 ms step: 9 ms that no node explains
    assert attribution.delta_ms["unattributed"] == pytest.approx(-9.0)
    name, delta = attribution.top
    assert name == "unattributed" and delta == pytest.approx(-9.0)


def test_the_table_and_the_targets_by_hand() -> None:
    labels = [label for label in LABELS if label.short_device == "A100-80"][:3]
    errors = (0.05, -0.10, 0.30)
    predictions = [_prediction(label, label.measured_ms * (1 + e)) for label, e in zip(labels, errors, strict=True)]
    cells = table.row(predictions[0])
    assert len(cells) == len(table.HEADER) and cells[5] == "+5.0%"
    summary = table.summarize("x", predictions)
    assert summary.median == pytest.approx(0.10) and summary.worst == pytest.approx(0.30)
    lines = table.target_lines(predictions)
    assert lines[0] == "single-GPU training, median |error|: 10.0% (target <= 8%): NOT met"
    assert lines[1] == "single-GPU training, worst |error|: 30.0% (target <= 20%): NOT met"
    text = table.format_table([table.row(p) for p in predictions])
    assert len(text.splitlines()) == 2 + len(predictions)


def test_the_attempted_steps_are_the_labels_and_the_ones_that_did_not_run() -> None:
    steps = attempted_steps(LABELS)
    pairs = {(label.short_device, label.mode) for label, _ in steps}
    # the GPUs and modes with single-GPU labels; P100, T4 and P4 were not run in training
    inference = {(device, "inf") for device in ("A100-40", "P100", "P4", "T4", "V100")}
    assert pairs == inference | {("A100-80", "train"), ("V100", "train")}
    # ten configurations a mode; 10 + 5 + 3 + 5 + 8 inference and 8 + 3 training labels ran
    assert len(steps) == 10 * len(pairs) and sum(ran for _, ran in steps) == 42
    missing = {(label.short_device, label.name) for label, ran in steps if not ran}
    assert ("A100-80", "gpt3_xl train s2048 b2") in missing and ("A100-80", "gpt3_xl train s2048 b1") not in missing
    assert ("V100", "gpt2_large train s1024 b4") in missing and len(missing) == 28
    assert all(len(configs) == 10 for configs in ATTEMPTED.values())


def test_the_memory_tally_by_hand() -> None:
    label = LABELS[0]

    def outcome(ran: bool, needed: float) -> MemoryOutcome:
        return MemoryOutcome(label=label, ran=ran, needed_bytes=needed, capacity_bytes=100.0)

    outcomes = [outcome(True, 50.0), outcome(False, 150.0), outcome(False, 90.0), outcome(True, 101.0)]
    assert [o.fits for o in outcomes] == [True, False, True, False] and outcomes[2].share == pytest.approx(0.9)
    assert format_outcomes(outcomes).splitlines()[-1] == (
        "the memory model agrees on 2 of 4 attempted steps; it rejects 1 that ran; "
        "it fits 1 that did not run (at 90% to 90% of memory)"
    )


def _prediction(label: StepLabel, predicted_ms: float) -> StepPrediction:
    return StepPrediction(
        label=label,
        predicted_ms=predicted_ms,
        roofline_ms=predicted_ms / 2,
        forward_ms=0.0,
        backward_ms=0.0,
        published=Published(0.05, 0.3),
        attribution=None,
    )


@pytest.mark.slow  # needs the [validation] extra, which CI installs for the slow tests
def test_a_small_measured_label_end_to_end() -> None:
    pytest.importorskip("transformers")
    from dojo_validation.steps.predict import predict_label

    label = next(label for label in LABELS if label.short_device == "V100" and label.name == "bert_large inf s512 b8")
    prediction = predict_label(label, published_for(label, published_errors()))
    assert abs(prediction.error) <= table.INFERENCE_MEDIAN
    assert prediction.forward_ms == pytest.approx(prediction.predicted_ms) and prediction.backward_ms == 0.0
    assert prediction.roofline_ms < prediction.predicted_ms
    assert prediction.attribution is not None and prediction.attribution.top[0] in prediction.attribution.delta_ms


@pytest.mark.slow  # needs the [validation] extra, which CI installs for the slow tests
def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    from dojo_validation.steps.validate import main

    assert main(["--device", "V100", "--group", "train", "--model", "gpt2_large"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split()[:2] == ["label", "device"]
    assert lines[2].startswith("gpt2_large s1024 b1") and "V100" in lines[2]
    assert "[1/1] gpt2_large train s1024 b1 on V100" in captured.err
    assert main(["--device", "H100"]) == 2
    assert capsys.readouterr().err.strip() == "no label matches the filters given"


@pytest.mark.slow  # needs the [validation] extra, which CI installs for the slow tests
def test_the_memory_command_shows_the_attempted_steps_chosen(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    from dojo_validation.steps.validate import main

    # BERT-large inference on P4: batches 8 and 16 attempted, both ran
    assert main(["--memory", "--device", "P4", "--model", "bert_large"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:5] for line in lines[2:4]] == [
        ["bert_large", "inf", "b8", "P4", "yes"],
        ["bert_large", "inf", "b16", "P4", "yes"],
    ]
    assert lines[-1].startswith("the memory model agrees on 2 of 2 attempted steps; it rejects 0 that ran")
    assert main(["--memory", "--group", "fusion"]) == 2
    assert capsys.readouterr().err.strip() == "no attempted single-GPU step matches the filters given"


def test_without_transformers_the_command_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dojo_validation.steps.validate import main

    monkeypatch.setitem(sys.modules, "transformers", None)
    assert main(["--device", "V100"]) == 2
    message = capsys.readouterr().err.strip()
    assert message == (
        "pytest-dojo validate steps: the step validation builds Hugging Face transformers:"
        ' pip install -c constraints.txt -e ".[validation]"'
    )


@pytest.fixture(scope="module")
def all_predictions() -> list[StepPrediction]:
    pytest.importorskip("transformers")
    from dojo_validation.steps.validate import predict_all

    return predict_all(LABELS, progress=False)


def group_errors(predictions: list[StepPrediction], group: str) -> list[float]:
    return [abs(p.error) for p in predictions if p.label.group == group]


@pytest.mark.slow
def test_training_median_meets_the_target(all_predictions: list[StepPrediction]) -> None:
    assert statistics.median(group_errors(all_predictions, "train")) <= table.TRAIN_MEDIAN


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="23.1% on 2026-12-02 (BERT-large b2 on A100-80, one of the five labels whose measured forward "
    "outlasts the sum of its nodes' forward times 1.5-1.65x); docs/fidelity.md, 'Whole steps on GPUs'",
)
def test_training_worst_meets_the_target(all_predictions: list[StepPrediction]) -> None:
    assert max(group_errors(all_predictions, "train")) <= table.TRAIN_WORST


@pytest.mark.slow
def test_the_memory_model_rejects_no_step_that_ran(all_predictions: list[StepPrediction]) -> None:
    """Every attempted step the model rejects did not run, and every one it fits that did not run
    is close to the GPU's memory (docs/fidelity.md, "What the GPU must hold")."""
    from dojo_validation.steps.build import capture_label

    outcomes = memory_outcomes(attempted_steps(LABELS), capture_label)
    assert [o.label.name for o in outcomes if o.ran and not o.fits] == []
    assert [o.label.name for o in outcomes if not o.ran and o.fits and o.share < NEAR_CAPACITY] == []


@pytest.mark.slow
def test_inference_median_meets_the_target(all_predictions: list[StepPrediction]) -> None:
    assert statistics.median(group_errors(all_predictions, "inf")) <= table.INFERENCE_MEDIAN


@pytest.mark.slow
def test_each_compiled_inference_label_meets_the_target(all_predictions: list[StepPrediction]) -> None:
    errors = group_errors(all_predictions, "fusion")
    assert len(errors) == 4 and max(errors) <= table.COMPILED_WORST


@pytest.mark.slow
@pytest.mark.parametrize("plan", ["dp4", "tp4", "pp4_1"])
def test_each_four_gpu_run_meets_the_target(all_predictions: list[StepPrediction], plan: str) -> None:
    (error,) = group_errors(all_predictions, plan)
    assert error <= table.DISTRIBUTED_WORST


def test_the_bands_by_hand() -> None:
    from dojo_validation.steps.bands import bands

    v100 = [label for label in LABELS if label.short_device == "V100" and label.group == "inf"][:3]
    predictions = [
        _prediction(label, label.measured_ms * factor) for label, factor in zip(v100, (1.1, 0.8, 1.05), strict=True)
    ]
    assert bands(predictions) == {"v100-pcie-32gb": {"inf": {"labels": 3, "median": 0.1, "worst": 0.2}}}


def test_write_bands_needs_every_label(capsys: pytest.CaptureFixture[str]) -> None:
    from dojo_validation.steps.validate import main

    assert main(["--write-bands", "--device", "V100"]) == 2
    assert capsys.readouterr().err.strip() == (
        "pytest-dojo validate steps: --write-bands needs every label (no --device, --group or --model)"
    )
