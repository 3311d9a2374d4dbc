"""Op-class figures of the host benchmark at DRAM size, to compare two machines (or one machine on two days).

Recorded under ``op_classes`` in the calibration, not read by the model: a 3x3 convolution's
FLOP/s, an elementwise add in place and into a freshly allocated tensor (bytes read plus written
per second: a machine under memory pressure pays the page faults of every fresh tensor), and a
sum's bytes read per second.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from pytest_dojo.bench_timing import timed


def conv_flops_per_s(*, device: str = "cpu", repeats: int = 5) -> float:
    """FLOP/s of a 3x3 convolution, 64 to 64 channels, 4 x 32 x 32 inputs (2 FLOPs per multiply-add)."""
    target = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 32, 32, generator=generator).to(target)
    weight = torch.randn(64, 64, 3, 3, generator=generator).to(target)
    seconds = timed(lambda: torch.nn.functional.conv2d(x, weight, padding=1), target, repeats=repeats, inner=3)
    return 2.0 * 4 * 64 * 64 * 9 * 32 * 32 / seconds


def elementwise_bytes_per_s(
    *, fresh: bool, nbytes: int = 1 << 28, device: str = "cpu", repeats: int = 5, inner: int = 2
) -> float:
    """Bytes read plus written per second by ``x + 1`` on ``nbytes`` of FP32: in place (``add_``) or
    into a tensor allocated by each call (what most ops of a training step do)."""
    target = torch.device(device)
    x = torch.ones(nbytes // 4, device=target)
    run = (lambda: torch.add(x, 1.0)) if fresh else (lambda: x.add_(1.0))
    return 2.0 * nbytes / timed(run, target, repeats=repeats, inner=inner)


def reduction_bytes_per_s(*, nbytes: int = 1 << 28, device: str = "cpu", repeats: int = 5) -> float:
    """Bytes read per second by ``sum`` over ``nbytes`` of FP32."""
    target = torch.device(device)
    x = torch.ones(nbytes // 4, device=target)
    return nbytes / timed(x.sum, target, repeats=repeats, inner=2)


def op_class_rates(say: Callable[[str], None]) -> dict[str, float]:
    """The op-class figures of the calibration (see the module docstring), each announced by ``say``."""
    probes: tuple[tuple[str, str, float, Callable[[], float]], ...] = (
        ("conv_flops_per_s", "convolution 3x3", 1e9, conv_flops_per_s),
        ("elementwise_inplace_bytes_per_s", "elementwise in place", 1e9, partial(elementwise_bytes_per_s, fresh=False)),
        (
            "elementwise_fresh_bytes_per_s",
            "elementwise, fresh out",
            1e9,
            partial(elementwise_bytes_per_s, fresh=True, repeats=3, inner=1),
        ),
        ("reduction_bytes_per_s", "reduction (sum)", 1e9, reduction_bytes_per_s),
    )
    rates = {}
    for key, label, scale, probe in probes:
        rates[key] = probe()
        unit = "GFLOP/s" if "flops" in key else "GB/s"
        say(f"{label}: {rates[key] / scale:.1f} {unit}")
    return rates
