"""The ``host`` preset's rates for this run: this machine's, measured once and kept in pytest's cache.

``--dojo-host-calibration=measured`` times this machine with
:func:`pytest_dojo.hostbench.measure_host` the first time a run simulates the ``host`` preset (about
20 s on one core, with progress lines on stderr) and stores the document in pytest's cache under a
key of the CPU model, core count, torch version, the measuring thread count and the benchmark's
version (:func:`pytest_dojo.hostbench.machine_key`); later runs on the same machine read it, so
their reports are identical. ``--cache-clear`` measures again. Under pytest-xdist the controller
resolves the rates before any worker starts and hands its document to every worker
(``workerinput``), so workers never measure side by side (which would disturb each other's timings).
``committed`` (the default, :data:`DEFAULT_MODE`) uses the calibration shipped with the package
(``hwmodel/spec/host_calibration.json`` or ``$DOJO_HOST_CALIBRATION``): what tests that pin host
figures use. Without a cache directory (``-p no:cacheprovider``) a measurement could not be kept,
so every run (and every xdist worker) would re-measure and report different figures: the committed
calibration is used then, and the summary says so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from hwmodel import System
    from hwmodel.spec.host import HostCalibration

MODES = ("measured", "committed")
DEFAULT_MODE = "committed"
"""The mode a run uses unless ``--dojo-host-calibration`` or the ini key says otherwise."""
CACHE_KEY = "dojo/host-rates/{key}"
KEPT = "this machine, measured on first use, kept in pytest's cache"
WORKER_INPUT_KEY = "dojo_host_rates"


@dataclass(frozen=True, kw_only=True)
class HostRates:
    """The calibration a run's ``host`` chip uses, and where it came from (``measured`` or ``committed``)."""

    calibration: HostCalibration
    origin: str
    note: str
    document: dict[str, Any]
    """The calibration document, as read or measured (what an xdist worker is handed)."""

    def to_dict(self) -> dict[str, Any]:
        """The results file's ``host_rates`` field."""
        return {"origin": self.origin, "note": self.note, "rates": self.calibration.describe()}

    def for_worker(self) -> dict[str, Any]:
        """What an xdist worker is handed (:func:`from_controller` reads it)."""
        return {"origin": self.origin, "note": self.note, "document": self.document}

    def line(self) -> str:
        """The summary header's line."""
        return f"host rates: {self.origin} ({self.note}): {self.calibration.describe()}"


def _stderr(line: str) -> None:
    print(f"dojo: {line}", file=sys.stderr, flush=True)


def committed(note: str) -> HostRates:
    import json

    from hwmodel.spec.host import calibration_path, load_calibration

    path = calibration_path()
    document = json.loads(path.read_text(encoding="utf-8"))
    return HostRates(
        calibration=load_calibration(path), origin="committed", note=f"{path.name}; {note}", document=document
    )


def from_controller(text: str) -> HostRates:
    """The rates an xdist controller resolved and handed over (:meth:`HostRates.for_worker`, as JSON)."""
    import json

    from hwmodel.spec.host import calibration_from_dict

    handed = json.loads(text)
    document = dict(handed["document"])
    return HostRates(
        calibration=calibration_from_dict(document),
        origin=str(handed["origin"]),
        note=str(handed["note"]),
        document=document,
    )


def resolve(
    cache: pytest.Cache | None,
    mode: str,
    progress: Callable[[str], None] = _stderr,
    given: str | None = None,
) -> HostRates:
    """The rates for ``mode``: the committed calibration, or this machine's (cached, else measured
    now); ``given``: the document an xdist controller resolved, used as it is."""
    if given is not None:
        return from_controller(given)
    if mode == "committed":
        return committed("--dojo-host-calibration=committed")
    if cache is None:
        return committed("no cache directory (-p no:cacheprovider), so nothing measured")
    from hwmodel import HwModelError
    from hwmodel.spec.host import calibration_from_dict
    from pytest_dojo import hostbench

    key = CACHE_KEY.format(key=hostbench.machine_key())
    stored = cache.get(key, None)
    if isinstance(stored, dict):
        try:
            return HostRates(calibration=calibration_from_dict(stored), origin="measured", note=KEPT, document=stored)
        except HwModelError:
            pass  # an entry that cannot be read is measured again
    progress("measuring this machine for the host preset (once per machine; --cache-clear re-measures) ...")
    document = hostbench.measure_host(
        gemm_repeats=2, progress=lambda line: progress(f"  {line.strip()}"), command="pytest --dojo-chip=host"
    )
    calibration = calibration_from_dict(document)
    cache.set(key, document)
    progress(f"host rates measured and cached: {calibration.describe()}")
    return HostRates(calibration=calibration, origin="measured", note=KEPT, document=document)


def apply(system: System, rates: HostRates) -> System:
    """``system`` with its (measured-preset) chip and fabric built on ``rates``."""
    from dataclasses import replace

    from hwmodel.spec.host import host_fabric, with_calibration

    return replace(system, chip=with_calibration(system.chip, rates.calibration), fabric=host_fabric(rates.calibration))
