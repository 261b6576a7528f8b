"""Shared fixtures: a throwaway copy of this project where the real dvc and MLflow run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)


def project_env(**extra: str) -> dict[str, str]:
    """The environment stages run in: this interpreter's venv first, no MLflow server, no telemetry."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", MLFLOW_DISABLE_TELEMETRY="true",
               DVC_NO_ANALYTICS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@localhost",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@localhost", **extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run a command the way a user would; on failure show its output."""
    result = subprocess.run(cmd, cwd=cwd, env=project_env(**env), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def copy_project(destination: Path, **overrides: dict) -> Path:
    """Copy the project's tracked and untracked-but-not-ignored files (no outputs, no dvc.lock),
    apply params overrides ({section: {key: value}}), and commit it as a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        source = ROOT / name
        if name == "dvc.lock" or name.startswith(("reports/", "models/")) or not source.is_file():
            continue
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination / name)
    params_file = destination / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for section, values in overrides.items():
        params[section].update(values)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=destination, check=True, capture_output=True, env=project_env())
    return destination


def start_queue(project: Path, jobs: int, **env: str) -> None:
    """`dvc queue start -j jobs`, its output to a file: the daemon it leaves behind keeps its stdout and stderr,
    and when a worker outlives the queue (seen once: one of three stayed idle) a pipe would block us forever."""
    log = project / ".dvc" / "tmp" / "queue-start.log"
    with open(log, "w") as out:
        code = subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=project, env=project_env(**env),
                              stdout=out, stderr=subprocess.STDOUT).returncode
    assert code == 0, log.read_text()[-4000:]


def wait_for_queue(project: Path, timeout: float = 600) -> str:
    """Poll `dvc queue status` until nothing is queued or running; return the last status table."""
    deadline = time.monotonic() + timeout
    while True:
        status = run(["dvc", "queue", "status"], project).stdout
        if ("Queued" not in status and "Running" not in status) or time.monotonic() > deadline:
            return status
        time.sleep(2)


TINY = {"data": {"limit": 1000}, "train": {"epochs": 3}}


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy on 1000 embedded digits and 3 epochs, after one real `dvc repro`."""
    project = copy_project(tmp_path_factory.mktemp("project"), **TINY)
    run(["dvc", "repro"], project)
    return project
