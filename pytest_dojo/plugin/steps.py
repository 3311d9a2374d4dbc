"""A training step to simulate, whose workload is produced at whatever per-replica batch a plan asks for.

:class:`CapturedStep` is the plugin's :class:`hwmodel.WorkloadSource`: the hardware model asks it
for the workload of one replica at ``batch_size`` samples. It answers, in this order:

1. from the workloads it already holds;
2. from the persistent cache (:mod:`pytest_dojo.plugin.capture_cache`);
3. by derivation (:mod:`pytest_dojo.capture.derive`): a step's numbers are exact affine functions
   of the batch, so two captures at other sizes (the *anchors*) give every size in their fit's
   domain, equal field by field to a fresh capture;
4. by capturing the step at that size (torch is imported only then), which adds an anchor and is
   written to the persistent cache.

So the first two sizes asked for are captured (or loaded), and later ones derived, unless the
step's ops depend on the batch (every fit refused) or the size lies outside every fit's domain
(batch 1, where ATen's kernels choose differently, from two anchors above it): those are captured.
A caller that knows which sizes it will ask for says so first (:meth:`CapturedStep.prepare`, as
the plan search does): the first capture then takes the smallest of them and the next size
together (:func:`pytest_dojo.capture.train_step.begin_train_steps`, which records the optimizer
step once for both, or the second in a forked child: the first is answered while the child still
records the second, which is collected the next time a size is not held), and every other size is
derived from that pair when its fit covers it.
Derived workloads are not written to the persistent cache: a later run loads the anchors and
derives again, which costs less than storing every size a plan search visits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

if TYPE_CHECKING:
    from hwmodel import Workload
    from pytest_dojo.capture.derive import BatchAffineStep
    from pytest_dojo.plugin.capture_cache import CaptureCache


class StepArguments(TypedDict, total=False):
    """What defines a training step besides the model and its inputs: the keyword arguments that
    ``dojo.train_step``, ``dojo.capture`` and ``dojo_wallclock.train_step`` share.

    ``targets`` go to ``loss_fn(outputs, targets)`` (default: the sum of the outputs' means);
    ``optimizer`` is a factory taking the parameters (default: AdamW); ``name`` names the network in
    reports (default: the model's class name).
    """

    targets: Any
    loss_fn: Callable[..., Any] | None
    optimizer: Callable[..., Any] | None
    name: str | None


def check_step_arguments(where: str, arguments: Mapping[str, Any]) -> None:
    """A keyword that is not a :class:`StepArguments` key raises ``TypeError``, as a misspelt
    keyword argument does."""
    unknown = sorted(set(arguments) - set(StepArguments.__annotations__))
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")


class CapturedStep:
    """The step of ``model`` on one global batch of ``example_inputs``, at any per-replica batch.

    ``intra_op_threads``: torch's thread count during the capture (ATen's CPU kernel choices, and
    so the recorded GEMMs, depend on it); None keeps the current one. ``cache`` and ``key``: the
    persistent cache and this step's key in it (:func:`step_key`; computed when only ``cache`` is
    given). Counters for benchmarks and the summary: ``fresh_captures`` (batches captured, in
    ``capture_calls`` calls), ``derived_batches``,
    ``cache_hits`` (entries loaded from the persistent cache) and ``capture_s`` (seconds spent
    producing workloads in any of these ways).
    """

    def __init__(
        self,
        model: Any,
        example_inputs: Any,
        *,
        global_batch: int | None = None,
        intra_op_threads: int | None = None,
        cache: CaptureCache | None = None,
        key: str | None = None,
        **step: Unpack[StepArguments],
    ) -> None:
        from pytest_dojo import capture

        check_step_arguments("CapturedStep", step)
        self.model = model
        self.example_inputs = example_inputs
        self.targets = step.get("targets")
        self.loss_fn = step.get("loss_fn")
        self.optimizer = step.get("optimizer")
        self.name = step.get("name") or type(model).__name__
        self.intra_op_threads = intra_op_threads
        self._global_batch = global_batch or capture.leading_batch(example_inputs)
        self._cache = cache
        self._key = key
        self._workloads: dict[int, Workload] = {}
        self._anchors: dict[int, Workload] = {}
        self._fits: dict[tuple[int, int], BatchAffineStep | None] = {}
        self._needed: tuple[int, ...] = ()
        self._remaining: Callable[[], tuple[Workload, ...]] | None = None
        self.fresh_captures = 0
        self.capture_calls = 0
        self.derived_batches = 0
        self.cache_hits = 0
        self.capture_s = 0.0

    @property
    def global_batch(self) -> int:
        """Samples in one global step."""
        return self._global_batch

    @property
    def key(self) -> str:
        """This step's key in the persistent cache (:func:`step_key`)."""
        if self._key is None:
            self._key = step_key(
                self.model,
                self.example_inputs,
                intra_op_threads=self.intra_op_threads,
                targets=self.targets,
                loss_fn=self.loss_fn,
                optimizer=self.optimizer,
                name=self.name,
            )
        return self._key

    def prepare(self, batch_sizes: Iterable[int]) -> None:
        """Note the per-replica batches about to be asked for, so that a capture they need takes two
        sizes in one call (:meth:`_capture_sizes`); nothing is captured yet."""
        self._needed = tuple(sorted({int(size) for size in batch_sizes if size >= 1}))

    def workload(self, batch_size: int) -> Workload:
        """The step of one replica at ``batch_size`` samples (produced on first use)."""
        held = self._workloads.get(batch_size) or self._anchors.get(batch_size)
        if held is not None:
            return held
        start = time.perf_counter()
        try:
            self._settle()
            workload = (
                self._anchors.get(batch_size)
                or self._stored(batch_size)
                or self._derived(batch_size)
                or self._captured(batch_size)
            )
        finally:
            self.capture_s += time.perf_counter() - start
        self._workloads[batch_size] = workload
        return workload

    def _stored(self, batch_size: int) -> Workload | None:
        """The persistent cache's entry at ``batch_size``, kept as an anchor for derivations."""
        if self._cache is None:
            return None
        workload = self._cache.load(self.key, batch_size)
        if workload is not None:
            self.cache_hits += 1
            self._anchors[batch_size] = workload
        return workload

    def _derived(self, batch_size: int) -> Workload | None:
        """The workload derived from a fit of two anchors that covers ``batch_size``; None where no
        fit does (fewer than two anchors, ops that depend on the batch, a batch outside every fit's
        domain). Anchors stored in the persistent cache are loaded when those held do not suffice."""
        fit = self._covering_fit(batch_size)
        if fit is None and self._cache is not None:
            unloaded = [size for size in self._cache.batch_sizes(self.key) if size not in self._anchors]
            loaded = [self._stored(size) for size in unloaded]
            if any(workload is not None for workload in loaded):
                fit = self._covering_fit(batch_size)
        if fit is None:
            return None
        self.derived_batches += 1
        return fit.at(batch_size)

    def _covering_fit(self, batch_size: int) -> BatchAffineStep | None:
        """The first fit of two anchors (widest first) whose domain holds ``batch_size``."""
        from pytest_dojo.capture.derive import DerivationError, fit_batch_affine

        sizes = sorted(self._anchors)
        pairs = sorted(
            ((low, high) for index, low in enumerate(sizes) for high in sizes[index + 1 :]),
            key=lambda pair: (pair[0] - pair[1], pair),
        )
        for pair in pairs:
            if pair not in self._fits:
                try:
                    self._fits[pair] = fit_batch_affine(self._anchors[pair[0]], self._anchors[pair[1]])
                except DerivationError:
                    self._fits[pair] = None
            fit = self._fits[pair]
            if fit is not None and fit.covers(batch_size):
                return fit
        return None

    def _captured(self, batch_size: int) -> Workload:
        """The step captured afresh at ``batch_size`` (with a second size where :meth:`_capture_sizes`
        picks a pair), each capture an anchor stored in the persistent cache."""
        sizes = self._capture_sizes(batch_size)
        self._capture(sizes)
        if batch_size in self._anchors:
            return self._anchors[batch_size]
        self._settle()
        if batch_size in self._anchors:
            return self._anchors[batch_size]
        derived = self._derived(batch_size)
        if derived is not None:
            return derived
        self._capture((batch_size,))
        return self._anchors[batch_size]

    def _capture_sizes(self, batch_size: int) -> tuple[int, ...]:
        """What to capture when ``batch_size`` is needed: without :meth:`prepare`d sizes, or when no
        other prepared size remains to be produced, ``batch_size`` alone; otherwise the smallest
        prepared size no anchor or fit gives yet, ``b``, and ``b + 1``: the pair whose fit reaches
        furthest on its side of the kernel-choice batches
        (:data:`pytest_dojo.capture.derive.KERNEL_CHOICE_BATCHES`)."""
        pending = {
            size
            for size in (*self._needed, batch_size)
            if size not in self._anchors and size not in self._workloads and self._covering_fit(size) is None
        }
        if len(pending) < 2:
            return (batch_size,)
        low = min(pending)
        return (low, low + 1)

    def _capture(self, sizes: tuple[int, ...]) -> None:
        """Capture ``sizes``; the first is an anchor on return, those a forked child still records
        become anchors when :meth:`_settle` collects them (the next time a workload is not held)."""
        from pytest_dojo.capture.train_step import begin_train_steps

        workloads, rest = begin_train_steps(
            self.model,
            self.example_inputs,
            batch_sizes=sizes,
            targets=self.targets,
            loss_fn=self.loss_fn,
            optimizer=self.optimizer,
            name=self.name,
            intra_op_threads=self.intra_op_threads,
        )
        self.capture_calls += 1
        self._add_anchors(workloads)
        if len(workloads) < len(sizes):
            self._remaining = rest
        else:
            rest()

    def _settle(self) -> None:
        """Wait for the sizes a forked child records (:meth:`_capture`) and make them anchors."""
        if self._remaining is not None:
            rest, self._remaining = self._remaining, None
            self._add_anchors(rest())

    def _add_anchors(self, workloads: Iterable[Workload]) -> None:
        """Fresh captures, each an anchor stored in the persistent cache."""
        for workload in workloads:
            self.fresh_captures += 1
            self._anchors[workload.batch_size] = workload
            if self._cache is not None:
                self._cache.store(self.key, workload)


def step_key(
    model: Any, example_inputs: Any, *, intra_op_threads: int | None = None, **step: Unpack[StepArguments]
) -> str:
    """The key of a step in the capture caches: what can change its captured ops
    (:func:`pytest_dojo.capture.keys.capture_key`)."""
    from pytest_dojo import capture

    return capture.capture_key(
        model,
        example_inputs,
        targets=step.get("targets"),
        loss_fn=step.get("loss_fn"),
        optimizer=step.get("optimizer"),
        name=step.get("name") or type(model).__name__,
        intra_op_threads=intra_op_threads,
    )


@dataclass(frozen=True, kw_only=True)
class CaptureCounts:
    """Where a run's workloads came from, summed over its steps (and, under xdist, its workers)."""

    fresh: int = 0
    derived: int = 0
    cached: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, steps: Iterable[CapturedStep]) -> CaptureCounts:
        steps = list(steps)
        return cls(
            fresh=sum(step.fresh_captures for step in steps),
            derived=sum(step.derived_batches for step in steps),
            cached=sum(step.cache_hits for step in steps),
            seconds=sum(step.capture_s for step in steps),
        )

    def __add__(self, other: CaptureCounts) -> CaptureCounts:
        return CaptureCounts(
            fresh=self.fresh + other.fresh,
            derived=self.derived + other.derived,
            cached=self.cached + other.cached,
            seconds=self.seconds + other.seconds,
        )

    def to_dict(self) -> dict[str, float]:
        return {"fresh": self.fresh, "derived": self.derived, "cached": self.cached, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaptureCounts:
        return cls(
            fresh=int(data.get("fresh", 0)),
            derived=int(data.get("derived", 0)),
            cached=int(data.get("cached", 0)),
            seconds=float(data.get("seconds", 0.0)),
        )

    def line(self, cache_directory: str | None) -> str:
        """The summary's line: ``dojo workloads: 2 captured, 5 derived, 1 loaded from <dir> (3.1 s)``."""
        where = f"loaded from {cache_directory}" if cache_directory else "loaded (no persistent cache)"
        return (
            f"dojo workloads: {self.fresh} captured, {self.derived} derived, {self.cached} {where}"
            f" ({self.seconds:.1f} s)"
        )
