"""Fit the host's per-op-class efficiencies and store them as the ``host`` row of efficiency.json.

    python scripts/calibrate.py                 # fit on the newest committed host measurement
    python scripts/calibrate.py --measure       # re-measure the rates and the networks first
    python scripts/calibrate.py --dry-run       # print the row, write nothing

Steps: (1) with ``--measure``, the host rates (``python -m pytest_dojo.hostbench``) and every
network's per-op times (``validation/validate_host.py --measure``) are measured again; (2) each
measured network is captured (FakeTensorMode) and its ops paired with the measured ones; (3)
:func:`hwmodel.ops.calibration.fit_efficiency` fits one (compute, memory) efficiency pair per op class
on all the networks together; (4) the row is written with its provenance: what, when, on which
machine, by which command. Held-out errors: ``python validation/validate_host.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="re-measure host rates and networks first")
    parser.add_argument("--data", type=Path, default=None, help="measured JSON (default: newest committed)")
    parser.add_argument("--dry-run", action="store_true", help="print the row instead of writing it")
    args = parser.parse_args(argv)
    if args.measure:
        subprocess.run([sys.executable, "-m", "pytest_dojo.hostbench"], check=True, cwd=ROOT)
        subprocess.run(
            [sys.executable, str(ROOT / "validation" / "validate_host.py"), "--measure"], check=True, cwd=ROOT
        )
    from hwmodel.ops.calibration import efficiency_row, write_row
    from hwmodel.spec.host import load_calibration
    from validation import host

    path = args.data or host.latest_measured()
    document = host.load_measured(path)
    print(f"fitting on {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
    samples = host.samples(document)
    fit = host.fit(samples, calibration="host: fitted on every validation network, per-op CPU times")
    environment = document["environment"]
    # Measurements from before op_steps was recorded took the median of 3 steps per op.
    op_steps = "/".join(sorted({str(run.get("op_steps", 3)) for run in document["runs"]}))
    rates = load_calibration()
    provenance = {
        "what": "per-op thread-CPU times of FP32 training steps (validation.measure.OpTimer), median of "
        f"{op_steps} steps, against captured FLOPs and bytes on the host preset",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "measured": environment.get("date_utc"),
        "data": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "machine": f"{environment.get('processor')}, {environment.get('cpu_count')} cores, "
        f"{environment.get('torch_threads')} thread, torch {environment.get('torch')}",
        "host_rates": rates.describe(),
        "command": "python scripts/calibrate.py" + (" --measure" if args.measure else ""),
    }
    row = efficiency_row(fit, provenance)
    for item in fit.classes:
        print(
            f"{item.op_class:<14} compute {item.compute:.3f}  memory {item.memory:.3f}  "
            f"overhead x{item.overhead:.2f}  ({item.paired_ops} ops)"
        )
    if args.dry_run:
        print(json.dumps(row, indent=2))
        return 0
    target = Path(str(resources.files("hwmodel.ops").joinpath("efficiency.json")))
    write_row(target, "host", row)
    print(f"wrote the host row of {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
