"""MLflow: where the store is, one run per model, lineage tags, the registry and its alias."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing phones home

import mlflow  # noqa: E402
from filelock import FileLock  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from neurodigits import NeuroDigitsError, interrupts  # noqa: E402
from neurodigits.params import Params, project_root  # noqa: E402

TEST_METRIC, TEST_CER = "test_accuracy", "test_cer"  # what ranks registered versions (a line model: CER)
CLASSES_TAG = "classes_sha256"  # fingerprint of a run's class list: versions compete only with the same classes
PID_TAG, HOST_TAG = "process.pid", "process.host"  # who is writing the run: lets the next run spot dead ones
EXPORT_METADATA = "export/metadata.json"  # the export stage logs its metadata.json (classes, params) here
KERAS_IN_MODEL = Path("data") / "model.keras"  # where MLflow's TensorFlow flavor keeps the Keras file


def store_dir() -> Path:
    return project_root() / "mlflow"


def default_tracking_uri() -> str:
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set (a team server: http://host:5050), else the SQLite store under the main repo's
    mlflow/."""
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
        location = (store_dir() / "artifacts").as_uri() if _is_local_store() else None  # a server picks its own
        try:
            return mlflow.create_experiment(name, artifact_location=location)
        except MlflowException:  # another machine created it first
            return mlflow.get_experiment_by_name(name).experiment_id


def start_run(experiment: str, name: str, parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> str:
    """Create a run that outlives a `with` block (a sweep, its trials) and return its id; end it with end_run.
    A child run gets MLflow's `mlflow.parentRunId` tag, so the UI nests it under its parent."""
    tags = {**(tags or {}), **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}
    return MlflowClient(tracking_uri()).create_run(_experiment_id(experiment), run_name=name, tags=tags).info.run_id


def log_run(run_id: str, params: dict | None = None, metrics: dict[str, float] | None = None, step: int = 0,
            tags: dict[str, str] | None = None) -> None:
    """Params, metrics (at `step`) and tags of a run started with start_run, in one write."""
    now = int(time.time() * 1000)
    MlflowClient(tracking_uri()).log_batch(
        run_id, metrics=[Metric(key, float(value), now, step) for key, value in (metrics or {}).items()],
        params=[Param(key, str(value)) for key, value in (params or {}).items()],
        tags=[RunTag(key, str(value)) for key, value in (tags or {}).items()])


def log_file(run_id: str, path: str | Path) -> None:
    MlflowClient(tracking_uri()).log_artifact(run_id, str(path))


def end_run(run_id: str, status: str) -> None:
    """Close a run started with start_run: FINISHED, FAILED or KILLED."""
    MlflowClient(tracking_uri()).set_terminated(run_id, status)


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


def _process_tags() -> dict[str, str]:
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def mark_dead_runs(experiment_id: str) -> list[str]:
    """Runs of this host still RUNNING although their process is gone (SIGKILL, a crash) become KILLED."""
    client = MlflowClient()
    found = client.search_runs([experiment_id], f"attributes.status = 'RUNNING' and "
                                                f"tags.`{HOST_TAG}` = '{socket.gethostname()}'")
    dead = [r.info.run_id for r in found if not _alive(int(r.data.tags.get(PID_TAG, 0)))]
    for run_id in dead:
        client.set_terminated(run_id, "KILLED")
    return dead


@contextlib.contextmanager
def run(params: Params, run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Start the model's run (run_id None) or reopen it; an exception marks it FAILED, Ctrl-C or SIGTERM KILLED.

    A new run first marks this host's runs whose process died without a word (SIGKILL) KILLED.
    """
    experiment_id = _experiment_id(params.tracking.experiment)
    if run_id is None:
        mark_dead_runs(experiment_id)
    else:  # this process owns the run now: tag it before it is RUNNING again
        MlflowClient().set_tag(run_id, PID_TAG, str(os.getpid()))
    with interrupts.catching(), mlflow.start_run(run_id=run_id, experiment_id=experiment_id, tags=_process_tags(),
                                                 run_name=None if run_id else os.environ.get("DVC_EXP_NAME")) as active:
        try:
            yield active
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise


def classes_key(classes: list[str]) -> str:
    """A short fingerprint of a model's class list (its characters, for a line model)."""
    return hashlib.sha256("\n".join(classes).encode()).hexdigest()[:16]


def _score(metrics: dict[str, float]) -> float:
    """Held-out accuracy; for a line model, minus its character error rate; -inf without either."""
    return metrics.get(TEST_METRIC, -metrics.get(TEST_CER, float("inf")))


def best_version(client: MlflowClient, name: str, classes: str) -> tuple[str, str | None]:
    """Among the registered versions reading the classes fingerprinted `classes` (and versions without a
    fingerprint, registered before there was one), the one with the best held-out score, ties to the older;
    and the alias holder's fingerprint, if any."""
    scores, keys = {}, {}
    for candidate in client.search_model_versions(f"name='{name}'"):
        run = client.get_run(candidate.run_id).data if candidate.run_id else None
        keys[str(candidate.version)] = run.tags.get(CLASSES_TAG) if run else None
        if keys[str(candidate.version)] in (None, classes):
            scores[int(candidate.version)] = _score(run.metrics if run else {})
    return str(max(scores, key=lambda v: (scores[v], -v))), keys


def promote_best(client: MlflowClient, name: str, alias: str, classes: str, attempts: int = 50) -> str:
    """Point `alias` at the best version reading the same classes (a model of other classes never takes the
    alias from a champion it cannot stand in for), without a shared lock: re-read after every write until a
    read finds it there. Returns the alias's version.

    Clients on other machines may interleave and write an alias from a stale read, but each one re-reads after its
    own last write. The read that starts last sees every version and no write follows it, so once all clients have
    finished the alias is on the best version.
    """
    for _ in range(attempts):
        best, keys = best_version(client, name, classes)
        try:
            holder = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:  # no such alias yet
            holder = None
        if holder == best or (holder and keys.get(holder) not in (None, classes)):
            return holder
        with contextlib.suppress(MlflowException):  # a concurrent writer won this round: read again
            client.set_registered_model_alias(name, alias, best)
    raise NeuroDigitsError(f"the {alias!r} alias of {name!r} did not settle after {attempts} attempts; "
                           "run the export stage again")


def register_and_promote(model_uri: str, params: Params, classes: list[str]) -> tuple[str, str]:
    """Register `model_uri`, then point the alias at the best version of the same classes (see promote_best).

    Returns (this version, champion version).
    """
    name, alias = params.tracking.registered_model, params.tracking.alias
    client = MlflowClient()
    with store_lock():
        version = mlflow.register_model(model_uri, name).version
        champion = promote_best(client, name, alias, classes_key(classes))
    return str(version), champion


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
