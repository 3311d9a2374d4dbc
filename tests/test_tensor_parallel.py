"""Tensor parallelism as Megatron-LM runs it (:mod:`hwmodel.step.tensor_parallel`), on hand-built
transformer-like blocks whose FLOPs, bytes and collective volumes are computed by hand."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel.ops.cost import OpCosts
from hwmodel.step.tensor_parallel import (
    collective_bytes,
    shard_costs,
    sharded_activation_fraction,
    sharding,
    work_share,
)
from hwmodel.step.workload import OpRecord, TensorRecord, Workload

FLOAT = 4


class Builder:
    """Ops and tensors of a hand-built step (FP32), with liveness from the ops that touch each tensor."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.kinds: dict[int, str] = {}
        self.ops: list[OpRecord] = []

    def tensor(self, kind: str, elements: int) -> int:
        tensor_id = len(self.sizes)
        self.sizes[tensor_id], self.kinds[tensor_id] = elements * FLOAT, kind
        return tensor_id

    def op(
        self, name: str, phase: str, flops: float, inputs: list[int], outputs: list[int], matrix: bool, rows: int = 0
    ) -> int:
        gemm = ((1, 2, 2, 2),) if matrix else ()
        self.ops.append(
            OpRecord(
                name=name,
                phase=phase,
                module="block",
                flops=flops,
                flop_source="formula",
                bytes_read=sum(self.sizes[i] for i in inputs),
                bytes_written=sum(self.sizes[i] for i in outputs),
                output_elements=sum(self.sizes[i] for i in outputs) // FLOAT,
                dtype="float32",
                input_ids=tuple(inputs),
                output_ids=tuple(outputs),
                implicit_gemms=gemm,
                rows=rows,
                row_elements=self.sizes[inputs[0]] // FLOAT // rows if rows else 0,
            )
        )
        return len(self.ops) - 1

    def workload(self) -> Workload:
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for index, op in enumerate(self.ops):
            for tensor_id in op.output_ids:
                first.setdefault(tensor_id, index)
            for tensor_id in op.input_ids:
                last[tensor_id] = index
        tensors = tuple(
            TensorRecord(
                tensor_id=t,
                nbytes=size,
                dtype="float32",
                kind=self.kinds[t],
                first_op=first.get(t, -1) if self.kinds[t] == "activation" else -1,
                last_op=last.get(t, -1),
            )
            for t, size in self.sizes.items()
        )
        return Workload(name="block", batch_size=1, ops=tuple(self.ops), tensors=tensors)


def mlp_blocks(tokens: int, hidden: int, blocks: int = 2, residual_inside: bool = False) -> Workload:
    """``blocks`` MLP blocks ``x + W2 gelu(W1 LN(x))`` (``4 hidden`` inner features), forward and
    the backward of the matrix ops and the activation; with ``residual_inside`` the residual add
    sits between the two matrix ops (a pair that cannot be split)."""
    b = Builder()
    x = b.tensor("input", tokens * hidden)
    trail: list[tuple[int, int, int, int, int]] = []
    for _ in range(blocks):
        w1, w2 = b.tensor("parameter", hidden * 4 * hidden), b.tensor("parameter", 4 * hidden * hidden)
        normed, up, act, down, out = (b.tensor("activation", n * tokens * hidden) for n in (1, 4, 4, 1, 1))
        wide = b.tensor("activation", 4 * tokens * hidden)
        if residual_inside:
            b.op("aten.repeat.default", "forward", 0.0, [x], [wide], False)
        b.op("aten.native_layer_norm.default", "forward", 8.0 * tokens * hidden, [x], [normed], False)
        b.op("aten.mm.default", "forward", 8.0 * tokens * hidden * hidden, [normed, w1], [up], True)
        if residual_inside:
            mixed = b.tensor("activation", 4 * tokens * hidden)
            b.op("aten.add.Tensor", "forward", 4.0 * tokens * hidden, [up, wide], [mixed], False)
            up = mixed
        b.op("aten.gelu.default", "forward", 32.0 * tokens * hidden, [up], [act], False)
        b.op("aten.mm.default", "forward", 8.0 * tokens * hidden * hidden, [act, w2], [down], True)
        b.op("aten.add.Tensor", "forward", 1.0 * tokens * hidden, [down, x], [out], False)
        trail.append((normed, up, act, w1, w2))
        x = out
    grad = b.tensor("activation", tokens * hidden)
    b.op("aten.ones_like.default", "backward", 0.0, [x], [grad], False)
    for normed, up, act, w1, w2 in reversed(trail):
        d_act, d_up, d_w2, d_w1, d_x = (b.tensor("activation", n * tokens * hidden) for n in (4, 4, 4, 4, 1))
        b.op("aten.mm.default", "backward", 8.0 * tokens * hidden * hidden, [grad, w2], [d_act], True)
        b.op("aten.mm.default", "backward", 8.0 * tokens * hidden * hidden, [act, grad], [d_w2], True)
        b.op("aten.gelu_backward.default", "backward", 32.0 * tokens * hidden, [d_act, up], [d_up], False)
        b.op("aten.mm.default", "backward", 8.0 * tokens * hidden * hidden, [d_up, w1], [d_x], True)
        b.op("aten.mm.default", "backward", 8.0 * tokens * hidden * hidden, [normed, d_up], [d_w1], True)
        grad = d_x
    return b.workload()


def test_each_block_is_a_column_and_row_parallel_pair_around_its_activation() -> None:
    workload = mlp_blocks(tokens=16, hidden=8)
    marks = sharding(workload)
    # forward per block: LN, mm1, gelu, mm2, add at 5k .. 5k + 4; backward: ones_like at 10
    assert marks.pairs == ((1, 3), (6, 8))
    names = [
        (op.name.split(".")[1], bool(s), bool(r))
        for op, s, r in zip(workload.ops, marks.sharded, marks.all_reduce, strict=True)
    ]
    assert names[:5] == [
        ("native_layer_norm", False, False),  # replicated
        ("mm", True, False),  # column-parallel: no gather
        ("gelu", True, False),  # on the shard
        ("mm", True, True),  # row-parallel: all-reduce of its output
        ("add", False, False),  # residual: replicated
    ]
    # backward of a block: mm(dY, W2) sharded, dW2 sharded, gelu backward sharded, mm(dH, W1) all-reduces
    assert names[11:16] == [
        ("mm", True, False),
        ("mm", True, False),
        ("gelu_backward", True, False),
        ("mm", True, True),
        ("mm", True, False),
    ]
    assert not marks.gathered.any()


def test_collective_volumes_are_megatrons_two_all_reduces_per_block_each_way() -> None:
    tokens, hidden = 16, 8
    workload = mlp_blocks(tokens=tokens, hidden=hidden)
    output_bytes = np.array(
        [float(sum(t.nbytes for t in workload.tensors if t.tensor_id in op.output_ids)) for op in workload.ops]
    )
    volumes = collective_bytes(workload, output_bytes)
    phases = np.array([op.phase for op in workload.ops])
    all_reduce = volumes["all_reduce"]
    # one b*s*h FP32 all-reduce after each row-parallel op forward, one per column-parallel input gradient backward
    assert all_reduce[phases == "forward"].tolist().count(tokens * hidden * FLOAT) == 2
    assert all_reduce[phases == "backward"].tolist().count(tokens * hidden * FLOAT) == 2
    assert all_reduce.sum() == 4 * tokens * hidden * FLOAT
    assert volumes["all_gather"].sum() == volumes["reduce_scatter"].sum() == 0


def test_a_residual_between_two_matrix_ops_keeps_the_plain_rule() -> None:
    workload = mlp_blocks(tokens=16, hidden=8, blocks=1, residual_inside=True)
    marks = sharding(workload)
    assert marks.pairs == ()
    matrix = np.array([op.name == "aten.mm.default" for op in workload.ops])
    assert (marks.gathered == matrix).all()  # each matrix op gathers (forward) or scatters (backward)
    assert not marks.sharded.any() and not marks.all_reduce.any()


def _costs(workload: Workload, matrix_share: float) -> OpCosts:
    flops = np.array([op.flops for op in workload.ops])
    matrix = np.array([bool(op.implicit_gemms) for op in workload.ops])
    flops = np.where(matrix, flops * matrix_share, flops)
    memory = np.array([float(op.bytes_read + op.bytes_written) for op in workload.ops]) / 1e12
    overhead = np.full(len(flops), 5e-6)
    return OpCosts(
        compute_s=flops / 1e13,
        memory_s=memory,
        overhead_s=overhead,
        time_s=np.maximum(flops / 1e13, memory) + overhead,
        flops=flops,
    )


@settings(max_examples=30, deadline=None)
@given(tokens=st.integers(1, 64), hidden=st.integers(1, 32), tp=st.sampled_from([1, 2, 4, 8]))
def test_sharded_ops_run_exactly_their_share(tokens: int, hidden: int, tp: int) -> None:
    workload = mlp_blocks(tokens=tokens, hidden=hidden)
    whole = _costs(workload, 1.0)
    split = shard_costs(_costs(workload, 1.0 / tp), workload, tp)
    marks = sharding(workload).sharded
    if tp == 1:
        assert split is not None and (split.time_s == whole.time_s).all() and work_share(workload, 1, 1.0) is None
        assert sharded_activation_fraction(workload, 1, np.ones(1)) == 1.0
        return
    assert np.allclose(split.flops[marks], whole.flops[marks] / tp, rtol=1e-12)
    assert (split.flops[~marks] == whole.flops[~marks]).all()
    assert (split.overhead_s == whole.overhead_s).all()  # a launch is not shared
    share = work_share(workload, tp, 1.0)
    assert share is not None and np.allclose(share[marks], 1.0 / tp)
    fraction = sharded_activation_fraction(workload, tp, np.ones(1))
    assert 1.0 / tp <= fraction < 1.0


def tiny_language_model(tokens: int, hidden: int, vocabulary: int) -> Workload:
    """Tied embedding -> LayerNorm -> logits (the embedding's weight) -> log-softmax -> NLL loss, and
    its backward."""
    b = Builder()
    ids, targets = b.tensor("input", tokens), b.tensor("input", tokens)
    table = b.tensor("parameter", vocabulary * hidden)
    embedded, normed, logits, logp, loss = (
        b.tensor("activation", n)
        for n in (tokens * hidden, tokens * hidden, tokens * vocabulary, tokens * vocabulary, 1)
    )
    b.op("aten.embedding.default", "forward", 0.0, [table, ids], [embedded], False)
    b.op("aten.native_layer_norm.default", "forward", 8.0 * tokens * hidden, [embedded], [normed], False)
    b.op("aten.mm.default", "forward", 2.0 * tokens * hidden * vocabulary, [normed, table], [logits], True)
    b.op("aten._log_softmax.default", "forward", 5.0 * tokens * vocabulary, [logits], [logp], False, rows=tokens)
    b.op("aten.nll_loss_forward.default", "forward", float(tokens), [logp, targets], [loss], False)
    d_logp, d_logits, d_table, d_normed, d_embedded, d_lookup = (
        b.tensor("activation", n)
        for n in (
            tokens * vocabulary,
            tokens * vocabulary,
            vocabulary * hidden,
            tokens * hidden,
            tokens * hidden,
            vocabulary * hidden,
        )
    )
    b.op("aten.nll_loss_backward.default", "backward", 0.0, [loss, logp, targets], [d_logp], False)
    b.op("aten._log_softmax_backward_data.default", "backward", 0.0, [d_logp, logp], [d_logits], False, rows=tokens)
    b.op("aten.mm.default", "backward", 2.0 * tokens * hidden * vocabulary, [d_logits, normed], [d_table], True)
    b.op("aten.mm.default", "backward", 2.0 * tokens * hidden * vocabulary, [d_logits, table], [d_normed], True)
    b.op("aten.native_layer_norm_backward.default", "backward", 0.0, [d_normed, embedded], [d_embedded], False)
    b.op("aten.embedding_dense_backward.default", "backward", 0.0, [d_embedded, ids], [d_lookup], False)
    return b.workload()


def test_the_output_projection_and_its_loss_split_by_vocabulary() -> None:
    tokens, hidden = 32, 16
    workload = tiny_language_model(tokens=tokens, hidden=hidden, vocabulary=1000)
    marks = sharding(workload)
    names = [op.name.split(".")[1] for op in workload.ops]
    sharded = [name for name, s in zip(names, marks.sharded, strict=True) if s]
    # the embedding looks its vocabulary slice up; LayerNorm (forward and backward) runs replicated
    assert sharded == [
        "embedding", "mm", "_log_softmax", "nll_loss_forward", "nll_loss_backward",
        "_log_softmax_backward_data", "mm", "mm", "embedding_dense_backward",
    ]  # fmt: skip
    assert [names[i] for i in np.flatnonzero(marks.all_reduce)] == ["embedding", "mm"]  # lookup; input gradient
    assert marks.cross_entropy_rows.tolist() == [0, 0, 0, tokens] + [0] * 7
    output_bytes = np.array([float(op.bytes_written) for op in workload.ops])
    volumes = collective_bytes(workload, output_bytes)["all_reduce"]
    # the looked-up rows (b*s*h), the 3 FP32 statistics per row, the logits' input gradient (b*s*h)
    assert volumes.tolist() == [
        tokens * hidden * FLOAT,
        0,
        0,
        3 * tokens * 4,
        0,
        0,
        0,
        0,
        tokens * hidden * FLOAT,
        0,
        0,
    ]
    assert not marks.gathered.any()


def test_separate_query_key_and_value_projections_are_column_parallel_together() -> None:
    tokens, hidden = 16, 8
    b = Builder()
    x = b.tensor("input", tokens * hidden)
    wq, wk, wv, wo = (b.tensor("parameter", hidden * hidden) for _ in range(4))
    normed, q, k, v, ctx, out = (b.tensor("activation", tokens * hidden) for _ in range(6))
    scores, probs = b.tensor("activation", tokens * tokens), b.tensor("activation", tokens * tokens)
    b.op("aten.native_layer_norm.default", "forward", 8.0 * tokens * hidden, [x], [normed], False)
    for weight, projected in ((wq, q), (wk, k), (wv, v)):
        b.op("aten.mm.default", "forward", 2.0 * tokens * hidden * hidden, [normed, weight], [projected], True)
    b.op("aten.bmm.default", "forward", 2.0 * tokens * tokens * hidden, [q, k], [scores], True)
    b.op("aten._softmax.default", "forward", 5.0 * tokens * tokens, [scores], [probs], False, rows=tokens)
    b.op("aten.bmm.default", "forward", 2.0 * tokens * tokens * hidden, [probs, v], [ctx], True)
    b.op("aten.mm.default", "forward", 2.0 * tokens * hidden * hidden, [ctx, wo], [out], True)
    marks = sharding(b.workload())
    assert marks.pairs == ((1, 7), (2, 7), (3, 7))
    assert marks.sharded.tolist() == [False] + [True] * 7  # LayerNorm replicated, the rest on the shard
    assert marks.all_reduce.tolist() == [False] * 7 + [True]
    assert not marks.gathered.any()


def test_a_layer_norm_between_two_matrix_ops_keeps_them_unpaired() -> None:
    """A LayerNorm needs every feature of a row, so it cannot run between a column- and a
    row-parallel op (BERT's prediction transform: dense, GELU, LayerNorm, decoder)."""
    tokens, hidden = 16, 8
    b = Builder()
    x = b.tensor("input", tokens * hidden)
    w1, w2 = b.tensor("parameter", hidden * hidden), b.tensor("parameter", hidden * hidden)
    up, act, normed, out = (b.tensor("activation", tokens * hidden) for _ in range(4))
    b.op("aten.mm.default", "forward", 2.0 * tokens * hidden * hidden, [x, w1], [up], True)
    b.op("aten.gelu.default", "forward", 8.0 * tokens * hidden, [up], [act], False)
    b.op("aten.native_layer_norm.default", "forward", 8.0 * tokens * hidden, [act], [normed], False, rows=tokens)
    b.op("aten.mm.default", "forward", 2.0 * tokens * hidden * hidden, [normed, w2], [out], True)
    marks = sharding(b.workload())
    assert marks.pairs == ()
    assert marks.gathered.tolist() == [True, False, False, True]
