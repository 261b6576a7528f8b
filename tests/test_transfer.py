"""Training from a parent model: head replacement, freezing, params, and the pipeline with a registered parent."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import copy_project, run

from neurodigits import NeuroDigitsError
from neurodigits.models import build_from_parent, build_model, transfer_weights
from neurodigits.params import ModelParams, TrainParams, parse_params
from neurodigits.training import fit, set_determinism

DIGITS = [str(d) for d in range(10)]
CNN = ModelParams(kind="cnn", conv_filters=[4], convs_per_block=1, dense_units=8, dropout=0.0)


def parent_cnn() -> keras.Model:
    set_determinism(0)
    return build_model(CNN, TrainParams(), image_size=12, num_classes=10)


def test_new_classes_get_a_new_head_and_matching_classes_keep_their_weights():
    parent = parent_cnn()
    classes = ["7", "A", "0", "b"]  # two digits the parent knows, two letters it does not
    child = build_model(CNN, TrainParams(), 12, len(classes))
    fresh = child.get_weights()[-2:]
    assert transfer_weights(parent, child, DIGITS, classes) == 2
    *body, kernel, bias = child.get_weights()
    *parent_body, parent_kernel, parent_bias = parent.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(body, parent_body))
    assert kernel.shape == (8, 4) and bias.shape == (4,)
    assert np.array_equal(kernel[:, [0, 2]], parent_kernel[:, [7, 0]])
    assert np.array_equal(bias[[0, 2]], parent_bias[[7, 0]])
    assert np.array_equal(kernel[:, [1, 3]], fresh[0][:, [1, 3]])  # new classes keep their fresh initialisation


def test_same_classes_copy_the_whole_parent_and_a_wrong_input_size_is_one_line():
    parent = parent_cnn()
    child = build_from_parent(parent, DIGITS, CNN, TrainParams(init_from="p"), 12, DIGITS)
    assert all(np.array_equal(a, b) for a, b in zip(child.get_weights(), parent.get_weights()))
    with pytest.raises(NeuroDigitsError, match=r"parent takes 12x12 images but data.image_size is 20; set "):
        build_from_parent(parent, DIGITS, CNN, TrainParams(init_from="p"), 20, DIGITS)
    mlp = build_model(ModelParams(), TrainParams(), 12, 10)
    with pytest.raises(NeuroDigitsError, match="has no convolutional blocks; use all-but-head or none"):
        build_from_parent(mlp, DIGITS, ModelParams(), TrainParams(init_from="p", freeze="conv"), 12, DIGITS)


def weights_by_layer(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


@pytest.mark.parametrize("freeze, frozen", [("conv", {"conv2d"}), ("all-but-head", {"conv2d", "dense"})])
def test_frozen_weights_stay_bit_identical_and_the_fine_tune_phase_moves_them(freeze, frozen):
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 144), dtype=np.float32), rng.integers(0, 3, 64)
    train = TrainParams(init_from="p", freeze=freeze, epochs=1, fine_tune_epochs=1, batch_size=16, learning_rate=0.01)
    child = build_from_parent(parent_cnn(), DIGITS, CNN, train, 12, ["0", "1", "2"])
    before, snapshots = weights_by_layer(child), []
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(weights_by_layer(child)))
    history = fit(child, x, y, train, callbacks=[keep], verbose=0)
    assert list(history["epoch"]) == [1, 2]  # the fine-tune phase continues the epoch count
    frozen_phase, fine_tuned = snapshots
    for name in before:
        unchanged = all(np.array_equal(a, b) for a, b in zip(before[name], frozen_phase[name]))
        assert unchanged == (name.rstrip("_0123456789") in frozen), name
        assert not np.array_equal(frozen_phase[name][0], fine_tuned[name][0]), name  # phase 2 trains every layer


@pytest.mark.parametrize("train, expected", [
    ({"freeze": "conv"}, "train.freeze and train.fine_tune_epochs need a parent model; set train.init_from"),
    ({"init_from": "models:/neurodigits", "freeze": "conv"}, "'models:/neurodigits' is not a parent model; give"),
    ({"init_from": "s3://bucket/model"}, "is not a parent model"),
    ({"init_from": "models/export", "fine_tune_epochs": 3}, "set train.freeze to conv or all-but-head"),
])
def test_transfer_params_are_validated_in_one_line(train, expected):
    with pytest.raises(NeuroDigitsError) as error:
        parse_params({"train": train})
    assert str(error.value).startswith("params.yaml: ") and expected in str(error.value)
    assert "\n" not in str(error.value)


def test_valid_parents_and_the_fine_tune_learning_rate():
    for uri in ("models:/neurodigits@champion", "models:/neurodigits/3", "runs:/0a1b2c/model", "models/export"):
        assert parse_params({"train": {"init_from": uri}}).train.init_from == uri
    train = parse_params({"train": {"init_from": "models/export", "freeze": "conv", "fine_tune_epochs": 2}}).train
    assert train.fine_tune_lr == pytest.approx(1e-4)


def register_parent(project: Path, versions: int) -> dict[str, str]:
    """Log an MLP (untrained: only lineage matters here) the way the export stage does, with its export
    metadata, into the project's MLflow store, and register it `versions` times; champion -> version 1."""
    import mlflow  # noqa: PLC0415

    from neurodigits import tracking  # noqa: PLC0415
    from neurodigits.export import probability_model  # noqa: PLC0415
    from neurodigits.params import Params  # noqa: PLC0415
    from neurodigits.training import weights_sha256  # noqa: PLC0415

    params = Params(model=ModelParams(hidden_units=[16]))
    model = build_model(params.model, params.train, 20, 10)
    weights = weights_sha256(model)
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow' / 'mlflow.db'}")
    experiment = mlflow.create_experiment("neurodigits", artifact_location=(project / "mlflow/artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as parent_run:
        mlflow.set_tag("weights_sha256", weights)
        mlflow.log_dict({"classes": DIGITS, "image_size": 20, "params": params.model_dump(), "weights_sha256": weights},
                        tracking.EXPORT_METADATA)
        info = mlflow.tensorflow.log_model(probability_model(model), name="model", pip_requirements=[])
    for _ in range(versions):
        mlflow.register_model(info.model_uri, "neurodigits")
    mlflow.MlflowClient().set_registered_model_alias("neurodigits", "champion", "1")
    return {"run_id": parent_run.info.run_id, "weights_sha256": weights}


@pytest.fixture
def project(tmp_path: Path):
    """A tiny project copy; MLflow's global tracking URI is reset afterwards."""
    import mlflow  # noqa: PLC0415

    yield copy_project(tmp_path, data={"limit": 300})
    mlflow.set_tracking_uri(None)


def test_fine_tune_a_registered_champion_through_dvc_and_mlflow(project: Path):
    import mlflow  # noqa: PLC0415

    parent_run = register_parent(project, versions=2)
    output = run(["dvc", "exp", "run", "-S", "train.init_from=models:/neurodigits@champion", "-S", "train.epochs=1",
                  "-S", "train.freeze=all-but-head", "-S", "train.fine_tune_epochs=1", "train"], project).stdout
    assert f"parent models:/neurodigits@champion: models:/neurodigits/1, run {parent_run['run_id']}" in output
    assert "params.yaml's model.hidden_units=[25, 15] is not used" in output  # the architecture is the parent's
    parent = json.loads((project / "models/parent/parent.json").read_text())
    assert (parent["version"], parent["run_id"], parent["weights_sha256"]) == ("1", *parent_run.values())
    assert parent["classes"] == DIGITS and parent["model"]["hidden_units"] == [16]
    child_run = json.loads((project / "models/run.json").read_text())["mlflow_run_id"]
    client = mlflow.MlflowClient()
    lineage = client.get_run(child_run).data.tags
    assert lineage["parent_model_version"] == "neurodigits/1" and lineage["parent_init_from"] == parent["init_from"]
    assert lineage["parent_run_id"] == parent["run_id"] and lineage["parent_weights_sha256"] == parent["weights_sha256"]
    assert lineage["parent_keras_sha256"] == parent["keras_sha256"]
    assert client.get_run(child_run).data.params["model.hidden_units"] == "[16]"
    assert len((project / "reports/history.csv").read_text().splitlines()) == 3  # 1 frozen + 1 fine-tune epoch
    assert "models/parent" not in run(["dvc", "status", "train"], project).stdout

    client.set_registered_model_alias("neurodigits", "champion", "2")  # the champion moves: train must re-run
    run(["dvc", "repro", "resolve"], project)
    assert json.loads((project / "models/parent/parent.json").read_text())["version"] == "2"
    assert "modified:           models/parent" in run(["dvc", "status", "train"], project).stdout


@pytest.mark.parametrize("uri, expected", [
    ("models:/neurodigits/99", "train.init_from models:/neurodigits/99: no such model in the MLflow store"),
    ("models/nowhere", "train.init_from 'models/nowhere': models/nowhere is not an export folder (no "
                       "model.keras and metadata.json); give models/export of a run or models:/neurodigits@champion"),
])
def test_a_bad_parent_is_one_line_and_no_output(uri, expected, tmp_path, monkeypatch, capsys):
    import mlflow  # noqa: PLC0415

    from stages import run_stage  # noqa: PLC0415
    from stages.resolve import main  # noqa: PLC0415

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "params.yaml").write_text(f"train: {{init_from: '{uri}'}}\n")
    with pytest.raises(SystemExit):
        run_stage(main)
    mlflow.set_tracking_uri(None)
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]  # MLflow logs aside
    assert line.startswith(f"error: {expected.format(root=tmp_path)}"), line
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())  # no partial outputs


@pytest.fixture
def local_mlflow(tmp_path: Path):
    """MLflow on a SQLite store of its own; the tracking URI (which MLflow also exports to child processes) is
    reset afterwards."""
    import mlflow  # noqa: PLC0415

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow
    mlflow.set_tracking_uri(None)


def test_champion_moves_only_between_models_of_the_same_classes(local_mlflow):
    """A personal 3-class model with a perfect score never takes the alias from the 10-digit champion; a
    better 10-digit model does; line models rank by CER (lower is better)."""
    from neurodigits import tracking  # noqa: PLC0415

    mlflow = local_mlflow
    client = mlflow.MlflowClient()
    client.create_registered_model("m")

    def register(classes: list[str], **metrics: float) -> str:
        with mlflow.start_run() as run:
            mlflow.log_metrics(metrics)
            mlflow.set_tag(tracking.CLASSES_TAG, tracking.classes_key(classes))
        client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)
        return tracking.promote_best(client, "m", "champion", tracking.classes_key(classes))

    digits, mine = [str(d) for d in range(10)], ["1", "4", "7"]
    assert register(digits, test_accuracy=0.93) == "1"
    assert register(mine, test_accuracy=1.0) == "1"  # other classes: the champion stays
    assert register(digits, test_accuracy=0.95) == "3"
    assert register(digits, test_accuracy=0.94) == "3"
    client.create_registered_model("lines")
    for cer, expected in ((0.2, "1"), (0.1, "2"), (0.3, "2")):
        with mlflow.start_run() as run:
            mlflow.log_metric("test_cer", cer)
            mlflow.set_tag(tracking.CLASSES_TAG, "chars")
        client.create_model_version("lines", "runs:/x/model", run.info.run_id)
        assert tracking.promote_best(client, "lines", "champion", "chars") == expected
