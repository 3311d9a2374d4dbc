"""Capture one PyTorch training step as a :class:`hwmodel.Workload`: the only module that imports torch.

The step (forward, loss, backward, ``optimizer.step()``) runs once under ``FakeTensorMode``: no
arithmetic and no storage, so any input size captures in seconds. A ``TorchDispatchMode`` on top
records every aten op that reaches the dispatcher after autograd: its name, phase, owning module,
FLOPs, bytes read and written, and the storages it reads and writes (for dependencies and liveness).

* FLOPs: ``torch.utils.flop_counter``'s registry first, then :mod:`hwmodel.flops` (CPU attention,
  norms, softmax, pointwise, reductions, foreach optimizer ops). An op with neither is recorded with
  0 FLOPs as ``unmodeled``: it is costed by its bytes and listed in the report.
* GEMMs: for matrix multiplies, and for the kernels ATen's CPU backend lowers to GEMM calls
  (convolutions it runs one sample at a time, flash attention), the products the kernel runs
  (:mod:`hwmodel.gemm`), so that a chip with measured GEMM rates can time them by shape. Which
  convolution kernel ATen picks is asked of ATen itself (``torch._C._select_conv_backend``): it
  depends on the shapes and on the intra-op thread count at capture time.
* Views move no data and are not recorded; their storage is their base's, so dependencies flow
  through them. Copies are recorded like any op.
* Parameters, buffers and inputs are replaced by fake tensors of the same shape and dtype, so the
  model may live on the CPU or on the ``meta`` device (build big models under
  ``with torch.device("meta")``); the caller's model is never modified.
* The optimizer's state is created before recording (one step on zero gradients), so the captured
  step is a steady-state step, not the first one that allocates the moments.

Not captured: data-dependent ops (``nonzero``, ``.item()`` on activations) raise under fake
tensors: such a model needs a shape-static variant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from torch.utils.module_tracker import ModuleTracker

from hwmodel import flops as hw_flops
from hwmodel import gemm as hw_gemm
from hwmodel.workload import ROOT_MODULE, OpRecord, ParameterRecord, TensorRecord, Workload
from pytest_dojo.errors import CaptureError

OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
LossFunction = Callable[..., torch.Tensor]

_IGNORED_OPS = frozenset(
    {
        "prim.device.default",
        "aten._local_scalar_dense.default",
        "aten.lift_fresh.default",
        "profiler._record_function_enter_new.default",
        "profiler._record_function_exit._RecordFunction",
    }
)
"""Bookkeeping dispatches that do no work on the device."""


def default_optimizer(parameters: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """AdamW with the foreach implementation: one list op per update term, as a fused kernel would."""
    return torch.optim.AdamW(parameters, lr=1e-3, foreach=True)


def default_loss(outputs: Any, targets: Any = None) -> torch.Tensor:
    """Sum of the mean of every floating-point output: gives every output a gradient."""
    leaves = [
        leaf for leaf in pytree.tree_leaves(outputs) if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()
    ]
    if not leaves:
        raise CaptureError("the model returned no floating-point tensor to build a default loss from")
    total = leaves[0].mean()
    for leaf in leaves[1:]:
        total = total + leaf.mean()
    return total


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def leading_batch(example_inputs: Any) -> int:
    """The leading dimension of the first tensor in ``example_inputs``: the global batch."""
    for leaf in pytree.tree_leaves(example_inputs):
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    raise CaptureError("example_inputs holds no tensor with a batch dimension; pass batch_size=")


@dataclass
class _Storage:
    tensor_id: int
    nbytes: int
    dtype: str
    kind: str
    first_op: int
    last_op: int = -1
    last_write_op: int = -1


@dataclass
class _Recorder:
    """State of one capture: the ops so far and every storage seen."""

    tracker: ModuleTracker
    phase: str = "forward"
    ops: list[OpRecord] = field(default_factory=list)
    storages: dict[int, _Storage] = field(default_factory=dict)
    keep_alive: list[Any] = field(default_factory=list)

    def storage_of(self, tensor: torch.Tensor, kind: str = "activation") -> _Storage:
        storage = tensor.untyped_storage()
        key = storage._cdata
        record = self.storages.get(key)
        if record is None:
            record = _Storage(
                tensor_id=len(self.storages),
                nbytes=int(storage.nbytes()),
                dtype=dtype_name(tensor.dtype),
                kind=kind,
                first_op=len(self.ops) if kind == "activation" else -1,
            )
            self.storages[key] = record
            self.keep_alive.append(storage)
        return record

    def module(self) -> str:
        parents = self.tracker.parents
        if not parents:
            return ROOT_MODULE
        return max(parents, key=lambda name: (name.count("."), name))

    def record(self, func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        name = str(func)
        if name in _IGNORED_OPS or func.is_view:
            return
        inputs = _unique_tensors(pytree.tree_leaves((args, kwargs)))
        outputs = _unique_tensors([*pytree.tree_leaves(out), *_mutated_arguments(func, args, kwargs)])
        index = len(self.ops)
        input_ids = []
        for tensor in inputs:
            storage = self.storage_of(tensor)
            storage.last_op = index
            input_ids.append(storage.tensor_id)
        output_ids = []
        for tensor in outputs:
            storage = self.storage_of(tensor)
            storage.last_op = index
            storage.last_write_op = index
            output_ids.append(storage.tensor_id)
        flops, source = _count_flops(func, args, kwargs, out, inputs, outputs)
        first_float = next((t for t in (*outputs, *inputs) if t.is_floating_point()), None)
        everything = [*outputs, *inputs]
        reference = first_float if first_float is not None else (everything[0] if everything else None)
        self.ops.append(
            OpRecord(
                name=name,
                phase=self.phase,
                module=self.module(),
                flops=flops,
                flop_source=source,
                bytes_read=sum(_nbytes(t) for t in inputs),
                bytes_written=sum(_nbytes(t) for t in outputs),
                output_elements=sum(t.numel() for t in outputs),
                dtype=dtype_name(reference.dtype) if reference is not None else "float32",
                input_ids=tuple(input_ids),
                output_ids=tuple(output_ids),
                gemms=_gemms(func, args, kwargs, out),
            )
        )


def _unique_tensors(leaves: Sequence[Any]) -> list[torch.Tensor]:
    seen: set[int] = set()
    unique = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor) and id(leaf) not in seen:
            seen.add(id(leaf))
            unique.append(leaf)
    return unique


def _mutated_arguments(func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """Tensors an op writes in place (``add_``, ``_foreach_mul_``...): its schema marks them."""
    mutated: list[Any] = []
    for position, argument in enumerate(func._schema.arguments):
        if argument.alias_info is None or not argument.alias_info.is_write:
            continue
        value = args[position] if position < len(args) else kwargs.get(argument.name)
        mutated.extend(pytree.tree_leaves(value))
    return mutated


def _nbytes(tensor: torch.Tensor) -> int:
    return int(tensor.numel() * tensor.element_size())


def _shape_arg(arg: Any) -> hw_flops.ShapeArg:
    if isinstance(arg, torch.Tensor):
        return tuple(int(d) for d in arg.shape)
    if isinstance(arg, (list, tuple)) and arg and all(isinstance(item, torch.Tensor) for item in arg):
        return tuple(tuple(int(d) for d in item.shape) for item in arg)
    return None


def _count_flops(
    func: torch._ops.OpOverload,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    out: Any,
    inputs: list[torch.Tensor],
    outputs: list[torch.Tensor],
) -> tuple[float, str]:
    packet = func._overloadpacket
    if packet is torch.ops.aten.convolution_backward:
        return _convolution_backward_flops(args, kwargs), "formula"
    if packet in flop_registry:
        return float(flop_registry[packet](*args, **kwargs, out_val=out)), "torch"
    counted = hw_flops.flop_count(
        str(func),
        [_shape_arg(arg) for arg in args],
        [tuple(int(d) for d in t.shape) for t in outputs],
        pointwise=torch.Tag.pointwise in func.tags,
    )
    if counted is None:
        return 0.0, "unmodeled"
    return counted, "formula"


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape)


def _gemms(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> tuple[hw_gemm.Gemm, ...]:
    """The GEMMs ATen's CPU kernel of this op runs, where it runs any (empty otherwise)."""
    packet = func._overloadpacket
    aten = torch.ops.aten
    if packet in (aten.mm, aten.addmm, aten.bmm, aten.baddbmm):
        first, second = (args[1], args[2]) if packet in (aten.addmm, aten.baddbmm) else (args[0], args[1])
        a, b = _shape(first), _shape(second)
        batch = a[0] if len(a) == 3 else 1
        return hw_gemm.matmul_gemms(batch, a[-2], b[-1], a[-1])
    if packet in (aten.convolution, aten.convolution_backward):
        return _convolution_gemms(func, args, kwargs, out)
    if packet in (
        aten._scaled_dot_product_flash_attention_for_cpu,
        aten._scaled_dot_product_flash_attention_for_cpu_backward,
    ):
        backward = packet is aten._scaled_dot_product_flash_attention_for_cpu_backward
        query, key, value = (_shape(t) for t in (args[1:4] if backward else args[0:3]))
        return hw_gemm.flash_attention_gemms(
            batch_heads=int(torch.Size(query[:-2]).numel()),
            length_q=query[-2],
            length_k=key[-2],
            dim_qk=query[-1],
            dim_v=value[-1],
            backward=backward,
        )
    return ()


def _convolution_gemms(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> tuple[hw_gemm.Gemm, ...]:
    """Per-sample GEMMs of a convolution that ATen runs with ``slow_conv2d``; none for the others
    (oneDNN's direct and depthwise kernels are not GEMM calls)."""
    bound = dict(zip((a.name for a in func._schema.arguments), args, strict=False))
    bound.update(kwargs)
    select = getattr(torch._C, "_select_conv_backend", None)
    if select is None:
        return ()
    try:
        backend = select(
            bound["input"],
            bound["weight"],
            None,
            bound["stride"],
            bound["padding"],
            bound["dilation"],
            bound["transposed"],
            bound["output_padding"],
            bound["groups"],
            None,
        )
    except (RuntimeError, TypeError):
        return ()
    if str(backend).rsplit(".", 1)[-1] != "Slow2d":
        return ()
    backward = "grad_output" in bound
    output = bound["grad_output"] if backward else out
    weight = _shape(bound["weight"])
    mask = bound["output_mask"] if backward else (False, False, False)
    return hw_gemm.per_sample_convolution_gemms(
        batch=_shape(bound["input"])[0],
        in_channels=weight[1],
        out_channels=weight[0],
        kernel_elements=int(torch.Size(weight[2:]).numel()),
        output_pixels=int(torch.Size(_shape(output)[2:]).numel()),
        forward=not backward,
        input_grad=bool(mask[0]),
        weight_grad=bool(mask[1]),
    )


def _convolution_backward_flops(args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    """Our formula, not torch's: torch 2.13 counts grouped convolutions' input gradient as dense."""
    bound = dict(
        zip((a.name for a in torch.ops.aten.convolution_backward.default._schema.arguments), args, strict=False)
    )
    bound.update(kwargs)
    mask = bound["output_mask"]
    return hw_flops.convolution_backward_flops(
        tuple(int(d) for d in bound["grad_output"].shape),
        tuple(int(d) for d in bound["input"].shape),
        tuple(int(d) for d in bound["weight"].shape),
        transposed=bool(bound["transposed"]),
        input_grad=bool(mask[0]),
        weight_grad=bool(mask[1]),
    )


class _DispatchRecorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.recorder = recorder

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.recorder.record(func, args, kwargs, out)
        return out


def _fake_like(tensor: torch.Tensor, batch_size: int | None = None, global_batch: int | None = None) -> torch.Tensor:
    """A fake CPU tensor with the shape and dtype of ``tensor`` (resized along the batch dim)."""
    shape = list(tensor.shape)
    if batch_size is not None and shape and shape[0] == global_batch:
        shape[0] = batch_size
    return torch.empty(shape, dtype=tensor.dtype, device="cpu")


def capture_train_step(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    targets: Any = None,
    loss_fn: LossFunction | None = None,
    optimizer: OptimizerFactory | None = None,
    batch_size: int | None = None,
    name: str | None = None,
    intra_op_threads: int | None = None,
) -> Workload:
    """Capture one training step of ``model`` on ``example_inputs`` as a Workload.

    ``example_inputs`` is one global batch: a tensor (``model(x)``), a tuple (``model(*x)``) or a
    dict (``model(**x)``), real or on the ``meta`` device. With ``batch_size``, every input and
    target whose leading dimension equals the global batch is resized to ``batch_size`` first (a
    data-parallel replica's share). ``loss_fn(outputs, targets)`` (or ``loss_fn(outputs)`` without
    targets) defaults to :func:`default_loss`; ``optimizer`` is a factory taking the parameters,
    defaulting to :func:`default_optimizer`. ``intra_op_threads`` sets torch's thread count for the
    capture (restored after): ATen picks some CPU kernels by it, and the recorded GEMMs follow.
    """
    if intra_op_threads is None:
        return _capture(model, example_inputs, targets, loss_fn, optimizer, batch_size, name)
    previous = torch.get_num_threads()
    torch.set_num_threads(intra_op_threads)
    try:
        return _capture(model, example_inputs, targets, loss_fn, optimizer, batch_size, name)
    finally:
        torch.set_num_threads(previous)


def _capture(
    model: torch.nn.Module,
    example_inputs: Any,
    targets: Any,
    loss_fn: LossFunction | None,
    optimizer: OptimizerFactory | None,
    batch_size: int | None,
    name: str | None,
) -> Workload:
    global_batch = leading_batch(example_inputs)
    replica_batch = batch_size or global_batch
    network = name or type(model).__name__
    loss = loss_fn or default_loss
    make_optimizer = optimizer or default_optimizer
    fake_mode = FakeTensorMode()
    tracker = ModuleTracker()
    recorder = _Recorder(tracker=tracker)
    try:
        with fake_mode:
            parameters = {n: _fake_like(p).requires_grad_(p.requires_grad) for n, p in model.named_parameters()}
            buffers = {n: _fake_like(b) for n, b in model.named_buffers()}
            fake_inputs = pytree.tree_map_only(
                torch.Tensor, lambda t: _fake_like(t, replica_batch, global_batch), example_inputs
            )
            fake_targets = pytree.tree_map_only(
                torch.Tensor, lambda t: _fake_like(t, replica_batch, global_batch), targets
            )
            trainable = [p for p in parameters.values() if p.requires_grad]
            step_optimizer = make_optimizer(trainable)
            _initialise_optimizer_state(step_optimizer, trainable)
        for tensor in parameters.values():
            recorder.storage_of(tensor, "parameter")
        for tensor in buffers.values():
            recorder.storage_of(tensor, "buffer")
        for leaf in pytree.tree_leaves((fake_inputs, fake_targets)):
            if isinstance(leaf, torch.Tensor):
                recorder.storage_of(leaf, "input")
        for state in step_optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    recorder.storage_of(value, "optimizer_state")
        with fake_mode, tracker, _DispatchRecorder(recorder):
            state = {**parameters, **buffers}
            outputs = _call(model, state, fake_inputs)
            loss_value = loss(outputs, fake_targets) if targets is not None else loss(outputs)
            recorder.phase = "backward"
            loss_value.backward()  # type: ignore[no-untyped-call]
            recorder.phase = "optimizer"
            step_optimizer.step()
    except CaptureError:
        raise
    except Exception as error:
        raise CaptureError(_explain(network, recorder, error)) from None

    parameter_records = []
    for parameter_name, tensor in parameters.items():
        if not tensor.requires_grad:
            continue
        grad_ready = -1
        if tensor.grad is not None:
            grad_storage = recorder.storage_of(tensor.grad, "gradient")
            grad_storage.kind = "gradient"
            grad_ready = grad_storage.last_write_op if grad_storage.first_op >= 0 else -1
            grad_ready = _last_backward_write(recorder, grad_storage, grad_ready)
        parameter_records.append(
            ParameterRecord(
                name=parameter_name, numel=tensor.numel(), dtype=dtype_name(tensor.dtype), grad_ready_op=grad_ready
            )
        )
    tensors = tuple(
        TensorRecord(
            tensor_id=s.tensor_id, nbytes=s.nbytes, dtype=s.dtype, kind=s.kind, first_op=s.first_op, last_op=s.last_op
        )
        for s in recorder.storages.values()
    )
    return Workload(
        name=network,
        batch_size=replica_batch,
        ops=tuple(recorder.ops),
        tensors=tensors,
        parameters=tuple(parameter_records),
        optimizer=type(step_optimizer).__name__,
    )


def _last_backward_write(recorder: _Recorder, storage: _Storage, candidate: int) -> int:
    """The last backward op that wrote a gradient: the op after which it may be all-reduced."""
    if candidate < 0:
        return -1
    index = candidate
    while index >= 0 and recorder.ops[index].phase == "optimizer":
        index -= 1
    while index >= 0 and storage.tensor_id not in recorder.ops[index].output_ids:
        index -= 1
    return index


def _initialise_optimizer_state(optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor]) -> None:
    """Run one step on zero gradients so the moments exist before the recorded step."""
    for parameter in parameters:
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _call(model: torch.nn.Module, state: Mapping[str, torch.Tensor], inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return torch.func.functional_call(model, dict(state), (), inputs)
    if isinstance(inputs, tuple):
        return torch.func.functional_call(model, dict(state), inputs)
    return torch.func.functional_call(model, dict(state), (inputs,))


def _explain(network: str, recorder: _Recorder, error: Exception) -> str:
    """One line that says where the capture stopped and why."""
    message = (str(error).strip().splitlines() or [""])[0]
    kind = type(error).__name__
    hint = ""
    if "DataDependent" in kind or "DynamicOutputShape" in kind or "data-dependent" in message.lower():
        hint = (
            " (a data-dependent op such as nonzero() or .item() cannot run under FakeTensorMode:"
            " use a shape-static variant)"
        )
    last = recorder.ops[-1].name if recorder.ops else "the first op"
    return f"cannot capture {network}: {kind} in the {recorder.phase} phase after {last}: {message}{hint}"


def structural_key(
    model: torch.nn.Module, example_inputs: Any, targets: Any, loss_fn: Any, optimizer: Any, name: str | None
) -> Any:
    """What determines a capture: the model's class and parameter shapes, the input and target
    shapes and dtypes (with their structure), and which loss and optimizer are used."""

    def shapes(tree: Any) -> Any:
        leaves, spec = pytree.tree_flatten(tree)
        return str(spec), tuple(
            (tuple(leaf.shape), dtype_name(leaf.dtype)) if isinstance(leaf, torch.Tensor) else repr(leaf)
            for leaf in leaves
        )

    def identity(function: Any) -> Any:
        if function is None:
            return None
        return (getattr(function, "__module__", None), getattr(function, "__qualname__", repr(function)))

    parameters = tuple((n, tuple(p.shape), dtype_name(p.dtype), p.requires_grad) for n, p in model.named_parameters())
    buffers = tuple((n, tuple(b.shape), dtype_name(b.dtype)) for n, b in model.named_buffers())
    return (
        name,
        type(model).__module__,
        type(model).__qualname__,
        parameters,
        buffers,
        shapes(example_inputs),
        shapes(targets),
        identity(loss_fn),
        identity(optimizer),
    )
