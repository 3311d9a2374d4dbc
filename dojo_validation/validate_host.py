"""Validate the ``host`` preset: measured CPU training steps against predictions, leave-one-out.

    python -m dojo_validation.validate_host --measure     # measure now (minutes), save, then compare
    python -m dojo_validation.validate_host               # compare against the newest committed data
    pytest-dojo validate host --now mlp,cnn --runs 3      # steps now: committed rates vs rates now

For every suite network at ``small`` size and the standard shapes (MLP, CNN, transformer encoder),
the real step is timed on this CPU (median of repeated steps, one intra-op thread unless
``--threads``) together with its per-op times. Each network is then predicted by the host preset
(``pytest_dojo.capture.capture_train_step`` + ``hwmodel.step.simulate``, 1x1, FP32) with efficiencies
fitted on every *other* network (leave-one-out), and the table reports each error, the median
absolute error and the worst (targets: 10% and 25%). The in-sample column uses the fit on all
networks: the row that ``pytest-dojo calibrate`` writes into ``efficiency.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from dojo_validation import host

MEDIAN_TARGET = 0.10
WORST_TARGET = 0.25


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="measure now and save under dojo_validation/data")
    parser.add_argument("--data", type=Path, default=None, help="measured JSON (default: newest committed)")
    parser.add_argument("--networks", default=",".join(host.HOST_BATCHES), help="comma-separated networks")
    parser.add_argument("--threads", type=int, default=host.DEFAULT_THREADS, help="intra-op threads (default: 1)")
    parser.add_argument(
        "--now",
        default="",
        metavar="NETWORKS",
        help="time these networks now and predict them held out, on the committed rates and on rates measured now",
    )
    parser.add_argument("--runs", type=int, default=3, metavar="N", help="with --now: repetitions (default: 3)")
    args = parser.parse_args(argv)
    if args.now:
        return _now(parser, args.now, args.runs)
    if args.measure:
        names = [name for name in args.networks.split(",") if name]
        unknown = sorted(set(names) - set(host.HOST_BATCHES))
        if unknown:
            parser.error(f"unknown networks {unknown}; known: {', '.join(host.HOST_BATCHES)}")
        document = host.measure_all(names, threads=args.threads, progress=lambda line: print(line, flush=True))
        host.DATA_DIR.mkdir(parents=True, exist_ok=True)
        path = host.DATA_DIR / f"host_measured_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    else:
        path = args.data or host.latest_measured()
        document = host.load_measured(path)
    print(f"data: {path}")
    print(
        f"machine: {document['environment'].get('processor')}, threads {document['environment'].get('torch_threads')}, "
        f"measured {document['environment'].get('date_utc')}"
    )
    all_samples = host.samples(document)
    in_sample = host.fit(all_samples, calibration="all networks").table
    held_out = host.leave_one_out(document)
    header = (
        f"{'network':<16} {'batch':>5} {'measured ms':>12} {'fit-all ms':>11} {'err':>7} {'held-out ms':>12} {'err':>7}"
    )
    print(header)
    print("-" * len(header))
    for sample, comparison in zip(all_samples, held_out, strict=True):
        fitted = host.predict_s(sample.workload, in_sample)
        fitted_error = (fitted - comparison.measured_s) / comparison.measured_s
        print(
            f"{comparison.network:<16} {comparison.batch_size:>5} {comparison.measured_s * 1e3:>12.2f} "
            f"{fitted * 1e3:>11.2f} {fitted_error:>+7.1%} "
            f"{comparison.predicted_s * 1e3:>12.2f} {comparison.error:>+7.1%}"
        )
    median = host.median_absolute_error(held_out)
    worst = max(abs(item.error) for item in held_out)
    print(
        f"held-out (leave-one-out): median |error| {median:.1%} (target <= {MEDIAN_TARGET:.0%}), "
        f"worst {worst:.1%} (target <= {WORST_TARGET:.0%})"
    )
    return 0


def _now(parser: argparse.ArgumentParser, networks: str, runs: int) -> int:
    """``--now``: the named networks timed now, predicted on the committed and on today's rates."""
    names = [name for name in networks.split(",") if name]
    unknown = sorted(set(names) - set(host.HOST_BATCHES))
    if unknown:
        parser.error(f"unknown networks {unknown}; known: {', '.join(host.HOST_BATCHES)}")
    if runs < 1:
        parser.error("--runs must be >= 1")
    from dojo_validation import host_now

    return host_now.report(names, runs, say=lambda line: print(line, flush=True))


if __name__ == "__main__":
    raise SystemExit(main())
