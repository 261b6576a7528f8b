"""End-to-end speed of `neurodigits predict` on a folder of realistic photos, against a bare decode loop.

    python benchmarks/predict_speed.py [--model models/export] [--images 2000] [--repeat 5]

Writes `--images` realistic photos of held-out digits (neurodigits.synth: 16-600 px, 70% JPEG, 30% PNG)
to a temporary folder, then times, in the same run and `--repeat` times in turn: a bare loop that only
decodes each file with Pillow and resizes it to 28x28 (one process), and `neurodigits predict --csv` on the
folder (a fresh process, model load included). Prints images/s of both (median and range over the
repeats: one run of about 2 s swings by 5% on a small machine), their ratio, and the accuracy read from
the CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from neurodigits.synth import held_out_digits, realistic_photo

JPEG_MAGIC = b"\xff\xd8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export folder, .tflite file or MLflow URI (default: models/export)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5, help="timings of each, in turn (default 5)")
    args = parser.parse_args()

    x, y, classes = held_out_digits(28)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        truth = {}
        for i in range(args.images):
            photo = realistic_photo(x[i % len(x)], rng)
            suffix = "jpg" if photo.startswith(JPEG_MAGIC) else "png"
            path = Path(folder) / f"{i:05d}.{suffix}"
            path.write_bytes(photo)
            truth[str(path)] = classes[y[i % len(x)]]
        files = sorted(truth)
        out = Path(folder) / "predictions.csv"
        cmd = [sys.executable, "-m", "neurodigits.cli", "predict", "--quiet", "--csv", str(out), folder]
        cmd += ["--model", args.model] if args.model else []
        load_before = os.getloadavg()
        bare, predict = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            for path in files:
                with Image.open(path) as image:
                    image.convert("L").resize((28, 28))
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            predict.append(time.perf_counter() - started)
        with open(out) as f:
            rows = list(csv.DictReader(f))
    rates = {name: len(files) / np.array(times) for name, times in (("bare", bare), ("predict", predict))}
    print(json.dumps({
        "images": len(files), "cores": len(os.sched_getaffinity(0)), "repeats": args.repeat,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "bare_decode_images_per_second": round(float(np.median(rates["bare"])), 1),
        "predict_images_per_second": round(float(np.median(rates["predict"])), 1),
        "predict_images_per_second_range": [round(float(f(rates["predict"])), 1) for f in (np.min, np.max)],
        "predict_over_bare_time": round(float(np.median(predict) / np.median(bare)), 2),
        "accuracy": round(sum(r["label"] == truth[r["file"]] for r in rows) / len(rows), 4),
        "errors": sum(bool(r["error"]) for r in rows),
    }, indent=2))


if __name__ == "__main__":
    main()
