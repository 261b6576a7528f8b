"""A tiny trained digit model exported like the pipeline does, and a loopback server runner, for tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from neurodigits.net import answers, stop_server

IMAGE_SIZE = 20
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def train_tiny_model():
    """A 400-32-10 MLP trained for 8 epochs on the embedded training split: logits out."""
    import keras  # noqa: PLC0415 - only tests that need a model pay for TensorFlow

    from neurodigits.data import load_dataset, prepare  # noqa: PLC0415
    from neurodigits.models import build_mlp  # noqa: PLC0415
    from neurodigits.params import DataParams  # noqa: PLC0415
    from neurodigits.preprocess import to_model_input  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    prepared = prepare(load_dataset(DataParams()), DataParams())
    model = build_mlp(IMAGE_SIZE * IMAGE_SIZE, 10, [32])
    model.compile(optimizer=keras.optimizers.Adam(0.003), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(to_model_input(prepared.x_train), prepared.y_train, epochs=8, batch_size=32, verbose=0)
    return model


def export_tiny_model(directory: Path) -> Path:
    """Train the tiny model and write the pipeline's export formats plus metadata.json into `directory`."""
    from neurodigits.export import write_formats  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    write_formats(train_tiny_model(), directory)
    (directory / "metadata.json").write_text(json.dumps({"image_size": IMAGE_SIZE, "classes": list("0123456789")}))
    return directory


def start_server(cmd: list[str], url: str, timeout: float = 90, **env: str) -> subprocess.Popen:
    """Start a server process and wait until `url` answers 200; on failure show its output."""
    process = subprocess.Popen(cmd, env={**ENV, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{' '.join(cmd)} exited {process.returncode}:\n{process.stdout.read()[-4000:]}")
        if answers(url):
            return process
        time.sleep(0.3)
    stop_server(process)
    raise AssertionError(f"{' '.join(cmd)} did not answer {url} within {timeout} s:\n{process.stdout.read()[-4000:]}")


def write_image(path: Path, gray: np.ndarray) -> Path:
    """Save a float [0, 1] grayscale array as PNG or JPEG (by suffix)."""
    from PIL import Image  # noqa: PLC0415

    Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


PYTHON = sys.executable


CHROMIUM = Path("/usr/bin/chromium")


def launch_chromium(playwright):
    """Debian's headless Chromium, offline."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"])


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Pen strokes on the page's canvas: each a list of points, in shares (0-1) of the canvas' width and height."""
    box = page.locator("#canvas").bounding_box()
    for points in strokes:
        page.mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=4)
        page.mouse.up()
