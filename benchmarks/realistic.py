"""How `neurodigits predict` does on realistic photos and scans of held-out digits, and on a real
non-MNIST set, vs the clean test split.

    python benchmarks/realistic.py [--model models/export | models:/neurodigits@champion] [--variants 2]

Each held-out digit of the embedded set is rendered `--variants` times by neurodigits.synth as a
photo (ink on shadowed paper, 16-600 px, blur, noise, JPEG, rotation, thin/thick strokes, both
polarities), and once as each kind of scan (tight crop, 16 px, 1-bit, 4-bit, low contrast, thick,
thin, ruled paper, EXIF-rotated). scikit-learn's `load_digits` (UCI optical digits, 8x8, 16 grey
levels, 43 writers) is upscaled to 32x32 and read in both polarities. Every image is decoded and
preprocessed exactly as `predict` does; a refused image counts as wrong.
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
from PIL import Image

from neurodigits.inference import load_classifier
from neurodigits.synth import (
    SCAN_VARIANTS,
    clean_accuracy,
    held_out_digits,
    predict_path_accuracy,
    realistic_photo,
    scan_variant,
    uci_digits,
)


def png(image: np.ndarray, side: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC).save(buffer, "PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export folder, .tflite file or MLflow URI (default: models/export)")
    parser.add_argument("--variants", type=int, default=2, help="photos per held-out digit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    classifier = load_classifier(args.model)
    clean = clean_accuracy(classifier)
    digits, y, classes = held_out_digits(28)
    rng = np.random.default_rng(args.seed)
    sets = {"photos": ([realistic_photo(d, rng) for d in np.repeat(digits, args.variants, axis=0)],
                       np.repeat(y, args.variants))}
    sets.update({variant: ([scan_variant(d, variant, rng) for d in digits], y) for variant in SCAN_VARIANTS})
    uci, uci_y = uci_digits()
    sets["load_digits, dark on light"] = ([png(255 - d, 32) for d in uci], uci_y)
    sets["load_digits, light on dark"] = ([png(d, 32) for d in uci], uci_y)
    results = {"model": classifier.source, "clean_test_accuracy": round(clean, 4), "sets": {}}
    for name, (images, labels) in sets.items():
        started = time.perf_counter()
        accuracy, refused = predict_path_accuracy(classifier, images, labels, [str(i) for i in range(10)]
                                                  if name.startswith("load_digits") else classes)
        results["sets"][name] = {"accuracy": round(accuracy, 4), "gap_points": round(100 * (clean - accuracy), 2),
                                 "images": len(images), "refused": refused,
                                 "ms_per_image": round(1000 * (time.perf_counter() - started) / len(images), 2)}
        print(f"{name:28s} {accuracy:.4f} (clean {clean:.4f}, {refused} refused)", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
