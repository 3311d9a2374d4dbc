"""The run's outputs: the results and baseline files, and the merging of pytest-xdist workers' results.

Under pytest-xdist the workers send their results to the controller (``workeroutput``) as JSON,
and the controller merges them before writing the summary, the results file and the baseline.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_dojo.plugin.per_test import SENSITIVITY_KEY
from pytest_dojo.plugin.session import DojoSession, TestResult

WORKER_OUTPUT_KEY = "dojo_results"
SENSITIVITY_OUTPUT_KEY = "dojo_sensitivity"


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def send_to_controller(config: pytest.Config, session: DojoSession) -> None:
    """On a worker: its results, wall-clock entries and sensitivity rankings, as JSON."""
    payload = {"results": [result.to_dict() for result in session.results], "wallclock": session.wallclock}
    config.workeroutput[WORKER_OUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]
    ranked = [[*key, lines] for key, lines in config.stash.get(SENSITIVITY_KEY, {}).items()]
    config.workeroutput[SENSITIVITY_OUTPUT_KEY] = json.dumps(ranked)  # type: ignore[attr-defined]


def merge_worker(node: Any, session: DojoSession) -> None:
    """On the controller: a finished worker's results, merged into ``session``."""
    output = getattr(node, "workeroutput", {})
    for nodeid, network, ordinal, lines in json.loads(output.get(SENSITIVITY_OUTPUT_KEY, "[]")):
        node.config.stash.setdefault(SENSITIVITY_KEY, {})[(nodeid, network, ordinal)] = lines
    results = output.get(WORKER_OUTPUT_KEY)
    if results is None:
        return
    payload = json.loads(results)
    session.results.extend(TestResult.from_dict(entry) for entry in payload["results"])
    session.wallclock.extend(payload["wallclock"])


def write_outputs(config_session: pytest.Session, dojo_session: DojoSession) -> None:
    """``--dojo-json`` and ``--dojo-save-baseline``; a file that cannot be written fails the run."""
    settings = dojo_session.options
    targets = [(path, True) for path in (settings.json_path,) if path is not None]
    targets += [(path, False) for path in (settings.save_baseline_path,) if path is not None]
    if not targets:
        return
    from pytest_dojo.plugin.results_json import (
        ResultsFileError,
        build_document,
        git_commit,
        machine_info,
        write_json_atomic,
    )

    commit = git_commit(config_session.config.rootpath)
    machine = machine_info()
    results = [result.to_dict() for result in dojo_session.sorted_results()]
    for path, measured in targets:
        document = build_document(
            chip=dojo_session.system.chip.name,
            mesh=str(dojo_session.system.mesh),
            commit=commit,
            machine=machine,
            results=results,
            wallclock=dojo_session.wallclock if measured else (),
            include_measured=measured,
        )
        if dojo_session.host_rates is not None:
            document["host_rates"] = dojo_session.host_rates.to_dict()
        try:
            write_json_atomic(path, document)
        except ResultsFileError as error:
            dojo_session.write_errors.append(str(error))
            if config_session.exitstatus == pytest.ExitCode.OK:
                config_session.exitstatus = pytest.ExitCode.TESTS_FAILED
        else:
            dojo_session.written.append(f"{'results' if measured else 'baseline'} written to {path}")
