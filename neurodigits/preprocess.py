"""Image -> model input, MNIST style. Shared by training, evaluation, export and inference."""

from __future__ import annotations

import numpy as np


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S) images -> float32 (N, S*S) in [0, 1], row-major: what every model takes."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / 255.0
