"""Time kernels and whole steps on this machine's CUDA GPU into one calibration file (torch).

Kernels are timed as the shipped measurements were (``dojo_validation/data/gpu_kernels/README.md``):
IEEE FP32 (``allow_tf32`` off for matmuls and cuDNN), ``cudnn.benchmark`` on (cuDNN times its
convolution algorithms on the first call of a shape and keeps the fastest, the choice the model
makes), one forward call per row, warm-up calls,
then 25 calls each between two CUDA events; ``Latency`` is the mean of the fastest 5 (the data's
figure), ``Median`` the median of the 25. Ops and shapes: :mod:`.shapes`. A shape whose tensors
would take more than a third of the free GPU memory is skipped and listed. Whole steps: FP32
training steps (AdamW, foreach) of suite networks at ``full`` size, timed with CUDA events after
warm-up (median of up to 15), as ``dojo_validation.measure`` times them. The file is rewritten after
every op and every step, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dojo_validation.gpu_calibration import document as calibration_file
from dojo_validation.gpu_calibration.shapes import KernelShape, by_op

CALLS = 25
FASTEST = 5
WARMUP = 3
STEP_PLAN: tuple[tuple[str, str, int], ...] = (
    ("cnn", "full", 64),
    ("transformer", "full", 16),
    ("regnety_1_6gf", "full", 32),
)
"""Whole steps measured after the kernels: (network, size, batch), FP32."""
TIMING = (
    f"IEEE FP32, cudnn.benchmark on; {WARMUP} warm-up calls, then {CALLS} calls each between CUDA events; "
    f"Latency = mean of the fastest {FASTEST} (ms), Median = median of the {CALLS} (ms)"
)

Timer = Callable[[Callable[[], object]], list[float]]
"""Seconds of each of ``CALLS`` calls of a function, after warm-up."""
Progress = Callable[[str], None]


class NoGpuError(RuntimeError):
    """No CUDA device is visible to torch: one line for the user."""


def require_cuda() -> torch.device:
    """The first CUDA device, or :class:`NoGpuError` saying why there is none."""
    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + (" (built without CUDA)" if torch.version.cuda is None else "")
        raise NoGpuError(f"no CUDA GPU visible to {build}; run calibrate-gpu measure on the machine with the GPU")
    return torch.device("cuda")


def cuda_timer(run: Callable[[], object]) -> list[float]:
    """Per-call seconds between CUDA events, after warm-up."""
    for _ in range(WARMUP):
        run()
    torch.cuda.synchronize()
    pairs = []
    for _ in range(CALLS):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        begin.record()
        run()
        end.record()
        pairs.append((begin, end))
    torch.cuda.synchronize()
    return [begin.elapsed_time(end) / 1e3 for begin, end in pairs]


def latency_ms(seconds: Sequence[float]) -> tuple[float, float]:
    """(mean of the fastest :data:`FASTEST`, median), in ms."""
    fastest = sorted(seconds)[:FASTEST]
    return sum(fastest) / len(fastest) * 1e3, statistics.median(seconds) * 1e3


def tensor_bytes(op: str, shape: Mapping[str, int]) -> int:
    """FP32 bytes of a kernel's inputs and output (what must fit in the GPU's memory)."""
    if op == "bmm":
        b, m, n, k = (shape[c] for c in ("B", "M", "N", "K"))
        return 4 * b * (m * n + n * k + m * k)
    if op == "linear":
        b, m, n, k = (shape[c] for c in ("B", "M", "N", "K"))
        return 4 * (b * m * (n + k) + n * k + k)
    if op == "conv":
        size = shape["Input_Size"]
        out = (size + 2 * shape["Padding"] - shape["Kernel_Szie"]) // shape["Stride"] + 1
        return 4 * (
            shape["B"] * (shape["Input_Channel"] * size**2 + shape["Output_Channel"] * max(out, 1) ** 2)
            + shape["Input_Channel"] * shape["Output_Channel"] * shape["Kernel_Szie"] ** 2
        )
    return 4 * 3 * shape["B"] * shape["H"]


UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "addu": lambda x: x + 2.0,
    "mulu": lambda x: x * 2.0,
    "divu": lambda x: x / 2.0,
    "powu": lambda x: x**2.0,
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "softmax": lambda x: torch.softmax(x, dim=-1),
}
BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add,
    "mul": torch.mul,
    "div": torch.div,
    "pow": torch.pow,
}


def kernel_call(op: str, shape: Mapping[str, int], device: torch.device) -> Callable[[], object]:
    """One forward call of ``op`` at ``shape`` on ``device``, as the shipped data ran it."""
    torch.manual_seed(0)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, device=device)  # made on the GPU: a CPU copy of a 10 GB operand takes seconds

    if op in ("bmm", "linear"):
        b, m, n, k = (shape[c] for c in ("B", "M", "N", "K"))
        if op == "bmm":
            left, right = randn(b, m, n), randn(b, n, k)
            return lambda: torch.bmm(left, right)
        layer, x = torch.nn.Linear(n, k).to(device), randn(b, m, n)
        return lambda: layer(x)
    if op == "conv":
        conv = torch.nn.Conv2d(
            shape["Input_Channel"],
            shape["Output_Channel"],
            shape["Kernel_Szie"],
            stride=shape["Stride"],
            padding=shape["Padding"],
            bias=False,
        ).to(device)
        image = randn(shape["B"], shape["Input_Channel"], shape["Input_Size"], shape["Input_Size"])
        return lambda: conv(image)
    x = randn(shape["B"], shape["H"])
    if op == "ln":
        norm = torch.nn.LayerNorm(shape["H"]).to(device)
        return lambda: norm(x)
    if op in BINARY:
        y, binary = randn(shape["B"], shape["H"]).abs() + 0.5, BINARY[op]
        return lambda: binary(x, y)
    unary = UNARY[op]
    return lambda: unary(x)


def measure_kernels(
    plan: Sequence[KernelShape],
    document: dict[str, Any],
    *,
    device: torch.device,
    timer: Timer,
    memory_limit_bytes: float,
    deadline: float,
    save: Callable[[], None],
    progress: Progress,
) -> None:
    """Time every kernel of ``plan`` into ``document['kernels']`` (skips into ``['skipped']``)."""
    name = str(document["device"].get("Device", device.type))
    for op, items in by_op(list(plan)):
        started, timed = time.perf_counter(), 0
        for item in items:
            shape = item.columns()
            if time.perf_counter() > deadline:
                document["skipped"].append({"OPName": op, **shape, "reason": "time budget spent"})
                continue
            if tensor_bytes(op, shape) > memory_limit_bytes:
                document["skipped"].append({"OPName": op, **shape, "reason": "tensors exceed a third of free memory"})
                continue
            try:
                latency, median = latency_ms(timer(kernel_call(op, shape, device)))
            except RuntimeError as error:  # an out-of-memory or unsupported shape costs one row, not the run
                document["skipped"].append({"OPName": op, **shape, "reason": str(error).strip().splitlines()[0][:200]})
                continue
            document["kernels"].append(calibration_file.kernel_record(op, shape, item.split, name, latency, median))
            timed += 1
        save()
        progress(f"{op}: {timed} of {len(items)} shapes timed ({time.perf_counter() - started:.1f} s)")


def measure_steps(
    document: dict[str, Any],
    *,
    device: torch.device,
    deadline: float,
    save: Callable[[], None],
    progress: Progress,
    plan: Sequence[tuple[str, str, int]] = STEP_PLAN,
) -> None:
    """FP32 training steps of :data:`STEP_PLAN` into ``document['steps']``."""
    from dojo_validation import measure

    networks = measure.all_networks()
    for network, size, batch in plan:
        if time.perf_counter() > deadline:
            document["skipped"].append(
                {"network": network, "size": size, "batch_size": batch, "reason": "time budget spent"}
            )
            continue
        try:
            step = measure.prepare(networks[network], size, batch, str(device))
            times = measure.time_steps(
                step, warmup=3, repeats=15, budget_s=min(20.0, max(1.0, deadline - time.perf_counter()))
            )
            del step
        except (RuntimeError, KeyError) as error:
            reason = traceback.format_exception_only(type(error), error)[-1].strip()[:200]
            document["skipped"].append({"network": network, "size": size, "batch_size": batch, "reason": reason})
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        document["steps"].append(
            {
                "network": network,
                "size": size,
                "batch_size": batch,
                "precision": "fp32",
                "step_times_s": times,
                "median_step_s": statistics.median(times),
            }
        )
        save()
        progress(f"step {network} {size} b{batch}: median {statistics.median(times) * 1e3:.2f} ms")


TRANSFORMER_STEP = ("bert", 8, 512)
"""A Hugging Face step, as the step labels measure one (``dojo_validation/steps``): BERT-base
pre-training forward and backward, no optimizer, eager attention, (batch, sequence length)."""


def measure_transformer_step(document: dict[str, Any], *, device: torch.device, progress: Progress) -> None:
    """:data:`TRANSFORMER_STEP` into ``document['steps']``, if ``transformers`` is installed."""
    from dojo_validation.steps.build import ValidationSetupError, build_model, measured_loss

    model, batch, seqlen = TRANSFORMER_STEP
    try:
        network = build_model(model, "train").to_empty(device=device)
    except ValidationSetupError as error:
        document["skipped"].append({"network": model, "reason": str(error)})
        return
    input_ids = torch.ones(batch, seqlen, dtype=torch.int64, device=device)

    def step() -> None:
        network.zero_grad(set_to_none=True)
        measured_loss(network(input_ids), input_ids).backward()

    times = cuda_timer(step) if device.type == "cuda" else [0.0]
    document["steps"].append(
        {
            "network": model,
            "size": "transformers",
            "batch_size": batch,
            "seqlen": seqlen,
            "precision": "fp32",
            "mode": "forward_backward",
            "step_times_s": times,
            "median_step_s": statistics.median(times),
        }
    )
    progress(f"step {model} b{batch} s{seqlen} (forward + backward): median {statistics.median(times) * 1e3:.2f} ms")


def device_record(device: torch.device) -> dict[str, Any]:
    """The GPU's properties in the shipped device records' names, with versions."""
    properties = torch.cuda.get_device_properties(device)
    return {
        "Device": properties.name,
        "Num_Sm": properties.multi_processor_count,
        "L2Cache": getattr(properties, "L2_cache_size", 0) / 2**20,
        "Dev_Mem": properties.total_memory / 1e9,
        "capability": f"{properties.major}.{properties.minor}",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def run(
    out: Path,
    plan: Sequence[KernelShape],
    *,
    budget_s: float,
    steps: bool,
    command: str,
    progress: Progress,
    device: torch.device | None = None,
    timer: Timer = cuda_timer,
    record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure ``plan`` (then the steps) within ``budget_s`` seconds and write ``out``; the document."""
    target = device if device is not None else require_cuda()
    started = time.perf_counter()
    document = calibration_file.new_document(
        device=record if record is not None else device_record(target),
        command=command,
        timing=TIMING,
        measured_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    if target.type == "cuda":
        free, _ = torch.cuda.mem_get_info(target)
        limit = free / 3
    else:
        limit = float(1 << 30)
    progress(f"measuring {len(plan)} kernels on {document['device'].get('Device')} (budget {budget_s:.0f} s)")
    kernel_deadline = started + budget_s * (0.75 if steps else 1.0)

    def save() -> None:
        calibration_file.write(out, document)

    measure_kernels(
        plan,
        document,
        device=target,
        timer=timer,
        memory_limit_bytes=limit,
        deadline=kernel_deadline,
        save=save,
        progress=progress,
    )
    if steps:
        measure_steps(document, device=target, deadline=started + budget_s, save=save, progress=progress)
        if time.perf_counter() < started + budget_s:
            measure_transformer_step(document, device=target, progress=progress)
    document["total_wall_s"] = time.perf_counter() - started
    save()
    progress(
        f"wrote {out}: {len(document['kernels'])} kernels, {len(document['steps'])} steps, "
        f"{len(document['skipped'])} skipped"
    )
    return document
