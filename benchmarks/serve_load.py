"""Requests/s and latency of `neurodigits serve` (TFLite export and MLflow model) and of `mlflow models
serve` (the side-by-side anchor) under concurrent single-image requests on loopback, in one run.

    python benchmarks/serve_load.py [--model models/export] [--registered models:/neurodigits@champion]
                                    [--requests 2000] [--concurrency 8] [--max-seconds 60]

Each server starts on a free 127.0.0.1 port and gets the same realistic photos of held-out digits from
`--concurrency` threads until `--requests` are done or `--max-seconds` pass. `neurodigits serve` gets the
image files; `mlflow models serve` gets the same images preprocessed client-side (the 400 model inputs as
JSON), since it has no image preprocessing. Failed requests (non-200 answers, dropped connections) and a
server that dies are counted and reported, not hidden. Run it from the project root (the MLflow store).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from neurodigits.inference import load_classifier
from neurodigits.net import answers, free_port, stop_server
from neurodigits.preprocess import load_digit, to_model_input
from neurodigits.synth import held_out_digits, realistic_photo
from neurodigits.tracking import tracking_uri

BIN = Path(sys.executable).parent


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if answers(url):
            return True
        time.sleep(0.3)
    return False


def load(send, requests: int, concurrency: int, max_seconds: float) -> dict:
    """Call `send(client, i)` (returns the HTTP status) from `concurrency` threads; latencies in ms of the
    answered requests, throughput in answered requests/s, failures by kind."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    counter = iter(range(requests))
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds

    def worker() -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    status = send(client, i)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = 1000 * (time.perf_counter() - started)
                with lock:
                    if status == 200:
                        latencies.append(elapsed)
                    else:
                        failures[str(status)] = failures.get(str(status), 0) + 1

    started, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    failed = sum(failures.values())
    return {"answered": len(latencies), "failed": failed, "failures": failures, "concurrency": concurrency,
            "seconds": round(wall, 1), "requests_per_second": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(latencies or [0], 50)), 1),
            "p99_ms": round(float(np.percentile(latencies or [0], 99)), 1),
            "answered_share": round(len(latencies) / max(1, len(latencies) + failed), 4),
            "client_cpu_ms_per_request": round(1000 * cpu / max(1, len(latencies) + failed), 2)}  # the load's own cost


def measure(name: str, cmd: list[str], ping: str, send, args: argparse.Namespace) -> dict:
    """Start a server, warm it up, load it, stop it; how it went, its exit code if it died."""
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    log = open(Path(tempfile.gettempdir()) / f"neurodigits_serve_{name}.log", "w")  # noqa: SIM115 - server's lifetime
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(),  # the project's store, for both MLflow servers
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # mlflow runs `uvicorn` from PATH
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_up(base + ping, server):
            return {"server": " ".join(cmd), "error": f"did not start (exit code {server.poll()}); see {log.name}"}
        load(lambda c, i: send(c, base, i), 2 * args.concurrency, args.concurrency, 30)  # warm up
        result = load(lambda c, i: send(c, base, i), args.requests, args.concurrency, args.max_seconds)
        result["server_exit_code"] = server.poll()  # None: still up after the load
        return {"server": " ".join(cmd), **result}
    finally:
        stop_server(server, timeout=20)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export folder or .tflite file (default: models/export)")
    parser.add_argument("--registered", default="models:/neurodigits@champion",
                        help="the registered MLflow model, served by `neurodigits serve` and `mlflow models serve`")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=60)
    parser.add_argument("--skip", nargs="*", default=[], choices=["tflite", "mlflow-path", "mlflow-anchor"])
    args = parser.parse_args()

    x, _, _ = held_out_digits(28)
    rng = np.random.default_rng(0)
    photos = [realistic_photo(digit, rng) for digit in x[:200]]
    size = load_classifier(args.model).image_size
    rows = [to_model_input(load_digit(io.BytesIO(p), size)[None])[0].tolist() for p in photos]

    def upload(client: httpx.Client, base: str, i: int) -> int:
        return client.post(base + "/api/predict", files={"file": ("digit.jpg", photos[i % len(photos)],
                                                                 "image/jpeg")}).status_code

    def invocation(client: httpx.Client, base: str, i: int) -> int:
        return client.post(base + "/invocations", json={"inputs": [rows[i % len(rows)]]}).status_code

    neurodigits = [sys.executable, "-m", "neurodigits.cli", "serve", "--port", "{port}"]
    runs = {
        "tflite": (neurodigits + (["--model", args.model] if args.model else []), "/api/info", upload),
        "mlflow-path": (neurodigits + ["--model", args.registered], "/api/info", upload),
        "mlflow-anchor": ([str(BIN / "mlflow"), "models", "serve", "-m", args.registered, "--env-manager", "local",
                           "-h", "127.0.0.1", "-p", "{port}"], "/ping", invocation),
    }
    results = {"load_average": os.getloadavg(), "cores": os.cpu_count()}
    for name, (cmd, ping, send) in runs.items():
        if name not in args.skip:
            results[name] = measure(name, cmd, ping, send, args)
            print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
