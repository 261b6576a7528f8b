"""Run a trained model on preprocessed digits: the TFLite export through the standalone LiteRT
runtime (no TensorFlow import, fast start), or an MLflow model URI through pyfunc (imported lazily)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import queue
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from neurodigits import NeuroDigitsError
from neurodigits.decoding import Decoder
from neurodigits.preprocess import LINE_WIDTH_STEP, line_steps, to_model_input

EXPORT_DIR = Path("models") / "export"
TFLITE_FILE, METADATA_FILE = "model.tflite", "metadata.json"
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


def trained_on_preprocessed(metadata: dict) -> bool:
    """Whether an export's model was trained and tested on preprocessed images (`data.preprocess`), so its
    held-out figures are on what `predict` makes of an image rather than on the stored images."""
    return bool(metadata.get("params", {}).get("data", {}).get("preprocess", False))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the runtime's C-level "INFO: Created TensorFlow Lite XNNPACK delegate" line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TFLitePredictor:
    """Logits for a batch of flat model inputs, from a .tflite file."""

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._shape: tuple | None = None
        self._lock = threading.Lock()  # one interpreter, many server threads

    @property
    def input_size(self) -> int:
        return int(self._input["shape"][-1])

    @property
    def num_outputs(self) -> int:
        return int(self._output["shape"][-1])

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            if self._shape != x.shape:
                self.interpreter.resize_tensor_input(self._input["index"], list(x.shape))
                with _quiet_stderr():
                    self.interpreter.allocate_tensors()
                self._shape = x.shape
            self.interpreter.set_tensor(self._input["index"], x)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output["index"]).copy()


class Classifier(Protocol):
    """What `predict`, `read` and the server need from a model."""

    image_size: int
    classes: list[str]
    source: str
    preprocessed: bool  # trained and tested on preprocessed images (data.preprocess)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Flat model inputs (N, S*S) -> class probabilities (N, C)."""


class TFLiteClassifier:
    """The TFLite export, with the image size and class names from its metadata.json (if any)."""

    def __init__(self, path: Path, metadata: dict, num_threads: int | None = None) -> None:
        self.source = str(path)
        self.predictor = TFLitePredictor(path, num_threads)
        self.image_size = int(metadata.get("image_size") or math.isqrt(self.predictor.input_size))
        self.classes = [str(c) for c in metadata.get("classes") or range(self.predictor.num_outputs)]
        self.preprocessed = trained_on_preprocessed(metadata)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.predictor.logits(x))


class LineReader:
    """A line model's TFLite export: text line images -> (text, confidence), with the line height, the
    characters and the decoder (greedy, or a beam search with the language model beside it) from its
    metadata.json."""

    def __init__(self, path: Path, metadata: dict, num_threads: int | None = None) -> None:
        self.source = str(path)
        self.predictor = TFLitePredictor(path, num_threads)
        self.image_size, self.classes = int(metadata["image_size"]), [str(c) for c in metadata["classes"]]
        self.decoder = Decoder.for_export(Path(path).parent, metadata)

    def read(self, lines: list[np.ndarray]) -> list[tuple[str, float]]:
        """uint8 (height, W) lines, as `preprocess.line_image` gives them -> (text, confidence) per line."""
        out = []
        for line in lines:
            width = -(-line.shape[1] // LINE_WIDTH_STEP) * LINE_WIDTH_STEP  # as the line was batched in training
            x = np.zeros((1, self.image_size, width), dtype=np.float32)
            x[0, :, :line.shape[1]] = line / 255.0
            out.append(self.decoder.read(line_steps(self.predictor.logits(x), width, line.shape[1])[0]))
        return out


def _mlflow():
    """MLflow, imported lazily (slow; only the MLflow paths need it), pointed at the project's store."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: PLC0415

    from neurodigits import tracking  # noqa: PLC0415

    mlflow.set_tracking_uri(tracking.tracking_uri())
    return mlflow


def _run_export(uri: str) -> tuple[str | None, dict]:
    """The run id of the model at `uri` and the export metadata logged with that run ({} when there is none,
    or the URI cannot be resolved here: MLflowClassifier then says why in one line)."""
    mlflow = _mlflow()
    from neurodigits import tracking  # noqa: PLC0415

    try:
        run_id = mlflow.models.get_model_info(uri).run_id
    except Exception:  # a bad URI or an unreachable store
        return None, {}
    return run_id, (tracking.export_metadata(run_id) if run_id else None) or {}


class MLflowClassifier:
    """A registered (or logged) MLflow model, which outputs probabilities, through pyfunc."""

    def __init__(self, uri: str, metadata: dict) -> None:
        mlflow = _mlflow()
        try:
            self.model = mlflow.pyfunc.load_model(uri)
        except Exception as exc:  # MLflow raises many types for a bad URI or an unreachable store
            raise NeuroDigitsError(f"{uri}: cannot load the MLflow model ({exc.__class__.__name__}: "
                                   f"{str(exc).splitlines()[0][:200]})") from None
        self.source = uri
        width = self.model.metadata.get_input_schema().inputs[0].shape[-1]
        self.image_size = math.isqrt(width)
        self.classes = [str(c) for c in metadata.get("classes") or range(self._num_outputs(width))]
        self.preprocessed = trained_on_preprocessed(metadata)

    def _num_outputs(self, width: int) -> int:
        return self.probabilities(np.zeros((1, width), dtype=np.float32)).shape[-1]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' progress bar would mix into our output
            return np.asarray(self.model.predict(np.asarray(x, dtype=np.float32)), dtype=np.float64)


class BatchingClassifier:
    """A classifier shared by many threads (a server's requests): one thread runs the model, on everything
    that is waiting at once. An idle server answers a lone request straight away; under load, concurrent
    requests share a model call (which pays where a call costs more than an image, as through MLflow),
    and the model is never called from two threads at a time."""

    def __init__(self, classifier: Classifier, max_batch: int = 64) -> None:
        self.classifier, self.max_batch = classifier, max_batch
        self.image_size, self.classes, self.source = classifier.image_size, classifier.classes, classifier.source
        self.preprocessed = classifier.preprocessed
        self._queue: queue.Queue[tuple[np.ndarray, Future]] = queue.Queue()
        threading.Thread(target=self._serve, daemon=True, name="model").start()

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        done: Future = Future()
        self._queue.put((np.asarray(x, dtype=np.float32), done))
        return done.result()

    def _serve(self) -> None:
        while True:
            waiting = [self._queue.get()]
            while len(waiting) < self.max_batch and not self._queue.empty():
                waiting.append(self._queue.get_nowait())
            try:
                out = self.classifier.probabilities(np.concatenate([x for x, _ in waiting]))
            except Exception as exc:  # every waiting request gets the model's error
                for _, done in waiting:
                    done.set_exception(exc)
                continue
            start = 0
            for x, done in waiting:
                done.set_result(out[start:start + len(x)])
                start += len(x)


def default_model() -> Path:
    """models/export under the current folder, else under this project's root."""
    candidates = [Path.cwd() / EXPORT_DIR, Path(__file__).resolve().parents[1] / EXPORT_DIR]
    for candidate in candidates:
        if (candidate / TFLITE_FILE).is_file():
            return candidate
    raise NeuroDigitsError(f"no model in {EXPORT_DIR} (looked in {', '.join(str(c) for c in candidates)}); "
                           "run `dvc repro` first or pass --model")


def load_classifier(model: str | Path | None = None, num_threads: int | None = None) -> Classifier | LineReader:
    """An export folder, a .tflite file, or an MLflow model URI (models:/name/3, models:/name@alias); a line
    model's export gives a LineReader.
    `num_threads` caps the TFLite runtime's threads (default: its own choice)."""
    if model is None:
        model = default_model()
    if str(model).startswith(MLFLOW_SCHEMES):
        run_id, metadata = _run_export(str(model))
        if metadata.get("task") != "lines":
            return MLflowClassifier(str(model), metadata)
        model = _mlflow().artifacts.download_artifacts(run_id=run_id, artifact_path="export")  # its TFLite export
    path = Path(model)
    if path.is_dir():
        path = path / TFLITE_FILE
    if not path.is_file():
        raise NeuroDigitsError(f"{model}: no such model; give an export folder, a .tflite file "
                               "or an MLflow URI like models:/neurodigits@champion")
    metadata_file = path.parent / METADATA_FILE
    metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    if metadata.get("task") == "lines":
        return LineReader(path, metadata, num_threads)
    return TFLiteClassifier(path, metadata, num_threads)


@dataclass(frozen=True)
class Prediction:
    """The most likely class, its probability, and the top classes with theirs."""

    label: str
    probability: float
    top: list[tuple[str, float]]
    probabilities: dict[str, float]


def classify(classifier: Classifier, images: np.ndarray, top: int = 3) -> list[Prediction]:
    """Preprocessed uint8 (N, S, S) digits -> one Prediction each."""
    probabilities = classifier.probabilities(to_model_input(images))
    predictions = []
    for row in probabilities:
        order = np.argsort(row)[::-1]
        ranked = [(classifier.classes[i], float(row[i])) for i in order[:top]]
        predictions.append(Prediction(ranked[0][0], ranked[0][1], ranked,
                                      {name: float(p) for name, p in zip(classifier.classes, row)}))
    return predictions
