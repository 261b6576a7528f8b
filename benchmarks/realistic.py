"""How `neurodigits predict` does on realistic photos of held-out digits vs the clean test split.

    python benchmarks/realistic.py [--model models/export | models:/neurodigits@champion] [--variants 2]

Each held-out digit of the embedded set is rendered `--variants` times by neurodigits.synth
(ink on shadowed paper, 16-600 px, blur, noise, JPEG, rotation, thin/thick strokes, both
polarities), then decoded and preprocessed exactly as `predict` does.
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np

from neurodigits import NeuroDigitsError
from neurodigits.inference import classify, load_classifier
from neurodigits.preprocess import load_digit
from neurodigits.synth import clean_accuracy, held_out_digits, realistic_photo


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
    correct = failed = 0
    started = time.perf_counter()
    for digit, label in zip(np.repeat(digits, args.variants, axis=0), np.repeat(y, args.variants)):
        photo = realistic_photo(digit, rng)
        try:
            image = load_digit(io.BytesIO(photo), classifier.image_size)
        except NeuroDigitsError:
            failed += 1
            continue
        correct += classify(classifier, image[None])[0].label == classes[label]
    total = len(y) * args.variants
    realistic = correct / total
    print(json.dumps({
        "model": classifier.source,
        "clean_test_accuracy": round(clean, 4),
        "realistic_accuracy": round(realistic, 4),
        "gap_points": round(100 * (clean - realistic), 2),
        "images": total,
        "unreadable": failed,
        "ms_per_image": round(1000 * (time.perf_counter() - started) / total, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
