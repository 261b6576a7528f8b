"""A training run killed by a real signal ends KILLED in MLflow: at once for Ctrl-C and SIGTERM, and at the next
run's start for SIGKILL (its process is gone)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_project, project_env, run


def runs(project: Path) -> dict[int, tuple[str, str]]:
    """pid -> (run id, status), from the pid tag each process writes on its run."""
    with sqlite3.connect(project / "mlflow" / "mlflow.db") as db:
        rows = db.execute("select tags.value, runs.run_uuid, runs.status from runs join tags using (run_uuid) "
                          "where tags.key = 'process.pid'").fetchall()
    return {int(pid): (run_id, status) for pid, run_id, status in rows}


def start_training(project: Path) -> subprocess.Popen:
    """`python -m stages.train`, what dvc runs. Its stderr goes to a file (a pipe nobody reads could fill and block
    it); SIGINT is restored to the default, as in a terminal, also when the tests run as a background job (which
    starts its children with SIGINT ignored)."""
    log = project / f"train-{time.monotonic_ns()}.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=project, env=project_env(),
                                   stdout=subprocess.DEVNULL, stderr=stderr,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    process.log = log
    return process


def wait_for_an_epoch(project: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.log.read_text()[-3000:]
        if (project / "mlflow" / "mlflow.db").exists() and process.pid in runs(project):
            with sqlite3.connect(project / "mlflow" / "mlflow.db") as db:
                if db.execute("select count(*) from metrics where run_uuid = ? and key = 'loss'",
                              (runs(project)[process.pid][0],)).fetchone()[0]:
                    return
        time.sleep(0.5)
    process.kill()
    pytest.fail("training did not log an epoch in time")


def test_signals_mark_runs_killed(tmp_path: Path):
    # batch 1, one step per call: epochs of a second or so, so three runs logging each epoch do not keep the
    # SQLite store locked
    project = copy_project(tmp_path / "p", data={"limit": 1000},
                           train={"epochs": 100000, "batch_size": 1, "steps_per_execution": 1})
    for stage in ("prepare", "resolve"):
        run([sys.executable, "-m", f"stages.{stage}"], project)

    killed, live = start_training(project), start_training(project)
    last = None
    try:
        for process in (killed, live):
            wait_for_an_epoch(project, process)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert runs(project)[killed.pid][1] == "RUNNING"  # nobody was left to say otherwise

        last = start_training(project)
        wait_for_an_epoch(project, last)
        assert runs(project)[killed.pid][1] == "KILLED"  # the next run found its process gone
        assert runs(project)[live.pid][1] == "RUNNING"  # a live run on this host is left alone
        for process, sig in ((live, signal.SIGTERM), (last, signal.SIGINT)):
            process.send_signal(sig)
            assert process.wait(timeout=60) == 130
            assert process.log.read_text().endswith("error: interrupted\n")
            assert runs(project)[process.pid][1] == "KILLED"
    finally:  # a failed check leaves no training running on (100,000 epochs)
        for process in (killed, live, last):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
