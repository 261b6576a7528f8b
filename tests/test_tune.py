"""Sweeps: the tune section's validation (no Ray), and real sweeps on a real two-node Ray cluster on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, VENV_BIN, project_env

from neurodigits import NeuroDigitsError, cli
from neurodigits.params import parse_params
from neurodigits.raycluster import Cluster, loopback_cluster

BAD_SPACES = {
    "unknown key": ({"train.learning_rat": "loguniform(1e-4, 1e-2)"},
                    "'tune.space.train.learning_rat': unknown params key; did you mean 'train.learning_rate'?"),
    "data key": ({"data.image_size": "int(16, 28)"}, "only model.* and train.* keys can be searched"),
    "epochs": ({"train.epochs": "int(5, 40)"}, "ASHA runs each trial up to train.epochs"),
    "unknown distribution": ({"model.dropout": "normal(0.2, 0.1)"}, "write one of loguniform(1e-4, 1e-2), "),
    "code, not a literal": ({"train.seed": "int(__import__('os').getpid(), 9)"}, "must be numbers or lists"),
    "loguniform from 0": ({"train.learning_rate": "loguniform(0, 1e-2)"}, "loguniform needs 0 < low < high"),
    "one bound": ({"model.dropout": "uniform(0.1)"}, "uniform takes two numbers (low, high)"),
    "float int bounds": ({"model.dense_units": "int(32, 64.5)"}, "int takes two integers"),
    "empty choice": ({"train.batch_size": "choice([])"}, "choice takes one non-empty list"),
    "out of range": ({"model.dropout": "uniform(0.2, 1.5)"}, "can give 1.5, but model.dropout: input should be less"),
    "uniform on an int": ({"train.batch_size": "uniform(16, 64)"}, "use int(low, high) for this integer key"),
    "bad option": ({"model.kind": "choice(['mlp', 'rnn'])"}, "can give 'rnn', but model.kind: input should be"),
    "not a string": ({"train.batch_size": [16, 32]}, "'tune.space.train.batch_size' input should be a valid string"),
}


@pytest.mark.parametrize("space, expected", BAD_SPACES.values(), ids=BAD_SPACES.keys())
def test_a_bad_search_space_entry_is_one_line(space, expected):
    with pytest.raises(NeuroDigitsError) as error:
        parse_params({"tune": {"space": space}})
    assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_mode_must_fit_the_metric():
    with pytest.raises(NeuroDigitsError, match="'tune.mode' max does not fit tune.metric val_loss; use mode min"):
        parse_params({"tune": {"metric": "val_loss"}})


def test_a_line_model_sweep_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "synthetic-lines"},
                                                          "model": {"kind": "crnn"}}))
    assert cli.main(["tune"]) == 1
    assert capsys.readouterr().err == ("error: sweeps tune character models (scored by val_accuracy or val_loss), "
                                       "not line models; compare line models by CER with `dvc exp run --queue -S "
                                       "...` and `dvc exp show`\n")
    assert "ray" not in sys.modules  # refused before Ray is imported


def test_the_cli_stops_on_a_bad_space_before_starting_ray(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tune": {"space": {"model.dropout": "uniform(0.5, 0.1)"}}}))
    assert cli.main(["tune"]) == 1
    assert capsys.readouterr().err == ("error: params.yaml: 'tune.space.model.dropout': bad distribution "
                                       "'uniform(0.5, 0.1)'; uniform needs low < high, e.g. uniform(0.1, 0.5)\n")


def test_the_default_space_is_valid_and_every_distribution_parses():
    params = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert params.tune.space and params.tune.trials > 0 and "ray" not in sys.modules


def test_a_rerun_with_the_same_seed_proposes_the_same_configurations():
    from ray.tune.search.optuna import OptunaSearch

    from neurodigits.tune import search_space

    space = {"train.learning_rate": "loguniform(1e-4, 1e-2)", "model.hidden_units": "choice([[16], [32, 16]])",
             "train.batch_size": "int(16, 64)"}

    def proposals(seed: int) -> list[dict]:
        searcher = OptunaSearch(search_space(space), metric="val_accuracy", mode="max", seed=seed)
        return [searcher.suggest(f"trial-{i}") for i in range(6)]

    first = proposals(7)
    assert first == proposals(7) and first != proposals(8)
    assert {json.loads(p["model.hidden_units"])[0] for p in first} <= {16, 32}
    assert all(16 <= p["train.batch_size"] <= 64 and 1e-4 <= p["train.learning_rate"] <= 1e-2 for p in first)


def test_the_winner_command_is_what_differs_from_params_yaml_shell_quoted():
    from neurodigits.presets import load_presets
    from neurodigits.tune import reproduce_command, trial_params

    base = parse_params({"tune": {"space": {"model.hidden_units": "choice([[25, 15], [64, 32]])",
                                            "train.learning_rate": "loguniform(1e-4, 1e-2)"}}})
    trial = trial_params(base, {"model.hidden_units": [64, 32], "train.learning_rate": 0.001})  # the default rate
    assert reproduce_command(trial, base) == ("dvc exp run -S 'model.hidden_units=[64, 32]' "
                                              "-S train.validation_fraction=0.2")
    cnn = trial_params(load_presets()["cnn"].apply(base), {"model.hidden_units": [25, 15], "train.learning_rate": 3e-3})
    assert reproduce_command(cnn, base) == ("dvc exp run -S model.kind=cnn -S train.learning_rate=0.003 "
                                            "-S train.validation_fraction=0.2 -S train.augment=true "
                                            "-S train.augment_stroke=0.3 -S train.augment_blur=0.5 "
                                            "-S train.augment_contrast=0.2 -S train.augment_resolution=0.5")


# A real Ray cluster on this machine: two nodes of 1 CPU each on loopback; node failures detected within ~2 s.
HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                 "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}
TINY_SWEEP = {"data": {"limit": 400}, "model": {"hidden_units": [16]},
              "train": {"epochs": 2, "steps_per_execution": 1},
              "tune": {"trials": 4, "grace_period": 1, "space": {"train.learning_rate": "loguniform(1e-3, 1e-2)",
                                                                 "train.batch_size": "choice([16, 32])"}}}


@pytest.fixture(scope="session")
def ray_cluster() -> Cluster:
    with loopback_cluster(nodes=2, cpus=1, env=project_env(**HEALTH_CHECKS)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sweep_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/prepared for the tiny sweeps: 320 train / 80 test embedded digits."""
    project = tmp_path_factory.mktemp("sweep-data")
    (project / "params.yaml").write_text(yaml.safe_dump({"data": TINY_SWEEP["data"]}))
    subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=project, env=project_env(PYTHONPATH=str(ROOT)),
                   check=True, capture_output=True)
    return project / "data" / "prepared"


def sweep_project(tmp_path: Path, sweep_data: Path, **overrides: dict) -> Path:
    """A folder with params.yaml (the project's, tiny, plus overrides) and the prepared data: where a user runs
    `neurodigits tune`. The MLflow store is its mlflow/ folder."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in (TINY_SWEEP | overrides).items():
        params[section].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(sweep_data, tmp_path / "data" / "prepared")
    return tmp_path


def start_tune(project: Path, cluster: Cluster, *args: str) -> subprocess.Popen:
    return subprocess.Popen([f"{VENV_BIN}/neurodigits", "tune", "--address", cluster.address, *args], cwd=project,
                            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def runs(project: Path) -> list[dict]:
    """Every run in the project's MLflow store: id, status, parent id and tags (read-only SQL)."""
    with sqlite3.connect(f"file:{project / 'mlflow' / 'mlflow.db'}?mode=ro", uri=True) as db:
        found = {run_id: {"run_id": run_id, "status": status, "tags": {}}
                 for run_id, status in db.execute("SELECT run_uuid, status FROM runs")}
        for run_id, key, value in db.execute("SELECT run_uuid, key, value FROM tags"):
            found[run_id]["tags"][key] = value
        for run_id, steps in db.execute("SELECT run_uuid, COUNT(*) FROM metrics WHERE key = 'val_accuracy' "
                                        "GROUP BY run_uuid"):
            found[run_id]["val_accuracy_steps"] = steps
    return list(found.values())


def wait_for_trial_on(project: Path, node: str | None = None, timeout: float = 180) -> None:
    """Until a trial (on `node`, if given) has reported its first epoch to MLflow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{project / 'mlflow' / 'mlflow.db'}?mode=ro", uri=True) as db:
                query = "SELECT 1 FROM tags WHERE key = 'ray_node_id' AND value LIKE ?"
                if db.execute(query, (node or "%",)).fetchone():
                    return
        except sqlite3.OperationalError:  # no store yet, or MLflow is still creating its tables
            pass
        time.sleep(0.1)
    raise AssertionError(f"no trial reported from node {node} within {timeout} s")


def test_a_sweep_spreads_over_both_nodes_and_every_trial_is_an_mlflow_child(ray_cluster, sweep_data, tmp_path):
    project = sweep_project(tmp_path, sweep_data)
    code, out, err = finish(start_tune(project, ray_cluster, "--trials", "4"))
    assert code == 0, out[-3000:] + err[-3000:]
    report = json.loads((project / "reports" / "tune.json").read_text())
    assert report["status"] == "FINISHED" and len(report["trials"]) == 4
    assert {t["status"] for t in report["trials"]} <= {"FINISHED", "EARLY_STOPPED"}
    assert {t["node_id"] for t in report["trials"]} == set(ray_cluster.node_ids)  # both nodes
    best = report["best"]
    assert best["command"] in out and best["command"].startswith("dvc exp run -S ")
    assert "-S train.validation_fraction=0.2" in best["command"] and "test_accuracy" in best["metrics"]
    assert "| Trial name" in out  # Ray's live progress table

    [parent] = [r for r in runs(project) if r["tags"].get("sweep") == "true"]
    children = [r for r in runs(project) if r["tags"].get("mlflow.parentRunId") == parent["run_id"]]
    assert parent["status"] == "FINISHED" and len(children) == 4
    assert all(c["status"] == "FINISHED" and c.get("val_accuracy_steps", 0) >= 1 for c in children)
    assert {c["run_id"] for c in children} == {t["mlflow_run_id"] for t in report["trials"]}
    assert parent["tags"]["best_trial_run_id"] == best["mlflow_run_id"]


def test_ctrl_c_stops_the_sweep_and_marks_its_runs_killed(ray_cluster, sweep_data, tmp_path):
    project = sweep_project(tmp_path, sweep_data, train={"epochs": 400, "steps_per_execution": 1},
                            tune={"trials": 2, "grace_period": 400})
    process = start_tune(project, ray_cluster)
    try:
        wait_for_trial_on(project)
    finally:
        process.send_signal(signal.SIGINT)
    code, out, err = finish(process, timeout=120)
    assert code == 130, out[-3000:] + err[-3000:]
    report = json.loads((project / "reports" / "tune.json").read_text())
    assert report["status"] == "KILLED" and {t["status"] for t in report["trials"]} == {"KILLED"}
    assert {r["status"] for r in runs(project)} == {"KILLED"} and len(runs(project)) == 1 + len(report["trials"])


def test_a_lost_worker_node_does_not_lose_the_sweep(ray_cluster, sweep_data, tmp_path):
    """Runs last: it SIGKILLs the worker node's processes, as if its machine were lost. Its trial is retried on
    the head (tune.max_failures: 1)."""
    project = sweep_project(tmp_path, sweep_data, train={"epochs": 20, "batch_size": 8, "steps_per_execution": 1},
                            tune={"trials": 2, "grace_period": 20, "space": {"train.seed": "int(1, 1000)"}})
    process = start_tune(project, ray_cluster)
    try:
        wait_for_trial_on(project, ray_cluster.node_ids[1])
        os.killpg(ray_cluster.nodes[1].pid, signal.SIGKILL)
        code, out, err = finish(process)
    finally:
        process.kill()
    assert code == 0, out[-3000:] + err[-3000:]
    report = json.loads((project / "reports" / "tune.json").read_text())
    assert report["status"] == "FINISHED" and [t["status"] for t in report["trials"]] == ["FINISHED"] * 2
    [retried] = [t for t in report["trials"] if t["failures"]]
    assert retried["failures"] == 1 and retried["node_id"] == ray_cluster.node_ids[0] and retried["epochs"] == 20
    assert {r["status"] for r in runs(project)} == {"FINISHED"}
