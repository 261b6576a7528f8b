"""Run an exported TFLite model through the standalone LiteRT runtime (no TensorFlow import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class TFLitePredictor:
    """Logits for a batch of flat model inputs, from a .tflite file."""

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = None

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._batch != len(x):
            self.interpreter.resize_tensor_input(self._input["index"], [len(x), *self._input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self._batch = len(x)
        self.interpreter.set_tensor(self._input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"]).copy()
