"""Hyperparameter sweeps: Ray Tune runs the trials (in-process on this machine's cores, or on a Ray cluster),
Optuna proposes them (seeded), ASHA stops weak ones early, and MLflow records each trial as a child run of one
sweep run. A trial is the train stage in small: the library's build_model and training.fit on the prepared
data, which reaches the workers through Ray's object store. Only the driver writes to the MLflow store, so
workers on other machines need no access to it."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing phones home
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard files: MLflow records
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic progress table, with our columns
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C is ours: stop the trials, mark the runs KILLED

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.result import AUTO_RESULT_KEYS  # noqa: E402

from neurodigits import NeuroDigitsError  # noqa: E402
from neurodigits.data import Prepared, load_prepared  # noqa: E402
from neurodigits.io import write_json  # noqa: E402
from neurodigits.params import SWEEP_LINES, Params, check_sweepable, parse_distribution  # noqa: E402
from neurodigits.presets import Preset  # noqa: E402
from neurodigits.raycluster import LOOPBACK  # noqa: E402

PREPARED_DIR = "data/prepared"
REPORT_FILE = "reports/tune.json"
SCALARS = (str, int, float, bool, type(None))  # what Optuna's categorical choices may hold


def _label(option: Any) -> Any:
    """A choice option as Optuna stores it: scalars as they are, lists as their JSON text."""
    return option if isinstance(option, SCALARS) else json.dumps(option)


def _suggest(distributions: dict[str, tuple[str, list]], trial: Any) -> None:
    for key, (kind, args) in distributions.items():
        if kind == "choice":
            trial.suggest_categorical(key, [_label(option) for option in args])
        elif kind == "int":
            trial.suggest_int(key, *args)
        else:
            trial.suggest_float(key, *args, log=kind == "loguniform")


def search_space(space: dict[str, str]) -> Callable[[Any], None]:
    """tune.space as an Optuna define-by-run function (ints inclusive, loguniform on a log scale); picklable,
    as Ray saves the searcher's state."""
    return functools.partial(_suggest, {key: parse_distribution(text) for key, text in space.items()})


def sampled_values(params: Params, config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config ('section.key' -> value as Optuna proposed it) with list choices decoded."""
    values = {}
    for key, value in config.items():
        kind, args = parse_distribution(params.tune.space[key])
        values[key] = {_label(option): option for option in args}[value] if kind == "choice" else value
    return values


def trial_params(params: Params, values: dict[str, Any]) -> Params:
    """`params` with a trial's sampled values (decoded) and the sweep's validation split."""
    raw = params.model_dump()
    for key, value in values.items():
        section, name = key.split(".", 1)
        raw[section][name] = value
    raw["train"]["validation_fraction"] = params.tune.validation_fraction
    return Params.model_validate(raw)


def reproduce_command(trial: Params, reference: Params) -> str:
    """The `dvc exp run -S ...` command that trains `trial` as a pipeline run, from params.yaml (`reference`)."""
    ours, theirs = trial.model_dump(), reference.model_dump()
    changed = {section: {key: value for key, value in values.items() if theirs[section][key] != value}
               for section, values in ours.items() if section != "tune"}
    return Preset("best", "", {section: values for section, values in changed.items() if values}).command()


def run_trial(config: dict[str, Any], data: Prepared, params: Params) -> None:
    """One trial, in a Ray worker: build_model + training.fit on the prepared data, each epoch reported to Ray;
    the last epoch also reports the held-out accuracy and the weights hash."""
    import keras  # noqa: PLC0415 - TensorFlow only in the workers
    import tensorflow as tf  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    from neurodigits.evaluation import split_metrics  # noqa: PLC0415
    from neurodigits.models import build_model  # noqa: PLC0415
    from neurodigits.preprocess import to_model_input  # noqa: PLC0415
    from neurodigits.training import fit, set_determinism, weights_sha256  # noqa: PLC0415

    context = ray.get_runtime_context()
    threads = max(1, int(context.get_assigned_resources().get("CPU", 1)))
    if tf.config.threading.get_intra_op_parallelism_threads() != threads:  # settable once per worker process,
        tf.config.threading.set_intra_op_parallelism_threads(threads)  # and trials reuse their worker
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    trial = trial_params(params, sampled_values(params, config))
    keras.utils.clear_session()  # the last trial's model and graphs go: same weights as in a fresh process
    set_determinism(trial.train.seed)
    x, x_val, y, y_val = train_test_split(to_model_input(data.x_train), data.y_train,  # as the train stage splits
                                          test_size=trial.train.validation_fraction, stratify=data.y_train,
                                          random_state=trial.train.seed)
    model = build_model(trial.model, trial.train, data.meta["image_size"], len(data.classes))
    node, started = context.get_node_id(), time.perf_counter()

    def report(epoch: int, logs: dict) -> None:
        metrics = {**logs, "epoch": epoch + 1, "train_seconds": time.perf_counter() - started}
        if epoch + 1 == trial.train.epochs:
            test = split_metrics(model.predict(to_model_input(data.x_test), verbose=0), data.y_test, data.classes)
            metrics |= {"test_accuracy": test["accuracy"], "test_misclassified": test["misclassified"],
                        "weights_sha256": weights_sha256(model)}
        tune.report({**metrics, "node_id": node})

    fit(model, x, y, trial.train, (x_val, y_val), callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=report)],
        verbose=0)


class TrialRuns(tune.Callback):
    """Each Ray trial as an MLflow child run of the sweep run: params, per-epoch metrics, node, retries, status.
    It runs in the driver, the one process that writes to the store."""

    def __init__(self, sweep_run_id: str, params: Params):
        from neurodigits import tracking  # noqa: PLC0415 - MLflow in the driver only, not in every trial's worker

        self.tracking, self.sweep_run_id, self.params = tracking, sweep_run_id, params
        self.trials: dict[str, dict] = {}  # Ray trial id -> what tune.json records
        self.started: dict[str, float] = {}
        self.interrupted = False

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        if trial.trial_id not in self.trials:  # else restarted after a failure: same run
            self._open(trial)

    def _open(self, trial: Any) -> None:
        """The trial's MLflow child run and tune.json record."""
        name = f"trial-{len(self.trials) + 1}"
        run_id = self.tracking.start_run(self.params.tracking.experiment, name, self.sweep_run_id,
                                    {"ray_trial_id": trial.trial_id})
        values = sampled_values(self.params, trial.config)
        self.tracking.log_run(run_id, params=trial_params(self.params, values).flat())
        self.trials[trial.trial_id] = {"trial": name, "mlflow_run_id": run_id, "status": "RUNNING", "failures": 0,
                                       "params": values, "epochs": 0, "metrics": {}}
        self.started[trial.trial_id] = time.perf_counter()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info) -> None:
        record = self.trials[trial.trial_id]
        metrics = {key: value for key, value in result.items() if key not in ("epoch", "done")
                   and key not in AUTO_RESULT_KEYS and isinstance(value, int | float)}
        record |= {"epochs": result["epoch"], "node_id": result["node_id"], "metrics": metrics}
        tags = {"ray_node_id": result["node_id"]}
        if "weights_sha256" in result:
            tags["weights_sha256"] = record["weights_sha256"] = result["weights_sha256"]
        self.tracking.log_run(record["mlflow_run_id"], metrics=metrics, step=result["epoch"], tags=tags)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        record = self.trials[trial.trial_id]
        record["failures"] += 1
        self.tracking.log_run(record["mlflow_run_id"], tags={"failures": record["failures"], "error": _error(trial)})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        record = self.trials[trial.trial_id]
        stopped = record["epochs"] < self.params.train.epochs
        self._end(trial.trial_id, "FINISHED", "KILLED" if self.interrupted else "EARLY_STOPPED" if stopped
                  else "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        if trial.trial_id not in self.trials:  # failed before it started (e.g. its worker could not be set up)
            self._open(trial)
        self.trials[trial.trial_id]["error"] = _error(trial)
        self._end(trial.trial_id, "FAILED", "KILLED" if self.interrupted else "FAILED")

    def _end(self, trial_id: str, mlflow_status: str, status: str) -> None:
        record = self.trials[trial_id]
        if record["status"] != "RUNNING":
            return
        record |= {"status": status, "seconds": round(time.perf_counter() - self.started[trial_id], 3)}
        error = {"error": record["error"]} if "error" in record else {}
        self.tracking.log_run(record["mlflow_run_id"], tags={"sweep_status": status, **error})
        self.tracking.end_run(record["mlflow_run_id"], "KILLED" if status == "KILLED" else mlflow_status)

    def close(self, status: str) -> None:
        """End the runs of trials that are still open (an interrupted or broken sweep) with `status`."""
        for trial_id in list(self.trials):
            self._end(trial_id, status, status)


def _error(trial: Any) -> str:
    """The last line of a failed trial's traceback (Ray keeps it in a file of the temporary results folder)."""
    path = Path(trial.error_file or "")
    lines = path.read_text().strip().splitlines() if path.is_file() else []
    return lines[-1][:500] if lines else "unknown error"


class _StopOnInterrupt(tune.Stopper):
    """Ctrl-C: stop every trial and propose no more (a second Ctrl-C raises KeyboardInterrupt at once)."""

    def __init__(self, runs: TrialRuns):
        self.runs = runs

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.runs.interrupted

    def stop_all(self) -> bool:
        return self.runs.interrupted


@contextlib.contextmanager
def _interrupts(runs: TrialRuns) -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        print("\nstopping the sweep (Ctrl-C again to abort at once)", file=sys.stderr)
        runs.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _connect(address: str | None, log_dir: str) -> None:
    """Connect to the Ray cluster at `address` (or RAY_ADDRESS), else start Ray in-process on this machine,
    on loopback, without the dashboard."""
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False,
             # a reused worker waits this long for the last trial's thread to end (Ray's default, 2 s, is too
             # short on a busy machine: the next trial then fails before it starts)
             "runtime_env": {"env_vars": {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "60"}}}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(_temp_dir=log_dir, _node_ip_address=LOOPBACK if sys.platform == "linux" else None, **quiet)


def _best(records: list[dict], params: Params) -> dict | None:
    """The trial with the best tune.metric at its last epoch, among those that ran every epoch (else among all)."""
    scored = [r for r in records if params.tune.metric in r["metrics"]]
    full = [r for r in scored if r["status"] == "FINISHED"] or scored
    if not full:
        return None
    sign = 1 if params.tune.mode == "max" else -1
    return max(full, key=lambda r: sign * r["metrics"][params.tune.metric])


def sweep(params: Params, reference: Params | None = None, trials: int | None = None, address: str | None = None,
          prepared_dir: str | Path = PREPARED_DIR, report_file: str | Path = REPORT_FILE) -> dict:
    """Run the sweep tune.* describes over `params`; write `report_file` and return its content.

    `reference` is what the winner's `dvc exp run -S ...` command starts from (default: `params`)."""
    import optuna  # noqa: PLC0415
    from ray.tune.search.optuna import OptunaSearch  # noqa: PLC0415

    from neurodigits import tracking  # noqa: PLC0415

    if trials is not None:
        params = params.model_copy(update={"tune": params.tune.model_copy(update={"trials": trials})})
    settings = params.tune
    check_sweepable(params)
    if not settings.space:
        raise NeuroDigitsError("params.yaml: 'tune.space' is empty; add params keys with distributions, "
                               "e.g. train.learning_rate: loguniform(1e-4, 1e-2)")
    data = load_prepared(prepared_dir)
    if data.meta.get("task") == "lines":
        raise NeuroDigitsError(f"{prepared_dir} holds text lines (data.source {data.meta['source']}): "
                               + SWEEP_LINES)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # no result files: MLflow
    started = time.time()
    sweep_run_id = tracking.start_run(params.tracking.experiment, f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                                      tags={**tracking.lineage_tags(data.meta["source_sha256"]), "sweep": "true"})
    tracking.log_run(sweep_run_id, params=params.flat())
    runs, status = TrialRuns(sweep_run_id, params), "FAILED"
    with tempfile.TemporaryDirectory(prefix="neurodigits-ray-") as log_dir:
        try:
            _connect(address, log_dir)
            trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, params=params),
                                            {"cpu": settings.cpus_per_trial})
            metrics = {"epoch": "epoch", settings.metric: settings.metric, "test_accuracy": "test_accuracy"}
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric=settings.metric, mode=settings.mode, num_samples=settings.trials,
                    search_alg=OptunaSearch(search_space(settings.space), metric=settings.metric,
                                            mode=settings.mode, seed=settings.seed),
                    scheduler=tune.schedulers.ASHAScheduler(
                        time_attr="epoch", max_t=params.train.epochs,
                        grace_period=min(settings.grace_period, params.train.epochs),
                        reduction_factor=settings.reduction_factor),
                    reuse_actors=True),  # a node's next trial starts in the same process: TensorFlow imported once
                run_config=tune.RunConfig(
                    name="sweep", storage_path=str(Path(log_dir) / "results"), callbacks=[runs], verbose=1,
                    stop=_StopOnInterrupt(runs), failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                    progress_reporter=tune.CLIReporter(metric_columns=metrics, parameter_columns=list(settings.space),
                                                       max_report_frequency=10)))
            with _interrupts(runs):
                tuner.fit()
            status = "KILLED" if runs.interrupted else "FINISHED"
        except KeyboardInterrupt:
            runs.interrupted, status = True, "KILLED"
            raise
        finally:
            runs.close("KILLED" if runs.interrupted else "FAILED")
            ray.shutdown()
            report = _report(runs, params, reference or params, sweep_run_id, status, time.time() - started)
            write_json(report_file, report)
            tracking.log_file(sweep_run_id, report_file)
            best = report["best"]
            if best:
                tracking.log_run(sweep_run_id, metrics={f"best_{settings.metric}": best["metrics"][settings.metric]},
                                 tags={"best_trial_run_id": best["mlflow_run_id"], "best_command": best["command"]})
            tracking.end_run(sweep_run_id, status)
    return report


def _report(runs: TrialRuns, params: Params, reference: Params, sweep_run_id: str, status: str,
            seconds: float) -> dict:
    records = list(runs.trials.values())
    best = _best(records, params)
    if best:
        best = {**best, "command": reproduce_command(trial_params(params, best["params"]), reference)}
    return {"status": status, "sweep_run_id": sweep_run_id, "metric": params.tune.metric, "mode": params.tune.mode,
            "seed": params.tune.seed, "space": params.tune.space, "trials_requested": params.tune.trials,
            "wall_seconds": round(seconds, 3), "trials": records, "best": best}
