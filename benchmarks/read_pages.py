"""How `neurodigits read` does on generated pages of held-out handwriting, vs the clean test split.

    python benchmarks/read_pages.py [--model models/export | models:/neurodigits@champion] [--pages 100]
    python benchmarks/read_pages.py --letters ../shared/data/unipen-letters --model <letters export>
    python benchmarks/read_pages.py --specks 1   # dark specks (dust, pencil grain), 1 per 100x100 px of page

Pages come from neurodigits.synth.synthetic_page. Digits: 1-4 lines of 2-7 held-out digits each,
random sizes, spacing, jitter, thin/thick strokes, light noise and shadows. Letters (`--letters`):
1-4 lines of 2-4 random words (the letter-only words of ../shared/data/unipen-lines' test
transcriptions), each character a random image of that letter by the letters' held-out (test)
writers, upper-cased when the model merges case. Character accuracy aligns each line with its truth
by edit distance (spaces left out); a number or word is right when it is read exactly. `boxed_accuracy`
classifies each character cut from the page's ink at its true box: the page's look without the cutting, so
that the gap to the clean split splits into what the page does to a character and what cutting costs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein

from neurodigits import NeuroDigitsError
from neurodigits.data import load_dataset
from neurodigits.inference import Classifier, load_classifier
from neurodigits.page import classify_crops, line_text, read_page
from neurodigits.params import DataParams
from neurodigits.preprocess import ink_map, to_model_input
from neurodigits.synth import Page, clean_accuracy, clean_images, held_out_digits, synthetic_page, with_specks


def score(truth: list[str], read: list[str]) -> tuple[int, int]:
    """(correct characters, correct words or numbers) of one page; missing or extra lines count as empty."""
    read = read + [""] * (len(truth) - len(read))
    chars = sum(max(0, len(t.replace(" ", "")) - Levenshtein.distance(t.replace(" ", ""), r.replace(" ", "")))
                for t, r in zip(truth, read))
    words = sum(a == b for t, r in zip(truth, read) for a, b in zip(t.split(" "), r.split(" ")))
    return chars, words


def boxed_correct(page: Page, classifier: Classifier) -> int:
    """Characters of a page read right when each is cut from the page's ink map at its true box."""
    ink = ink_map(page.image / 255.0)
    truth = [c for line in page.lines for c in line.replace(" ", "")]
    crops = [ink[top:bottom, left:right] for row in page.boxes for top, left, bottom, right in row]
    inked = [i for i, crop in enumerate(crops) if crop.any()]
    labels = classify_crops([crops[i] for i in inked], classifier)
    return sum(p.label == truth[i] for i, p in zip(inked, labels))


def letter_pages(classifier: Classifier, folder: str, rng: np.random.Generator):
    """(clean accuracy on the held-out letters, a function making one page of random words)."""
    dataset = load_dataset(DataParams(source="emnist", path=folder, emnist_split=Path(folder).name))
    merged = not any(name.islower() for name in classifier.classes)
    labels = np.char.upper(dataset.test_labels) if merged else dataset.test_labels
    images = clean_images(classifier, dataset.test_images)
    predicted = np.asarray(classifier.classes)[classifier.probabilities(to_model_input(images)).argmax(1)]
    clean = float((predicted == labels).mean())
    lines = pd.read_csv(Path(folder).parent / "unipen-lines" / "labels.csv", keep_default_na=False)
    vocabulary = sorted({w for text in lines[lines.split == "test"].text for w in text.split()
                         if w.isascii() and w.isalpha() and 2 <= len(w) <= 8})
    by_char = {c: np.flatnonzero(dataset.test_labels == c) for c in np.unique(dataset.test_labels)}

    def page() -> Page:
        text = [" ".join(rng.choice(vocabulary, int(rng.integers(2, 5)))) for _ in range(int(rng.integers(1, 5)))]
        chars = [c for line in text for c in line if c != " "]
        index = [int(rng.choice(by_char[c])) for c in chars]
        return synthetic_page(dataset.test_images[index], [str(labels[i]) for i in index], rng,
                              text=[t.upper() if merged else t for t in text])

    return clean, page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export folder, .tflite file or MLflow URI (default: models/export)")
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--letters", metavar="FOLDER", help="pages of words from this EMNIST-layout letters folder")
    parser.add_argument("--specks", type=float, default=0, help="dark specks of 3-6 px per 100x100 px of page")
    args = parser.parse_args()

    classifier = load_classifier(args.model)
    rng = np.random.default_rng(args.seed)
    if args.letters:
        clean, make_page = letter_pages(classifier, args.letters, rng)
    else:
        clean = clean_accuracy(classifier)
        digits, y, classes = held_out_digits(28)

        def make_page() -> Page:
            order = rng.permutation(len(digits))
            return synthetic_page(digits[order], [classes[i] for i in y[order]], rng)

    n_chars = n_words = right_chars = right_words = boxed = 0
    reading = 0.0
    for _ in range(args.pages):
        page = make_page()
        if args.specks:
            page = with_specks(page, round(args.specks * page.image.size / 1e4), rng)
        started = time.perf_counter()
        try:
            lines = [line_text(line) for line in read_page(page.image / 255.0, classifier)]
        except NeuroDigitsError:
            lines = []
        reading += time.perf_counter() - started
        good_chars, good_words = score(page.lines, lines)
        right_chars, right_words = right_chars + good_chars, right_words + good_words
        boxed += boxed_correct(page, classifier)
        n_chars += sum(len(line.replace(" ", "")) for line in page.lines)
        n_words += sum(len(line.split(" ")) for line in page.lines)
    print(json.dumps({
        "model": classifier.source,
        "clean_test_accuracy": round(clean, 4),
        "character_accuracy": round(right_chars / n_chars, 4),
        "gap_points": round(100 * (clean - right_chars / n_chars), 2),
        "boxed_accuracy": round(boxed / n_chars, 4),
        "word_accuracy" if args.letters else "number_accuracy": round(right_words / n_words, 4),
        "pages": args.pages, "specks_per_10k_px": args.specks, "characters": n_chars,
        "words" if args.letters else "numbers": n_words,
        "ms_per_page": round(1000 * reading / args.pages, 1),  # `read_page` alone
    }, indent=2))


if __name__ == "__main__":
    main()
