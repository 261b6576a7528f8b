"""Overhead of logging to the team server (mlflow server on PostgreSQL, artifacts proxied) vs the local SQLite store.

One "run" makes the MLflow calls of one pipeline run through `neurodigits.tracking`: train opens the run (params,
lineage tags, 40 epochs of loss/accuracy), evaluate reopens it (test/train metrics, 4 reports, 3 plots), export
reopens it (TFLite + metadata, a logged model, registration and the champion alias). No training: only logging.
Local and server runs alternate, so both see the same machine load; the load average is printed with the result.

    python benchmarks/remote_logging.py --runs 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from neurodigits import tracking
from neurodigits.net import free_port
from neurodigits.params import Params
from neurodigits.team_server import DATABASE, start_mlflow, start_postgres, stop

EPOCHS = 40
ARTIFACT_BYTES = {"reports/metrics.json": 400, "reports/per_class.json": 2_000, "reports/confusion.csv": 1_000,
                  "reports/history.csv": 1_600, "plots/training_curves.png": 60_000,
                  "plots/confusion_matrix.png": 40_000, "plots/misclassified.png": 150_000,
                  "export/model.tflite": 50_000, "export/metadata.json": 3_000}


class Probabilities(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


def one_run(params: Params, files: Path, seed: int) -> float:
    """The pipeline's MLflow calls for one model; returns the wall time in seconds."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with tracking.run(params) as active:
        mlflow.log_params(params.flat())
        mlflow.set_tags(tracking.lineage_tags("0" * 64))
        for epoch in range(1, EPOCHS + 1):
            mlflow.log_metrics({"loss": 1 / epoch, "accuracy": 1 - 1 / (epoch + 1)}, step=epoch)
    run_id = active.info.run_id
    with tracking.run(params, run_id):
        mlflow.log_metrics({"test_accuracy": float(rng.uniform(0.9, 0.95)), "train_accuracy": 0.95})
        for folder in ("reports", "plots"):
            mlflow.log_artifacts(str(files / folder), folder)
    with tracking.run(params, run_id):
        mlflow.log_artifacts(str(files / "export"), "export")
        info = mlflow.pyfunc.log_model(name="model", python_model=Probabilities(), pip_requirements=[])
        tracking.register_and_promote(info.model_uri, params, [str(d) for d in range(10)])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per store (alternating)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="neurodigits-bench-"))
    work.chmod(0o755)  # the postgres user must reach its cluster folder
    files = work / "files"
    for name, size in ARTIFACT_BYTES.items():
        (files / name).parent.mkdir(parents=True, exist_ok=True)
        (files / name).write_bytes(np.random.default_rng(size).bytes(size))
    pg_port, port = free_port(), free_port()
    database = start_postgres(work / "server" / "postgres", pg_port)
    server = None
    try:
        server = start_mlflow(f"postgresql://{DATABASE}@127.0.0.1:{pg_port}/{DATABASE}", work / "server" / "artifacts",
                              "127.0.0.1", port, workers=2)
        stores = {"local SQLite": {"DVC_ROOT": str(work / "local")}, "team server": {
            "DVC_ROOT": str(work / "client"), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}}
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in stores}
        for i in range(args.runs + 1):  # the first round warms up both (experiment, model, connections)
            for name, env in stores.items():
                os.environ.pop("MLFLOW_TRACKING_URI", None)
                os.environ.update(env)
                elapsed = one_run(Params(), files, i)
                if i:
                    times[name].append(elapsed)
        load_after = os.getloadavg()
    finally:
        if server:
            stop(server)
        stop(database, signal.SIGINT)
        shutil.rmtree(work, ignore_errors=True)

    local, remote = (statistics.median(times[name]) for name in stores)
    print(f"per run, median of {args.runs} (MLflow calls of train + evaluate + export, {EPOCHS} epochs, "
          f"{len(ARTIFACT_BYTES)} artifacts of {sum(ARTIFACT_BYTES.values()) // 1000} kB, a registered model):")
    for name in stores:
        print(f"  {name:13s} {statistics.median(times[name]):6.2f} s  (min {min(times[name]):.2f}, "
              f"max {max(times[name]):.2f})")
    print(f"  overhead of the server: {remote - local:+.2f} s per run ({remote / local:.2f}x the local store)")
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
