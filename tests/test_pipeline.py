"""The whole pipeline through the real dvc, MLflow and Keras, on 1000 embedded digits."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import ROOT, TINY, copy_project, run, start_queue, wait_for_queue

from neurodigits.params import load_params

OUTPUTS = ["data/prepared/x_train.npy", "data/prepared/meta.json", "reports/data.json", "models/model.keras",
           "models/run.json", "reports/history.csv", "reports/metrics.json", "reports/per_class.json",
           "reports/confusion.csv", "reports/plots/misclassified.png", "reports/plots/confusion_matrix.png",
           "reports/plots/training_curves.png", "models/export/model.keras", "models/export/model.tflite",
           "models/export/saved_model/saved_model.pb", "models/export/metadata.json"]


def query(project: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(project / "mlflow" / "mlflow.db") as db:
        return db.execute(sql, args).fetchall()


def test_params_yaml_is_the_reference_setup():
    params = load_params(ROOT / "params.yaml")
    assert (params.data.source, params.data.image_size, params.data.test_fraction) == ("mnist-5k", 20, 0.2)
    assert (params.model.kind, params.model.hidden_units, params.model.activation) == ("mlp", [25, 15], "relu")
    assert (params.train.epochs, params.train.batch_size, params.train.learning_rate) == (40, 32, 0.001)
    assert not params.train.augment and params.train.lr_schedule == "constant"


def test_repro_writes_every_declared_output(tiny_project: Path):
    missing = [name for name in OUTPUTS if not (tiny_project / name).is_file()]
    assert not missing
    metrics = json.loads((tiny_project / "reports/metrics.json").read_text())
    assert metrics["test"]["n"] == 200 and metrics["train"]["n"] == 800
    assert metrics["test"]["misclassified"] == round((1 - metrics["test"]["accuracy"]) * 200)
    assert metrics["test"]["accuracy"] > 0.3  # 3 epochs on 800 digits: far above chance (0.1)
    history = (tiny_project / "reports/history.csv").read_text().splitlines()
    assert history[0] == "epoch,accuracy,loss" and len(history) == 1 + TINY["train"]["epochs"]


def test_mlflow_run_holds_the_whole_story(tiny_project: Path):
    run_id = json.loads((tiny_project / "models/run.json").read_text())["mlflow_run_id"]
    [(status,)] = query(tiny_project, "select status from runs where run_uuid = ?", run_id)
    assert status == "FINISHED"
    params = dict(query(tiny_project, "select key, value from params where run_uuid = ?", run_id))
    assert params["train.epochs"] == "3" and params["model.hidden_units"] == "[25, 15]"
    steps = query(tiny_project, "select step from metrics where run_uuid = ? and key = 'loss' order by step", run_id)
    assert [s for (s,) in steps] == [1, 2, 3]
    metrics = dict(query(tiny_project, "select key, value from latest_metrics where run_uuid = ?", run_id))
    saved = json.loads((tiny_project / "reports/metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(saved["test"]["accuracy"])
    assert metrics["train_misclassified"] == saved["train"]["misclassified"]
    tags = dict(query(tiny_project, "select key, value from tags where run_uuid = ?", run_id))
    assert len(tags["git_commit"]) == 40 and tags["data_sha256"] and tags["weights_sha256"]
    artifacts = tiny_project / "mlflow" / "artifacts"
    assert sorted(p.name for p in artifacts.rglob("*.png")) == [
        "confusion_matrix.png", "misclassified.png", "training_curves.png"]
    assert query(tiny_project, "select count(*) from inputs")[0][0] >= 1


def test_registered_champion_loads_and_predicts(tiny_project: Path):
    script = (
        "import mlflow, numpy as np; mlflow.set_tracking_uri('sqlite:///mlflow/mlflow.db');"
        "x = np.load('data/prepared/x_test.npy')[:5].reshape(5, -1).astype('float32') / 255;"
        "p = mlflow.pyfunc.load_model('models:/neurodigits@champion').predict(x);"
        "p = np.asarray(p); assert p.shape == (5, 10) and np.allclose(p.sum(1), 1, atol=1e-5); print('ok')")
    assert run(["python", "-c", script], tiny_project).stdout.strip().endswith("ok")


def test_exports_agree_with_the_trained_model(tiny_project: Path):
    metadata = json.loads((tiny_project / "models/export/metadata.json").read_text())
    assert metadata["classes"] == [str(d) for d in range(10)] and metadata["input"]["shape"] == [None, 400]
    assert set(metadata["parity"]) == {"keras_max_logit_diff", "saved_model_max_logit_diff", "tflite_max_logit_diff"}
    assert max(metadata["parity"].values()) <= 1e-4


def test_unchanged_repro_runs_no_stage(tiny_project: Path):
    output = run(["dvc", "repro"], tiny_project).stdout
    assert "Stage 'train' didn't change" in output  # resolve re-resolves train.init_from every time, alone
    assert "Running stage" not in output.replace("Running stage 'resolve'", "")


def test_forced_repro_is_bit_identical(tiny_project: Path):
    before = {name: (tiny_project / name).read_bytes() for name in
              ("reports/metrics.json", "reports/per_class.json", "reports/history.csv", "data/prepared/x_train.npy")}
    weights = json.loads((tiny_project / "models/run.json").read_text())["weights_sha256"]
    run(["dvc", "repro", "--force"], tiny_project)
    assert json.loads((tiny_project / "models/run.json").read_text())["weights_sha256"] == weights
    for name, content in before.items():
        assert (tiny_project / name).read_bytes() == content, name


def test_queued_experiments_all_land_in_the_main_store(tmp_path: Path):
    project = copy_project(tmp_path, **TINY)
    for epochs in (2, 4):
        run(["dvc", "exp", "run", "--queue", "-S", f"train.epochs={epochs}"], project)
    start_queue(project, 2)
    status = wait_for_queue(project, timeout=300)
    assert status.count("Success") == 2, status
    names = sorted(v for (v,) in query(project, "select value from tags where key = 'dvc_exp_name'"))
    runs = dict(query(project, "select name, status from runs"))
    assert len(names) == 2 and all(runs[name] == "FINISHED" for name in names)
    epochs = sorted(int(v) for (v,) in query(project, "select value from params where key = 'train.epochs'"))
    assert epochs == [2, 4]
    versions = query(project, "select version from model_versions where name = 'neurodigits'")
    assert len(versions) == 2
    shown = run(["dvc", "exp", "show", "--csv"], project).stdout
    assert all(name in shown for name in names)
