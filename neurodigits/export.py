"""Write the trained model as .keras, SavedModel and TFLite, and prove they predict the same."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from neurodigits import NeuroDigitsError
from neurodigits.inference import TFLITE_FILE, TFLitePredictor

KERAS_FILE, SAVED_MODEL_DIR = "model.keras", "saved_model"


def write_formats(model: keras.Model, directory: Path) -> None:
    """Save the three deployable formats into `directory`."""
    model.save(directory / KERAS_FILE)
    model.export(directory / SAVED_MODEL_DIR, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(directory / SAVED_MODEL_DIR))
    (directory / TFLITE_FILE).write_bytes(converter.convert())


def format_logits(directory: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of every exported format on `x`, each loaded back from disk."""
    saved_model = tf.saved_model.load(str(directory / SAVED_MODEL_DIR))
    return {
        "keras": keras.saving.load_model(directory / KERAS_FILE).predict(x, verbose=0, batch_size=1024),
        "saved_model": saved_model.serve(tf.constant(x)).numpy(),
        "tflite": TFLitePredictor(directory / TFLITE_FILE).logits(x),
    }


def check_parity(reference: np.ndarray, exported: dict[str, np.ndarray], tolerance: float) -> dict[str, float]:
    """Raise unless every format has the reference's argmax and logits within `tolerance`."""
    report = {}
    for name, logits in exported.items():
        max_diff = float(np.abs(logits - reference).max())
        disagreements = int((logits.argmax(1) != reference.argmax(1)).sum())
        if disagreements or max_diff > tolerance:
            raise NeuroDigitsError(
                f"export: {name} disagrees with the trained model ({disagreements} different predictions, "
                f"max logit diff {max_diff:.2e} > export.logits_tolerance {tolerance:g}); nothing was exported")
        report[f"{name}_max_logit_diff"] = max_diff
    return report


def probability_model(model: keras.Model) -> keras.Model:
    """The trained logits model with softmax on top: what the MLflow registry serves."""
    return keras.Sequential([model, keras.layers.Softmax(name="probabilities")], name=f"{model.name}_probabilities")
