"""The registered model as MLflow serves it (`mlflow models serve`), and `predict --model models:/...`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_helpers import (
    ENV,
    PYTHON,
    start_server,
    stop_server,
    train_tiny_model,
    write_image,
)

from neurodigits.net import free_port
from neurodigits.preprocess import to_model_input
from neurodigits.synth import held_out_digits

VENV_BIN = Path(PYTHON).parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A SQLite tracking store holding models:/neurodigits/1 (tiny MLP + Softmax), alias champion."""
    import mlflow  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    from neurodigits.export import probability_model  # noqa: PLC0415

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("test", artifact_location=(root / "artifacts").as_uri())
    served = probability_model(train_tiny_model())
    x = to_model_input(held_out_digits(20)[0][:5])
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.tensorflow.log_model(served, name="model", input_example=x[:2],
                                           signature=infer_signature(x, served.predict(x, verbose=0)))
    version = mlflow.register_model(info.model_uri, "neurodigits").version
    mlflow.MlflowClient().set_registered_model_alias("neurodigits", "champion", version)
    mlflow.set_tracking_uri(None)
    return {"MLFLOW_TRACKING_URI": uri, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}


def test_mlflow_models_serve_returns_probabilities(store):
    port = free_port()
    server = start_server([str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/neurodigits/1",
                           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                          f"http://127.0.0.1:{port}/ping", timeout=120, **store)
    try:
        x, y, _ = held_out_digits(20)
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": to_model_input(x[:50]).tolist()},
                              timeout=30)
    finally:
        stop_server(server)
    assert response.status_code == 200, response.text
    probabilities = np.array(response.json()["predictions"])
    assert probabilities.shape == (50, 10) and np.allclose(probabilities.sum(1), 1, atol=1e-4)
    assert (probabilities.argmax(1) == y[:50]).mean() > 0.7


@pytest.mark.parametrize("uri", ["models:/neurodigits/1", "models:/neurodigits@champion"])
def test_predict_with_a_registered_model(store, uri, tmp_path):
    x, y, classes = held_out_digits(28)
    path = write_image(tmp_path / "digit.png", 1 - x[0] / 255.0)
    result = subprocess.run([PYTHON, "-m", "neurodigits.cli", "predict", "--model", uri, str(path)],
                            capture_output=True, text=True, env={**ENV, **store})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"{path}: ") and "top-3: " in result.stdout


def test_neurodigits_serve_holds_concurrent_clients_on_a_registered_model(store):
    """The MLflow path of `neurodigits serve` (one TensorFlow model, shared by all request threads):
    8 clients at once, every request answered."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from neurodigits.synth import realistic_photo  # noqa: PLC0415

    x, _, _ = held_out_digits(28)
    rng = np.random.default_rng(0)
    photos = [realistic_photo(d, rng) for d in x[:8]]
    port = free_port()
    server = start_server([PYTHON, "-m", "neurodigits.cli", "serve", "--model", "models:/neurodigits@champion",
                           "--port", str(port)], f"http://127.0.0.1:{port}/api/info", timeout=180, **store)

    def client(photo: bytes) -> list[int]:
        with httpx.Client(timeout=60) as http:
            return [http.post(f"http://127.0.0.1:{port}/api/predict",
                              files={"file": ("d.jpg", photo, "image/jpeg")}).status_code for _ in range(4)]

    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = [s for result in pool.map(client, photos) for s in result]
        alive = server.poll() is None
    finally:
        stop_server(server)
    assert statuses == [200] * 32 and alive
