"""MLflow: where the store is, one run per model, lineage tags, the registry and its alias."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing phones home

import mlflow  # noqa: E402
from filelock import FileLock  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from neurodigits import NeuroDigitsError  # noqa: E402
from neurodigits.params import Params, project_root  # noqa: E402

TEST_METRIC = "test_accuracy"
EXPORT_METADATA = "export/metadata.json"  # the export stage logs its metadata.json (classes, params) here
KERAS_IN_MODEL = Path("data") / "model.keras"  # where MLflow's TensorFlow flavor keeps the Keras file


def store_dir() -> Path:
    return project_root() / "mlflow"


def default_tracking_uri() -> str:
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store under the main repo's mlflow/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _is_local_store() -> bool:
    return tracking_uri() == default_tracking_uri()


@contextlib.contextmanager
def store_lock() -> Iterator[None]:
    """Serialize store set-up and registry updates between parallel local runs (dvc queue -j N)."""
    if not _is_local_store():
        yield
        return
    store_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(store_dir() / ".lock", timeout=300):
        yield


def _experiment_id(name: str) -> str:
    with store_lock():
        mlflow.set_tracking_uri(tracking_uri())
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = (store_dir() / "artifacts").as_uri() if _is_local_store() else None
        return mlflow.create_experiment(name, artifact_location=location)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def lineage_tags(data_sha256: str, parent: dict | None = None) -> dict[str, str]:
    """Git commit and dirty flag, data hash, DVC experiment, and the resolved parent model if there is one."""
    tags = {
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
        "data_sha256": data_sha256,
    }
    if parent and parent.get("init_from"):
        tags |= {"parent_init_from": parent["init_from"], "parent_run_id": str(parent["run_id"]),
                 "parent_weights_sha256": str(parent["weights_sha256"]), "parent_keras_sha256": parent["keras_sha256"]}
        if parent["version"]:
            tags["parent_model_version"] = f"{parent['registered_model']}/{parent['version']}"
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


@contextlib.contextmanager
def run(params: Params, run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Start the model's run (run_id None) or reopen it; an exception marks it FAILED."""
    experiment_id = _experiment_id(params.tracking.experiment)
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id,
                          run_name=None if run_id else os.environ.get("DVC_EXP_NAME")) as active:
        yield active


def register_and_promote(model_uri: str, params: Params) -> tuple[str, str]:
    """Register `model_uri`, then point the alias at the version with the best held-out accuracy.

    Returns (this version, champion version). Ties keep the older version as champion.
    """
    name, alias = params.tracking.registered_model, params.tracking.alias
    client = MlflowClient()
    with store_lock():
        version = mlflow.register_model(model_uri, name).version
        scores = {}
        for candidate in client.search_model_versions(f"name='{name}'"):
            metrics = client.get_run(candidate.run_id).data.metrics if candidate.run_id else {}
            scores[int(candidate.version)] = metrics.get(TEST_METRIC, float("-inf"))
        champion = max(scores, key=lambda v: (scores[v], -v))
        client.set_registered_model_alias(name, alias, str(champion))
    return str(version), str(champion)


def export_metadata(run_id: str) -> dict | None:
    """The export stage's metadata.json (classes, image size, params) logged with a run, if there is one."""
    try:
        return json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=EXPORT_METADATA))
                          .read_text())
    except Exception:  # no such run or artifact; MLflow raises many types
        return None


def _first_line(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def resolve_model(uri: str, destination: Path) -> dict:
    """Pin an MLflow model URI (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH) to a fixed
    version and run, and download its Keras file to `destination`. Returns what the run recorded:
    registered_model, version, run_id, weights_sha256 and the export metadata (classes, image size, params)."""
    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    name = version = None
    try:
        if uri.startswith("models:/"):
            name, _, alias = uri.removeprefix("models:/").partition("@")
            if alias:
                found = client.get_model_version_by_alias(name, alias)
            else:
                name, _, number = name.partition("/")
                found = client.get_model_version(name, number)
            version, run_id, pinned = str(found.version), found.run_id, f"models:/{name}/{found.version}"
        else:
            run_id, pinned = uri.split("/")[1], uri
        tags = client.get_run(run_id).data.tags
        local = Path(mlflow.artifacts.download_artifacts(pinned))
    except Exception as exc:  # a missing version, alias, run or artifact; MLflow raises many types
        raise NeuroDigitsError(f"train.init_from {uri}: no such model in the MLflow store {tracking_uri()} "
                               f"({_first_line(exc)}); check the name/version or register a model first") from None
    metadata = export_metadata(run_id)
    if metadata is None or not (local / KERAS_IN_MODEL).is_file():
        raise NeuroDigitsError(f"train.init_from {uri}: run {run_id} has no Keras model with {EXPORT_METADATA}; "
                               "give a model exported by this pipeline's export stage")
    destination.write_bytes((local / KERAS_IN_MODEL).read_bytes())
    return {"registered_model": name, "version": version, "run_id": run_id,
            "weights_sha256": tags.get("weights_sha256") or metadata.get("weights_sha256"), "metadata": metadata}
