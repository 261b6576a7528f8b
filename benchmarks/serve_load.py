"""Latency and throughput of `neurodigits serve` for single-image predictions on loopback.

    python benchmarks/serve_load.py [--model models/export] [--requests 500] [--concurrency 8] [--max-seconds 60]

Starts the server on a free 127.0.0.1 port, posts realistic photos of held-out digits from
`--concurrency` threads until `--requests` are done or `--max-seconds` pass, then stops it.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np

from neurodigits.synth import held_out_digits, realistic_photo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"server did not start: {url}")


def load(url: str, photos: list[bytes], requests: int, concurrency: int, max_seconds: float) -> dict:
    """Post photos from `concurrency` threads; latencies in ms, throughput in requests/s."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds

    def worker() -> None:
        nonlocal errors
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                response = client.post(url, files={"file": ("digit.jpg", photos[i % len(photos)], "image/jpeg")})
                elapsed = 1000 * (time.perf_counter() - started)
                with lock:
                    latencies.append(elapsed)
                    errors += response.status_code != 200

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors, "concurrency": concurrency,
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
            "requests_per_second": round(len(latencies) / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export folder, .tflite file or MLflow URI (default: models/export)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=60)
    args = parser.parse_args()

    x, _, _ = held_out_digits(28)
    rng = np.random.default_rng(0)
    photos = [realistic_photo(digit, rng) for digit in x[:100]]
    port = free_port()
    cmd = [sys.executable, "-m", "neurodigits.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(cmd + (["--model", args.model] if args.model else []))
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/info", server)
        load(f"http://127.0.0.1:{port}/api/predict", photos, 20, 2, 10)  # warm up
        print(json.dumps(load(f"http://127.0.0.1:{port}/api/predict", photos, args.requests, args.concurrency,
                              args.max_seconds), indent=2))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
