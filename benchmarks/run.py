"""Measure what the README promises: training speed vs plain Keras, inference speed, and the
accuracy targets of the reference MLP and the CNN. Prints a table; writes JSON and Markdown.

    make bench                        # everything (about 12 minutes on 2 cores)
    python benchmarks/run.py --quick  # speed sections only (about 2 minutes)

Times are medians of repeated runs; each comparison is a ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from conftest import copy_project, run  # noqa: E402

from neurodigits.data import load_dataset, prepare  # noqa: E402
from neurodigits.export import write_formats  # noqa: E402
from neurodigits.inference import TFLitePredictor  # noqa: E402
from neurodigits.models import build_model  # noqa: E402
from neurodigits.params import DataParams, load_params  # noqa: E402
from neurodigits.preprocess import to_model_input  # noqa: E402
from neurodigits.presets import load_presets  # noqa: E402
from neurodigits.training import fit, set_determinism, weights_sha256  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: tracing, compilation, allocation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_gflops() -> float:
    """The machine's practical fp32 limit: a large matmul through TensorFlow's CPU kernels."""
    a = tf.random.normal((2048, 2048))
    seconds = median_time(lambda: tf.linalg.matmul(a, a).numpy(), 5)
    return 2 * 2048**3 / seconds / 1e9


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of Dense and Conv2D layers for one sample (the rest is negligible)."""
    flops = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.Conv2D):
            height, width = layer.output.shape[1:3]
            flops += 2 * height * width * int(np.prod(layer.kernel.shape))
    return flops


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = getattr(self, "times", []) + [time.perf_counter() - self.started]


def train_throughput(kind: str, x: np.ndarray, y: np.ndarray, epochs: int, rounds: int = 3) -> dict:
    """Samples/s of the pipeline's fit against a plain compile + fit with the same hyperparameters: the
    median epoch over `rounds` alternating runs of each, so a slow spell of the machine hits both, and
    the ratio of the fastest epochs, which such spells (they only add time) leave alone."""
    params = load_params(ROOT / "params.yaml")
    model_params = params.model.model_copy(update={"kind": kind})
    train_params = params.train.model_copy(update={"epochs": epochs, "augment": kind == "cnn"})

    def pipeline_fit(model: keras.Model, timer: EpochTimer) -> None:
        fit(model, x, y, train_params, callbacks=[timer], verbose=0)

    def plain_fit(model: keras.Model, timer: EpochTimer) -> None:
        model.compile(optimizer=keras.optimizers.Adam(train_params.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        model.fit(x, y, epochs=epochs, batch_size=train_params.batch_size, shuffle=True, callbacks=[timer], verbose=0)

    def timed(train: Callable[[keras.Model, EpochTimer], None]) -> tuple[keras.Model, list[float]]:
        set_determinism(train_params.seed)
        model, timer = build_model(model_params, train_params, 20, 10), EpochTimer()
        train(model, timer)
        return model, timer.times[1:]  # the first epoch includes tracing and compilation

    pipeline_times, plain_times = [], []
    for _ in range(rounds):
        pipeline_model, times = timed(pipeline_fit)
        pipeline_times += times
        plain_model, times = timed(plain_fit)
        plain_times += times
    pipeline_epoch, plain_epoch = statistics.median(pipeline_times), statistics.median(plain_times)
    flops = 3 * forward_flops(pipeline_model) * len(x) / pipeline_epoch  # forward + backward ~ 3x forward
    return {"model": kind, "pipeline_samples_per_s": round(len(x) / pipeline_epoch),
            "plain_fit_samples_per_s": round(len(x) / plain_epoch),
            "speedup_vs_plain_fit": round(plain_epoch / pipeline_epoch, 2),
            "speedup_fastest_epochs": round(min(plain_times) / min(pipeline_times), 2),
            "same_weights_as_plain_fit": weights_sha256(pipeline_model) == weights_sha256(plain_model),
            "train_gflops": round(flops / 1e9, 2)}


def inference_speed(kind: str, x: np.ndarray, y: np.ndarray) -> dict:
    """Batch images/s and single-image latency for Keras predict, a compiled call and TFLite."""
    params = load_params(ROOT / "params.yaml")
    set_determinism(0)
    model = build_model(params.model.model_copy(update={"kind": kind}), params.train, 20, 10)
    with tempfile.TemporaryDirectory() as tmp:
        write_formats(model, Path(tmp))
        tflite = TFLitePredictor(Path(tmp) / "model.tflite")
        compiled = tf.function(model, jit_compile=True)
        one = x[:1]
        runners = {"keras predict": lambda batch: model.predict(batch, batch_size=1024, verbose=0),
                   "compiled call": lambda batch: compiled(tf.constant(batch)).numpy(),
                   "tflite (LiteRT)": tflite.logits}
        result = {"model": kind}
        for name, predict in runners.items():
            result[f"{name} images/s"] = round(len(x) / median_time(lambda: predict(x), 5))
            result[f"{name} 1-image ms"] = round(1000 * median_time(lambda: predict(one), 50), 3)
        tflite.logits(x)  # back to batch size before the next model
    return result


def pipeline_accuracy(name: str, overrides: list[str], project: Path) -> dict:
    """`dvc exp run -S ...` end to end in a fresh copy of the project: wall time and held-out metrics."""
    project.mkdir(parents=True)
    copy_project(project)
    flags = [arg for override in overrides for arg in ("-S", override)]
    started = time.perf_counter()
    run(["dvc", "exp", "run", *flags], project)
    seconds = time.perf_counter() - started
    metrics = json.loads((project / "reports/metrics.json").read_text())["test"]
    return {"run": name, "command": "dvc exp run " + " ".join(flags), "seconds": round(seconds, 1),
            "test_accuracy": metrics["accuracy"], "misclassified": f"{metrics['misclassified']} / {metrics['n']}"}


def markdown(title: str, rows: list[dict]) -> str:
    header = list(rows[0])
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="speed sections only, no end-to-end runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--keep", type=Path, help="keep the end-to-end projects (and their exports) here")
    args = parser.parse_args()

    prepared = prepare(load_dataset(DataParams()), DataParams())
    x, y = to_model_input(prepared.x_train), prepared.y_train
    results = {"date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}",
               "matmul_gflops": round(matmul_gflops(), 1)}
    print(f"fp32 matmul limit: {results['matmul_gflops']} GFLOP/s", flush=True)
    results["training"] = [train_throughput(kind, x, y, epochs) for kind, epochs in (("mlp", 4), ("cnn", 4))]
    for row in results["training"]:
        row["share_of_matmul_limit"] = f"{100 * row['train_gflops'] / results['matmul_gflops']:.1f}%"
    print(markdown("Training speed", results["training"]), flush=True)
    x_test = to_model_input(prepared.x_test)
    results["inference"] = [inference_speed(kind, x_test, prepared.y_test) for kind in ("mlp", "cnn")]
    print(markdown("Inference speed (1000 test images)", results["inference"]), flush=True)
    if not args.quick:
        runs = {"mlp": ("reference MLP (params.yaml)", [])}
        for name, preset in load_presets().items():
            path = preset.params.get("data", {}).get("path")
            if path and not (ROOT / path).is_dir():
                print(f"skipping preset {name}: its data.path {path} is missing", flush=True)
                continue
            runs[name] = (f"preset {name}: {preset.description}", preset.overrides())
        results["accuracy"] = []
        with tempfile.TemporaryDirectory() as tmp:
            for key, (name, overrides) in runs.items():
                results["accuracy"].append(pipeline_accuracy(name, overrides, (args.keep or Path(tmp)) / key))
                print(markdown("End-to-end accuracy", results["accuracy"][-1:]), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = [f"Measured {results['date']} on {results['machine']}; fp32 matmul limit "
              f"{results['matmul_gflops']} GFLOP/s.\n"]
    report += [markdown(title, results[key]) for title, key in (
        ("Training speed", "training"), ("Inference speed (1000 test images)", "inference"),
        ("End-to-end accuracy", "accuracy")) if key in results]
    (args.out / "results.md").write_text("\n".join(report))
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
