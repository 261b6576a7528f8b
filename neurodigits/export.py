"""Write the trained model as .keras, SavedModel and TFLite, and prove they predict the same."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from neurodigits import NeuroDigitsError
from neurodigits.inference import TFLITE_FILE, TFLitePredictor
from neurodigits.models import load_model
from neurodigits.preprocess import line_widths

KERAS_FILE, SAVED_MODEL_DIR = "model.keras", "saved_model"


def _one_line_at_a_time(model: keras.Model) -> bool:
    """A line model is exported for one line per call, of any width: TFLite's fused LSTM needs a static batch."""
    return model.name == "crnn"


def write_formats(model: keras.Model, directory: Path) -> None:
    """Save the three deployable formats into `directory`."""
    model.save(directory / KERAS_FILE)
    signature = ([tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)] if _one_line_at_a_time(model) else None)
    model.export(directory / SAVED_MODEL_DIR, format="tf_saved_model", verbose=False, input_signature=signature)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(directory / SAVED_MODEL_DIR))
    (directory / TFLITE_FILE).write_bytes(converter.convert())


def format_logits(directory: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of every exported format on `x`, each loaded back from disk."""
    saved_model = tf.saved_model.load(str(directory / SAVED_MODEL_DIR))
    model = load_model(directory / KERAS_FILE)
    tflite = TFLitePredictor(directory / TFLITE_FILE)
    batches = [x[i:i + 1] for i in range(len(x))] if _one_line_at_a_time(model) else [x]
    return {
        "keras": model.predict(x, verbose=0, batch_size=1024),
        "saved_model": np.concatenate([saved_model.serve(tf.constant(b)).numpy() for b in batches]),
        "tflite": np.concatenate([tflite.logits(b) for b in batches]),
    }


def check_parity(reference: np.ndarray, exported: dict[str, np.ndarray], tolerance: float) -> dict[str, float]:
    """Raise unless every format has the reference's argmax and logits within `tolerance`, relative to the
    largest logit when that is over 1 (float error grows with the logits, as over a long line's LSTM steps)."""
    report = {}
    scale = max(1.0, float(np.abs(reference).max()))
    for name, logits in exported.items():
        max_diff = float(np.abs(logits - reference).max())
        disagreements = int((logits.argmax(-1) != reference.argmax(-1)).sum())
        if disagreements or max_diff > tolerance * scale:
            raise NeuroDigitsError(
                f"export: {name} disagrees with the trained model ({disagreements} different predictions, "
                f"max logit diff {max_diff:.2e} > export.logits_tolerance {tolerance:g} x the largest logit "
                f"{scale:.3g}); nothing was exported")
        report[f"{name}_max_logit_diff"] = max_diff
    return report


def parity_lines(lines: np.ndarray, count: int = 32) -> np.ndarray:
    """Float inputs for a line model's parity check: up to `count` lines at one width (a multiple of 4)."""
    lines = lines[:count]
    width = -(-int(line_widths(lines).max()) // 4) * 4
    return lines[:, :, :width].astype(np.float32) / 255.0


def model_signature(model: keras.Model, x: np.ndarray) -> ModelSignature:
    """The MLflow signature: the example's shapes, with every dimension the model leaves open (the batch,
    a line's width) open."""
    y = model.predict(x, verbose=0)
    def spec(array: np.ndarray, shape: tuple) -> Schema:
        return Schema([TensorSpec(array.dtype, tuple(-1 if d is None else d for d in shape))])

    return ModelSignature(inputs=spec(x, model.input_shape), outputs=spec(y, model.output_shape))


def probability_model(model: keras.Model) -> keras.Model:
    """The trained logits model with softmax on top: what the MLflow registry serves."""
    return keras.Sequential([model, keras.layers.Softmax(name="probabilities")], name=f"{model.name}_probabilities")
