"""Hand-built workloads for the hardware-model tests (no torch): a chain of linear + batch-norm + ReLU
layers with its backward pass and one AdamW-like optimizer op, with exact FLOPs, bytes and liveness.

Layer ``l`` (width ``d``, batch ``b``, FP32 as a CPU capture records it):

* forward: ``mm(h[l-1], W[l]) -> z[l]`` (``2 b d^2`` FLOPs), ``native_batch_norm(z[l], g[l]) ->
  y[l], mean[l], invstd[l]``, ``relu(y[l]) -> h[l]``; then ``sum(h[L]) -> loss``;
* backward, last layer first: ``threshold_backward``, ``native_batch_norm_backward -> dz[l],
  dg[l]``, ``mm(dz, h[l-1]) -> dW[l]`` (weight gradient), ``mm(dz, W) -> dh[l-1]`` (input
  gradient, not for the first layer), each with its GEMM shape ``(1, m, n, k)`` as
  ``OpRecord.implicit_gemms``: ``(1, b, d, d)`` forward and input gradient, ``(1, d, d, b)`` weight
  gradient;
* optimizer: one ``_foreach_add_`` over every parameter, gradient and the two moments.
"""

from __future__ import annotations

from hwmodel.step.workload import OpRecord, ParameterRecord, TensorRecord, Workload

FLOAT_BYTES = 4


def chain_workload(
    *, layers: int = 4, batch: int = 8, width: int = 256, batchnorm: bool = True, name: str = "chain"
) -> Workload:
    """The chain network described in the module docstring."""
    kinds: dict[int, str] = {}
    sizes: dict[int, int] = {}
    ops: list[OpRecord] = []

    def tensor(kind: str, elements: int) -> int:
        tensor_id = len(kinds)
        kinds[tensor_id] = kind
        sizes[tensor_id] = elements * FLOAT_BYTES
        return tensor_id

    def op(
        name: str,
        phase: str,
        module: str,
        flops: float,
        inputs: list[int],
        outputs: list[int],
        gemm: tuple[int, int, int, int] | None = None,
    ) -> None:
        ops.append(
            OpRecord(
                name=name,
                phase=phase,
                module=module,
                flops=float(flops),
                flop_source="formula",
                bytes_read=sum(sizes[i] for i in inputs),
                bytes_written=sum(sizes[i] for i in outputs),
                output_elements=sum(sizes[i] for i in outputs) // FLOAT_BYTES,
                dtype="float32",
                input_ids=tuple(inputs),
                output_ids=tuple(outputs),
                implicit_gemms=() if gemm is None else (gemm,),
            )
        )

    activation = batch * width
    weights = [tensor("parameter", width * width) for _ in range(layers)]
    gammas = [tensor("parameter", width) for _ in range(layers)] if batchnorm else []
    parameters = weights + gammas
    moments = [tensor("optimizer_state", sizes[p] // FLOAT_BYTES) for p in parameters for _ in range(2)]
    hidden = [tensor("input", activation)]
    saved: list[tuple[int, int, int, int]] = []
    for layer in range(layers):
        module = f"layer{layer}"
        z = tensor("activation", activation)
        op(
            "aten.mm.default",
            "forward",
            module,
            2 * batch * width * width,
            [hidden[-1], weights[layer]],
            [z],
            (1, batch, width, width),
        )
        y = z
        mean = invstd = -1
        if batchnorm:
            y, mean, invstd = tensor("activation", activation), tensor("activation", width), tensor("activation", width)
            op(
                "aten.native_batch_norm.default",
                "forward",
                module,
                5 * activation,
                [z, gammas[layer]],
                [y, mean, invstd],
            )
        h = tensor("activation", activation)
        op("aten.relu.default", "forward", module, activation, [y], [h])
        hidden.append(h)
        saved.append((z, y, mean, invstd))
    loss = tensor("activation", 1)
    op("aten.sum.default", "forward", "Global", activation, [hidden[-1]], [loss])
    gradient_of: dict[int, int] = {}
    grad_ready: dict[int, int] = {}
    upstream = tensor("activation", activation)
    op("aten.expand_copy.default", "backward", "Global", 0, [loss], [upstream])
    for layer in reversed(range(layers)):
        module = f"layer{layer}"
        z, y, mean, invstd = saved[layer]
        dy = tensor("activation", activation)
        op("aten.threshold_backward.default", "backward", module, activation, [upstream, hidden[layer + 1]], [dy])
        dz = dy
        if batchnorm:
            dz = tensor("activation", activation)
            dgamma = tensor("gradient", width)
            op(
                "aten.native_batch_norm_backward.default",
                "backward",
                module,
                8 * activation,
                [dy, z, gammas[layer], mean, invstd],
                [dz, dgamma],
            )
            gradient_of[gammas[layer]] = dgamma
            grad_ready[gammas[layer]] = len(ops) - 1
        dw = tensor("gradient", width * width)
        op(
            "aten.mm.default",
            "backward",
            module,
            2 * batch * width * width,
            [dz, hidden[layer]],
            [dw],
            (1, width, width, batch),
        )
        gradient_of[weights[layer]] = dw
        grad_ready[weights[layer]] = len(ops) - 1
        if layer > 0:
            upstream = tensor("activation", activation)
            op(
                "aten.mm.default",
                "backward",
                module,
                2 * batch * width * width,
                [dz, weights[layer]],
                [upstream],
                (1, batch, width, width),
            )
    states = [gradient_of[p] for p in parameters] + moments
    total = sum(sizes[p] for p in parameters) // FLOAT_BYTES
    op("aten._foreach_add_.List", "optimizer", "Global", 10 * total, parameters + states, parameters + moments)

    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for index, record in enumerate(ops):
        for tensor_id in record.output_ids:
            first.setdefault(tensor_id, index)
        for tensor_id in (*record.input_ids, *record.output_ids):
            last[tensor_id] = index
    tensors = tuple(
        TensorRecord(
            tensor_id=tensor_id,
            nbytes=sizes[tensor_id],
            dtype="float32",
            kind=kind,
            first_op=first.get(tensor_id, -1) if kind in ("activation", "gradient") else -1,
            last_op=last.get(tensor_id, -1),
        )
        for tensor_id, kind in kinds.items()
    )
    parameter_records = tuple(
        ParameterRecord(name=f"p{p}", numel=sizes[p] // FLOAT_BYTES, dtype="float32", grad_ready_op=grad_ready[p])
        for p in parameters
    )
    return Workload(name=name, batch_size=batch, ops=tuple(ops), tensors=tensors, parameters=parameter_records)
