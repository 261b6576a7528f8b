"""How `neurodigits read` does on generated pages of held-out digits, vs the clean test split.

    python benchmarks/read_pages.py [--model models/export | models:/neurodigits@champion] [--pages 100]

Pages come from neurodigits.synth.synthetic_page: 1-4 lines of 2-7 held-out digits each, random
sizes, spacing, jitter, thin/thick strokes, light noise and shadows. Digit accuracy aligns each
line with its truth by edit distance; a number is right when its whole line is.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from neurodigits import NeuroDigitsError
from neurodigits.inference import load_classifier
from neurodigits.page import read_page
from neurodigits.synth import clean_accuracy, held_out_digits, synthetic_page


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def score(truth: list[str], read: list[str]) -> tuple[int, int]:
    """(correct digits, correct numbers) of one page; missing or extra lines count as empty."""
    read = read + [""] * (len(truth) - len(read))
    digits = sum(max(0, len(t) - edit_distance(t, r)) for t, r in zip(truth, read))
    return digits, sum(t == r for t, r in zip(truth, read))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export folder, .tflite file or MLflow URI (default: models/export)")
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    classifier = load_classifier(args.model)
    clean = clean_accuracy(classifier)
    digits, y, classes = held_out_digits(28)
    rng = np.random.default_rng(args.seed)
    n_digits = n_numbers = right_digits = right_numbers = 0
    started = time.perf_counter()
    for _ in range(args.pages):
        order = rng.permutation(len(digits))
        page = synthetic_page(digits[order], [classes[i] for i in y[order]], rng)
        try:
            lines = ["".join(d.label for d in line) for line in read_page(page.image / 255.0, classifier)]
        except NeuroDigitsError:
            lines = []
        good_digits, good_numbers = score(page.lines, lines)
        right_digits, right_numbers = right_digits + good_digits, right_numbers + good_numbers
        n_digits, n_numbers = n_digits + sum(map(len, page.lines)), n_numbers + len(page.lines)
    print(json.dumps({
        "model": classifier.source,
        "clean_test_accuracy": round(clean, 4),
        "digit_accuracy": round(right_digits / n_digits, 4),
        "gap_points": round(100 * (clean - right_digits / n_digits), 2),
        "number_accuracy": round(right_numbers / n_numbers, 4),
        "pages": args.pages, "digits": n_digits, "numbers": n_numbers,
        "ms_per_page": round(1000 * (time.perf_counter() - started) / args.pages, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
