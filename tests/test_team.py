"""A team's set-up, all real: `mlflow server` on PostgreSQL (started like `make server`), two clones logging to it
at once, the champion alias, and DVC push/pull through the default folder remote and an SSH remote."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import copy_project, project_env, run, start_queue, wait_for_queue
from model_helpers import write_image

from neurodigits import NeuroDigitsError
from neurodigits.net import answers, free_port
from neurodigits.synth import held_out_digits
from neurodigits.team_server import postgres_bin

TEAM = {"data": {"limit": 1000}, "train": {"epochs": 2}}
LEARNING_RATES = (0.003, 0.01, 0.0003)  # queued in clone B; clone A runs params.yaml (0.001)


@pytest.fixture(scope="session")
def team_server() -> dict:
    """`python -m neurodigits.team_server` (what `make server` runs) on a loopback port; Ctrl-C (SIGINT) at the end
    must stop MLflow and PostgreSQL cleanly."""
    try:
        postgres_bin()
    except NeuroDigitsError as exc:
        pytest.skip(str(exc))
    root = Path(tempfile.mkdtemp(prefix="neurodigits-team-"))
    root.chmod(0o755)  # the postgres user must reach its cluster folder
    port = free_port()
    log = root / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "neurodigits.team_server", "--root", str(root / "server"),
                                   "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=project_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while not answers(f"{url}/health"):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"team server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"url": url, "root": root / "server"}
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert not (root / "server" / "postgres" / "postmaster.pid").exists(), "PostgreSQL was not shut down"
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def team(team_server: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Clone A runs `dvc repro` while clone B runs three queued experiments, three at a time: four runs at once."""
    base = tmp_path_factory.mktemp("team")
    a = copy_project(base / "a", **TEAM)
    b = base / "b"
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
    server = {"MLFLOW_TRACKING_URI": team_server["url"]}
    for rate in LEARNING_RATES:
        run(["dvc", "exp", "run", "--queue", "-S", f"train.learning_rate={rate}"], b, **server)
    repro = subprocess.Popen(["dvc", "repro"], cwd=a, env=project_env(**server), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    start_queue(b, len(LEARNING_RATES), **server)
    output = repro.communicate(timeout=600)[0]
    assert repro.returncode == 0, output[-4000:]
    status = wait_for_queue(b)
    assert status.count("Success") == len(LEARNING_RATES), status
    return {"a": a, "b": b, "base": base, **team_server}


def client(url: str):
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    return MlflowClient(tracking_uri=url, registry_uri=url)


def test_four_concurrent_runs_land_on_the_server_with_the_alias_on_the_best(team: dict):
    mlflow = client(team["url"])
    experiment = mlflow.get_experiment_by_name("neurodigits")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # uploads go through the server
    runs = mlflow.search_runs([experiment.experiment_id])
    assert len(runs) == 1 + len(LEARNING_RATES)
    rates = sorted(float(r.data.params["train.learning_rate"]) for r in runs)
    assert rates == sorted((0.001, *LEARNING_RATES))
    for r in runs:
        assert r.info.status == "FINISHED" and "test_accuracy" in r.data.metrics
        assert [m.step for m in mlflow.get_metric_history(r.info.run_id, "loss")] == [1, 2]
        assert {a.path for a in mlflow.list_artifacts(r.info.run_id, "plots")} == {
            "plots/confusion_matrix.png", "plots/misclassified.png", "plots/training_curves.png"}
    stored = {p.name for p in (team["root"] / "artifacts").rglob("*.png")}
    assert stored == {"confusion_matrix.png", "misclassified.png", "training_curves.png"}
    assert not any((team[c] / "mlflow" / "artifacts").exists() for c in ("a", "b"))  # nothing written locally

    versions = mlflow.search_model_versions("name='neurodigits'")
    assert len(versions) == len(runs)
    accuracy = {r.info.run_id: r.data.metrics["test_accuracy"] for r in runs}
    best = max(versions, key=lambda v: (accuracy[v.run_id], -int(v.version)))
    assert mlflow.get_model_version_by_alias("neurodigits", "champion").version == best.version


def test_predict_the_champion_from_another_clone(team: dict, tmp_path: Path):
    image = write_image(tmp_path / "digit.png", 1 - held_out_digits(28)[0][0] / 255.0)
    result = run(["neurodigits", "predict", "--model", "models:/neurodigits@champion", str(image)], team["b"],
                 MLFLOW_TRACKING_URI=team["url"])
    assert result.stdout.startswith(f"{image}: ") and "top-3: " in result.stdout


def assert_pulled_clone_is_complete(clone: Path, image: Path) -> None:
    """`dvc status` clean, `dvc repro` runs nothing, and the pulled export predicts: no training needed."""
    assert run(["dvc", "status"], clone).stdout.split() == ["resolve:", "always", "changed"]  # only the parent pin
    assert "Running stage" not in run(["dvc", "repro"], clone).stdout.replace("Running stage 'resolve'", "")
    assert run(["neurodigits", "predict", str(image)], clone).stdout.startswith(f"{image}: ")


def test_push_then_pull_in_a_fresh_clone_needs_no_training(team: dict, tmp_path: Path):
    a, c = team["a"], team["base"] / "c"
    run(["git", "add", "-A"], a)
    run(["git", "commit", "-qm", "repro on the team server"], a)
    run(["dvc", "push"], a)
    assert (team["base"] / "neurodigits-dvc-remote" / "files" / "md5").is_dir()  # the default remote: beside a
    subprocess.run(["git", "clone", "-q", str(a), str(c)], check=True)
    run(["dvc", "pull"], c)
    image = write_image(tmp_path / "digit.png", 1 - held_out_digits(28)[0][1] / 255.0)
    assert_pulled_clone_is_complete(c, image)


@pytest.fixture
def sshd(tmp_path: Path) -> dict:
    """Debian's sshd on a loopback port, trusting a throwaway key; a HOME whose known_hosts has its host key."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd_bin):
        pytest.skip("sshd not installed: apt-get install openssh-server")
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    shutil.copy(keys / "user.pub", keys / "authorized_keys")
    port = free_port()
    config = keys / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\nPidFile {keys / 'sshd.pid'}\n"
                      f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPasswordAuthentication no\nUsePAM no\n"
                      "StrictModes no\nSubsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder
    server = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {(keys / 'host.pub').read_text()}")
    remote = tmp_path / "ssh-remote"
    yield {"url": f"ssh://{getpass.getuser()}@127.0.0.1:{port}{remote}", "path": remote, "key": str(keys / "user"),
           "HOME": str(home)}
    server.terminate()
    server.wait(timeout=10)


def test_push_and_pull_through_an_ssh_remote(team: dict, sshd: dict, tmp_path: Path):
    a, d = team["a"], tmp_path / "d"
    subprocess.run(["git", "clone", "-q", str(a), str(d)], check=True)
    for clone in (a, d):
        run(["dvc", "remote", "add", "--local", "team", sshd["url"]], clone)
        run(["dvc", "remote", "modify", "--local", "team", "keyfile", sshd["key"]], clone)
    run(["dvc", "push", "-r", "team"], a, HOME=sshd["HOME"])
    assert (sshd["path"] / "files" / "md5").is_dir()
    run(["dvc", "pull", "-r", "team"], d, HOME=sshd["HOME"])
    image = write_image(tmp_path / "digit.png", 1 - held_out_digits(28)[0][2] / 255.0)
    assert_pulled_clone_is_complete(d, image)
