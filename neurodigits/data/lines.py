"""Text lines with transcriptions: a folder of line images plus labels.csv (the IAM-style layout), or
synthetic lines of numbers composed from the embedded digits (offline, the line model's default data).

Every line is normalised by `preprocess.line_image` (the same function `read` uses): bright ink on dark,
`data.line_height` pixels high, aspect kept. A Dataset's images are the lines padded on the right to
one width; its labels are the transcriptions.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from neurodigits import NeuroDigitsError
from neurodigits.data.dataset import Dataset, files_sha256, prepare, source_path
from neurodigits.params import DataParams
from neurodigits.preprocess import fit_line, line_image, pad_lines, read_grayscale

LABELS_FILE = "labels.csv"
SPLITS = ("train", "test")


def _read_labels(root: Path) -> list[dict[str, str]]:
    path = root / LABELS_FILE
    if not path.is_file():
        raise NeuroDigitsError(f"{root}: no {LABELS_FILE}; give a folder of line images with a {LABELS_FILE} of "
                               "file,text[,writer,quality,split] rows")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = {"file", "text"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise NeuroDigitsError(f"{path}: needs the columns file and text (missing: {', '.join(sorted(missing))}), "
                               "one row per line image")
    bad = [row["split"] for row in rows if row.get("split") not in (None, "", *SPLITS)]
    if bad:
        raise NeuroDigitsError(f"{path}: split {bad[0]!r} is not train or test; fix the split column")
    return rows


def _split_rows(rows: list[dict[str, str]], params: DataParams) -> tuple[list[dict], list[dict]]:
    """The csv's own split when it has one; else a seeded split by writer (writer-disjoint) or by line."""
    if all(row.get("split") for row in rows):
        return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "test"]
    rng = np.random.default_rng(params.seed)
    groups = sorted({row.get("writer") or str(i) for i, row in enumerate(rows)})
    test_groups = set(rng.permutation(groups)[:max(1, round(len(groups) * params.test_fraction))])
    test = [(row.get("writer") or str(i)) in test_groups for i, row in enumerate(rows)]
    return [r for r, t in zip(rows, test) if not t], [r for r, t in zip(rows, test) if t]


def _subset(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    if limit is None or limit >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:limit])
    return [rows[i] for i in keep]


def _load_split(root: Path, rows: list[dict], params: DataParams, split: str) -> list[np.ndarray]:
    lines = []
    for row in tqdm(rows, desc=f"{split} lines", disable=None, mininterval=2):
        try:
            lines.append(line_image(read_grayscale(root / row["file"]), params.line_height, params.line_max_width))
        except NeuroDigitsError as exc:
            raise NeuroDigitsError(f"{root / LABELS_FILE}: line {row['file']}: {exc}") from None
    return lines


def load_lines(params: DataParams) -> Dataset:
    """The `lines` source: `data.path` holds labels.csv (file, text, and optionally writer, quality, split)
    and the line images it names. With `data.limit`, a seeded subset of that many training lines (and
    test lines in proportion)."""
    root = source_path(params)
    train, test = _split_rows(_read_labels(root), params)
    if not train or not test:
        raise NeuroDigitsError(f"{root / LABELS_FILE}: no {'train' if not train else 'test'} lines; "
                               "give both splits (or leave the split column empty)")
    if params.limit is not None:
        train, test = (_subset(train, params.limit, params.seed),
                       _subset(test, max(1, round(params.limit * len(test) / len(train))), params.seed))
    lines = pad_lines(_load_split(root, train, params, "train") + _load_split(root, test, params, "test"))
    files = [root / LABELS_FILE, *(root / row["file"] for row in train + test)]
    return Dataset(images=lines[:len(train)], labels=np.array([row["text"] for row in train]),
                   sha256=files_sha256(files, root), description=f"lines ({root})",
                   test_images=lines[len(train):], test_labels=np.array([row["text"] for row in test]),
                   test_quality=np.array([row.get("quality") or "" for row in test]))


def compose_line(digits: list[np.ndarray], text: str, rng: np.random.Generator, height: int,
                 max_width: int) -> np.ndarray:
    """Handwritten-looking digits (28x28, bright on dark), one per non-space character of `text`, set
    side by side as a person writes a number: varied size, spacing and overlap, a wandering baseline, a
    slant; spaces are wider gaps. Returns the line normalised like a real one (`fit_line`)."""
    canvas = np.zeros((48, 40 * len(text) + 40), dtype=np.float32)
    x, baseline = 8, 10 + rng.integers(-2, 3)
    digit_iter = iter(digits)
    for char in text:
        if char == " ":
            x += int(rng.integers(10, 22))
            continue
        digit = next(digit_iter).astype(np.float32) / 255
        cols = np.flatnonzero(digit.max(axis=0) > 0.1)
        digit = digit[:, cols.min():cols.max() + 1]
        scale = rng.uniform(0.8, 1.1)
        shape = (max(8, round(28 * scale)), max(2, round(digit.shape[1] * scale)))
        digit = np.asarray(Image.fromarray(digit, mode="F").resize(shape[::-1], Image.Resampling.BILINEAR))
        baseline = int(np.clip(baseline + rng.integers(-1, 2), 4, 48 - 28 - 4))
        top = baseline + (28 - shape[0]) // 2
        x = max(0, x + int(rng.integers(-3, 5)))  # a negative gap: touching or overlapping digits
        region = canvas[top:top + shape[0], x:x + shape[1]]
        np.maximum(region, digit[:region.shape[0], :region.shape[1]], out=region)
        x += shape[1]
    slant = rng.uniform(-0.25, 0.25)
    slanted = Image.fromarray(canvas, mode="F").transform(
        canvas.shape[::-1], Image.Transform.AFFINE, (1, slant, -slant * 24, 0, 1, 0), Image.Resampling.BILINEAR)
    return fit_line(np.asarray(slanted), height, max_width)


def random_number_text(rng: np.random.Generator) -> str:
    """One to three groups of one to six digits, separated by spaces (a date, an amount, a code)."""
    groups = rng.integers(1, 4)
    return " ".join("".join(str(d) for d in rng.integers(0, 10, rng.integers(1, 7))) for _ in range(groups))


def _compose_split(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator,
                   params: DataParams) -> tuple[list[np.ndarray], list[str]]:
    by_digit = [np.flatnonzero(labels == d) for d in range(10)]
    lines, texts = [], []
    for _ in range(count):
        text = random_number_text(rng)
        digits = [images[rng.choice(by_digit[int(c)])] for c in text if c != " "]
        lines.append(compose_line(digits, text, rng, params.line_height, params.line_max_width))
        texts.append(text)
    return lines, texts


def load_synthetic_lines(params: DataParams) -> Dataset:
    """The `synthetic-lines` source: `data.synthetic_lines` lines of numbers composed from the embedded digits,
    training lines from the training split's digits, test lines from the held-out digits only."""
    from neurodigits.data.sources import load_mnist_5k  # noqa: PLC0415 - sources imports this module

    digit_params = DataParams(seed=params.seed, test_fraction=params.test_fraction, image_size=28)
    embedded = load_mnist_5k(digit_params)
    digits = prepare(embedded, digit_params)
    rng = np.random.default_rng(params.seed)
    n_test = max(1, round(params.synthetic_lines * params.test_fraction))
    train, train_texts = _compose_split(digits.x_train, digits.y_train, params.synthetic_lines - n_test, rng, params)
    test, test_texts = _compose_split(digits.x_test, digits.y_test, n_test, rng, params)
    lines = pad_lines(train + test)
    return Dataset(images=lines[:len(train)], labels=np.array(train_texts), sha256=embedded.sha256,
                   description=f"synthetic-lines ({params.synthetic_lines} numbers from the embedded digits)",
                   test_images=lines[len(train):], test_labels=np.array(test_texts))
