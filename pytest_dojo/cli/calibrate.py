"""``pytest-dojo calibrate``: fit the host's per-op-class efficiencies, the ``host`` row of efficiency.json.

    pytest-dojo calibrate                 # fit on the newest committed host measurement
    pytest-dojo calibrate --measure       # re-measure the rates and the networks first
    pytest-dojo calibrate --dry-run       # print the row, write nothing

Steps: (1) with ``--measure``, the host rates (``python -m pytest_dojo.hostbench``) and every
network's per-op times (``pytest-dojo validate host --measure``) are measured again; (2) each
measured network is captured (FakeTensorMode) and its ops paired with the measured ones; (3)
:func:`hwmodel.ops.calibration.fit_efficiency` fits one (compute, memory) efficiency pair per op class
on all the networks together; (4) the row is written with its provenance: what, when, on which
machine, by which command. Held-out errors: ``pytest-dojo validate host``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_dojo.cli.common import EXIT_OK, add_command, project_root


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "calibrate",
        run,
        summary="fit the host preset's per-op-class efficiencies on measured networks",
        doc=__doc__,
    )
    parser.add_argument("--measure", action="store_true", help="re-measure host rates and networks first")
    parser.add_argument("--data", type=Path, default=None, help="measured JSON (default: newest committed)")
    parser.add_argument("--dry-run", action="store_true", help="print the row instead of writing it")


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def run(arguments: argparse.Namespace) -> int:
    root = project_root()
    if arguments.measure:
        subprocess.run([sys.executable, "-m", "pytest_dojo.hostbench"], check=True, cwd=root)
        subprocess.run([sys.executable, "-m", "pytest_dojo.cli", "validate", "host", "--measure"], check=True, cwd=root)
    from dojo_validation import host
    from hwmodel.ops.calibration import efficiency_row, write_row

    path = arguments.data or host.latest_measured()
    document = host.load_measured(path)
    print(f"fitting on {_shown(path, root)}", flush=True)
    fit = host.fit(host.samples(document), calibration="host: fitted on every validation network, per-op CPU times")
    row = efficiency_row(fit, _provenance(document, _shown(path, root), arguments.measure))
    for item in fit.classes:
        print(
            f"{item.op_class:<14} compute {item.compute:.3f}  memory {item.memory:.3f}  "
            f"overhead x{item.overhead:.2f}  ({item.paired_ops} ops)"
        )
    if arguments.dry_run:
        print(json.dumps(row, indent=2))
        return EXIT_OK
    target = Path(str(resources.files("hwmodel.ops").joinpath("efficiency.json")))
    write_row(target, "host", row)
    print(f"wrote the host row of {target}")
    return EXIT_OK


def _provenance(document: dict[str, Any], data: str, measured: bool) -> dict[str, Any]:
    """What the row was fitted on, when, where and by which command."""
    from hwmodel.spec.host import load_calibration

    environment = document["environment"]
    # Measurements from before op_steps was recorded took the median of 3 steps per op.
    op_steps = "/".join(sorted({str(run.get("op_steps", 3)) for run in document["runs"]}))
    return {
        "what": "per-op thread-CPU times of FP32 training steps (dojo_validation.measure.OpTimer), median of "
        f"{op_steps} steps, against captured FLOPs and bytes on the host preset",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "measured": environment.get("date_utc"),
        "data": data,
        "machine": f"{environment.get('processor')}, {environment.get('cpu_count')} cores, "
        f"{environment.get('torch_threads')} thread, torch {environment.get('torch')}",
        "host_rates": load_calibration().describe(),
        "command": "pytest-dojo calibrate" + (" --measure" if measured else ""),
    }
