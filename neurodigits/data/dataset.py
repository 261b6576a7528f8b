"""Raw datasets, the prepare step (resize, split) and the prepared-data files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from neurodigits import NeuroDigitsError
from neurodigits.io import atomic_path, sha256_file
from neurodigits.params import PARAMS_FILE, DataParams, project_root, resolve_path
from neurodigits.preprocess import LINE_WIDTH_STEP, line_widths, load_images, pad_lines, resize_images

DOWNSAMPLE = 4  # a line model predicts one character (or blank) per at most this many pixel columns (model.downsample)


@dataclass(frozen=True)
class Dataset:
    """Images as loaded from a source: uint8 (N, H, W), bright ink on a dark background (MNIST style)."""

    images: np.ndarray
    labels: np.ndarray
    sha256: str
    description: str
    test_images: np.ndarray | None = None  # a source's official test split, if it has one
    test_labels: np.ndarray | None = None
    test_quality: np.ndarray | None = None  # per test image label quality ("OK": verified), if the source has it


@dataclass(frozen=True)
class Prepared:
    """Model-ready splits: uint8 (N, S, S) images and int class indices into `classes`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    meta: dict
    quality_test: np.ndarray | None = None  # str per test image ("OK", "?", "" unknown), if a source flags quality


def class_names(*label_arrays: np.ndarray) -> list[str]:
    """The sorted class list found in the data (numeric labels sort numerically)."""
    labels = np.unique(np.concatenate([np.asarray(a).ravel() for a in label_arrays]))
    return [str(label) for label in labels]


def source_path(params: DataParams) -> Path:
    """`data.path` as an existing folder; one line naming the fix when it is unset or missing."""
    if params.path is None:
        raise NeuroDigitsError(f"{PARAMS_FILE}: 'data.path' is required for data.source '{params.source}'; "
                               "set it to the folder holding the data")
    path = resolve_path(params.path)
    if not path.is_dir():
        raise NeuroDigitsError(f"{PARAMS_FILE}: 'data.path' {params.path!r} is not an existing folder "
                               f"(relative paths start at the project root {project_root()}); fix data.path")
    return path


def files_sha256(paths: Iterable[Path], root: Path | None = None) -> str:
    """One digest over files' names (relative to `root`, else base names) and contents."""
    digest = hashlib.sha256()
    for path in paths:
        name = path.relative_to(root).as_posix() if root else path.name
        digest.update(f"{name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _check_split(images: np.ndarray, labels: np.ndarray, split: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        raise NeuroDigitsError(f"data: {split} images must be uint8 (N, H, W), got "
                               f"{getattr(images, 'dtype', type(images).__name__)} {np.shape(images)}; fix the source")
    if min(images.shape[1:]) < 8:
        raise NeuroDigitsError(f"data: {split} images are {images.shape[1]}x{images.shape[2]}, under 8x8 pixels; "
                               "check the data (or data.pixel_order)")
    if np.ndim(labels) != 1 or len(labels) != len(images):
        raise NeuroDigitsError(f"data: {len(images)} {split} images but labels of shape {np.shape(labels)}; "
                               "give one label per image")
    dtype = np.asarray(labels).dtype
    if dtype.kind not in "iuU":
        raise NeuroDigitsError(f"data: {split} labels must be integers or strings, got {dtype}; fix the source")
    if len(images) == 0:
        raise NeuroDigitsError(f"data: no {split} images; check data.path")


def validate_dataset(dataset: Dataset) -> None:
    """Check shapes, dtypes, labels and class counts before any work; one line naming the fix."""
    _check_split(dataset.images, dataset.labels, "train")
    if (dataset.test_images is None) != (dataset.test_labels is None):
        raise NeuroDigitsError("data: test images without test labels (or the reverse); give both or neither")
    classes, counts = np.unique(dataset.labels, return_counts=True)
    if len(classes) < 2:
        raise NeuroDigitsError(f"data: only one class ({classes[0]!s}); a classifier needs at least two")
    if dataset.test_images is None:
        few = classes[counts < 2]  # a stratified split puts at least one image of each class on each side
        if len(few):
            raise NeuroDigitsError(f"data: classes {few.tolist()} have fewer than 2 images, too few for a "
                                   "stratified split; add images or remove those classes")
        return
    _check_split(dataset.test_images, dataset.test_labels, "test")
    if dataset.test_images.shape[1:] != dataset.images.shape[1:]:
        raise NeuroDigitsError(f"data: test images are {dataset.test_images.shape[1:]} but train images are "
                               f"{dataset.images.shape[1:]}; use one image size")
    unseen = np.setdiff1d(dataset.test_labels, classes)
    if len(unseen):
        raise NeuroDigitsError(f"data: test classes {unseen.tolist()} have no training images; "
                               "add training images for them")


def _stratified_split(images: np.ndarray, labels: np.ndarray, seed: int, **size) -> list[np.ndarray]:
    try:
        return train_test_split(images, labels, stratify=labels, random_state=seed, **size)
    except ValueError as exc:
        raise NeuroDigitsError(f"data: cannot make a stratified split ({exc}); "
                               "add samples or change data.limit / data.test_fraction") from None


def _split(dataset: Dataset, params: DataParams) -> tuple[np.ndarray, ...]:
    """One source's (x_train, y_train, x_test, y_test, quality_test): a stratified test split, or its own."""
    validate_dataset(dataset)
    images, labels = dataset.images, dataset.labels
    if params.limit is not None and params.limit < len(images):
        images, _, labels, _ = _stratified_split(images, labels, params.seed, train_size=params.limit)
    if dataset.test_images is not None:
        quality = dataset.test_quality if dataset.test_quality is not None else np.full(len(dataset.test_labels), "")
        return images, labels, dataset.test_images, dataset.test_labels, quality
    x_train, x_test, y_train, y_test = _stratified_split(images, labels, params.seed, test_size=params.test_fraction)
    return x_train, y_train, x_test, y_test, np.full(len(y_test), "")


def fold_case(labels: np.ndarray) -> np.ndarray:
    """Character labels with upper and lower case folded into one class (named by the upper case)."""
    return np.char.upper(labels) if labels.dtype.kind == "U" else labels


def source_names(params: DataParams) -> list[str]:
    """A short unique name per source (`emnist`, or `emnist-2` for a second one), for metrics."""
    names = [p.source for p in params.sources()]
    return [name if names.count(name) == 1 else f"{name}-{i}" for i, name in enumerate(names, start=1)]


def model_images(images: np.ndarray, params: DataParams) -> tuple[np.ndarray, int]:
    """A source's images at `data.image_size`: resized, or with `data.preprocess` each put through the
    preprocessing `predict`, `read` and `serve` apply (the model then trains on what it sees in use); an image
    it refuses (no ink) is kept resized. Also returns how many were refused."""
    if not params.preprocess or not len(images):
        return resize_images(images, params.image_size), 0
    results = list(tqdm(load_images(list(images), params.image_size), total=len(images), desc="preprocess",
                        unit="img", disable=None))
    refused = [i for i, result in enumerate(results) if isinstance(result, NeuroDigitsError)]
    for i in refused:
        results[i] = resize_images(images[i:i + 1], params.image_size)[0]
    return np.stack(results), len(refused)


def prepare(datasets: Dataset | Sequence[Dataset], params: DataParams) -> Prepared:
    """Per source: validate, split off a stratified test set (or keep the source's own); then the union
    of the classes, images resized to `image_size` (or preprocessed: `model_images`). `datasets` follow
    `params.sources()`."""
    datasets = [datasets] if isinstance(datasets, Dataset) else list(datasets)
    if params.task == "lines":
        return prepare_lines(datasets, params)
    parts = [_split(dataset, source) for dataset, source in zip(datasets, params.sources(), strict=True)]
    mixed = len(parts) > 1 and len({part[1].dtype.kind for part in parts}) > 1
    x_train, y_train, x_test, y_test, quality = (
        [part[i] for part in parts] for i in range(5))
    if mixed:  # digits (int) and characters (str): one class list of strings
        y_train, y_test = [y.astype(str) for y in y_train], [y.astype(str) for y in y_test]
    if params.case == "merge":
        y_train, y_test = [fold_case(y) for y in y_train], [fold_case(y) for y in y_test]
    classes = class_names(*y_train, *y_test)
    index = {name: i for i, name in enumerate(classes)}
    to_index = np.vectorize(lambda label: index[str(label)], otypes=[np.int64])
    sources = [{"name": name, "source": dataset.description, "sha256": dataset.sha256,
                "n_train": len(train), "n_test": len(test)}
               for name, dataset, train, test in zip(source_names(params), datasets, y_train, y_test)]
    sha256 = datasets[0].sha256 if len(datasets) == 1 else hashlib.sha256(
        "\n".join(d.sha256 for d in datasets).encode()).hexdigest()
    meta = {
        "source": " + ".join(d.description for d in datasets),
        "source_sha256": sha256,
        "sources": sources,
        "image_size": params.image_size,
        "classes": classes,
        "n_train": sum(len(y) for y in y_train),
        "n_test": sum(len(y) for y in y_test),
    }
    quality = np.concatenate(quality)
    (x_train, refused_train), (x_test, refused_test) = (model_images(np.concatenate(x), params)
                                                        for x in (x_train, x_test))
    if params.preprocess:
        meta["preprocess_refused"] = {"train": refused_train, "test": refused_test}
    return Prepared(x_train, to_index(np.concatenate(y_train)), x_test, to_index(np.concatenate(y_test)), classes,
                    meta, quality.astype("<U8") if (quality != "").any() else None)


def encode_texts(texts: Sequence[str], classes: list[str]) -> np.ndarray:
    """Transcriptions -> int (N, longest) label rows for CTC: character i of `classes` is i + 1, 0 pads
    (and is the blank the model predicts between characters)."""
    index = {char: i + 1 for i, char in enumerate(classes)}
    out = np.zeros((len(texts), max(1, max(len(t) for t in texts))), dtype=np.int64)
    for row, text in zip(out, texts):
        row[:len(text)] = [index[c] for c in text]
    return out


def decode_labels(rows: np.ndarray, classes: list[str]) -> list[str]:
    """The inverse of `encode_texts`."""
    return ["".join(classes[i - 1] for i in row if i) for row in rows]


def ctc_fits(text: str, width: int) -> bool:
    """Whether a line `width` pixels wide has enough model steps for `text` (CTC needs one per character and
    a blank between repeated ones)."""
    repeats = sum(a == b for a, b in zip(text, text[1:]))
    return len(text) + repeats <= width // DOWNSAMPLE


def prepare_lines(datasets: Sequence[Dataset], params: DataParams) -> Prepared:
    """Text lines: the classes are the characters of the transcriptions; labels are encoded for CTC; lines
    too narrow for their text (a label-noise sign) are dropped from training; lines padded to one width."""
    x_train, y_train, x_test, y_test, quality = [], [], [], [], []
    for dataset in datasets:
        texts = [str(t) for t in dataset.labels]
        if not texts or any(not t.strip() for t in texts):
            raise NeuroDigitsError(f"data: {dataset.description}: every line needs a transcription "
                                   "(empty text found); fix the labels")
        fits = np.array([ctc_fits(t, w) for t, w in zip(texts, line_widths(dataset.images))])
        x_train.append(dataset.images[fits])
        y_train += [t for t, ok in zip(texts, fits) if ok]
        x_test.append(dataset.test_images)
        y_test += [str(t) for t in dataset.test_labels]
        quality.append(dataset.test_quality if dataset.test_quality is not None
                       else np.full(len(dataset.test_labels), ""))
    classes = sorted(set("".join(y_train + y_test)))
    width = -(-max(x.shape[2] for x in x_train + x_test) // LINE_WIDTH_STEP) * LINE_WIDTH_STEP
    quality = np.concatenate(quality)
    sources = [{"name": name, "source": d.description, "sha256": d.sha256,
                "n_train": len(x), "n_test": len(d.test_labels), "dropped_too_narrow": int(len(d.labels) - len(x))}
               for name, d, x in zip(source_names(params), datasets, x_train)]
    meta = {"task": "lines", "source": " + ".join(d.description for d in datasets),
            "source_sha256": datasets[0].sha256 if len(datasets) == 1 else hashlib.sha256(
                "\n".join(d.sha256 for d in datasets).encode()).hexdigest(),
            "sources": sources, "line_height": params.line_height, "classes": classes,
            "n_train": len(y_train), "n_test": len(y_test)}
    return Prepared(pad_lines([line for x in x_train for line in x], width), encode_texts(y_train, classes),
                    pad_lines([line for x in x_test for line in x], width), encode_texts(y_test, classes),
                    classes, meta, quality.astype("<U8") if (quality != "").any() else None)


_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_QUALITY = "quality_test"


def save_prepared(prepared: Prepared, directory: str | Path) -> None:
    """Write the splits as .npy files (byte-identical for identical data) plus meta.json, atomically."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(prepared, name), allow_pickle=False)
        if prepared.quality_test is not None:
            np.save(tmp / f"{_QUALITY}.npy", prepared.quality_test, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(prepared.meta, indent=2, sort_keys=True) + "\n")


def load_prepared(directory: str | Path) -> Prepared:
    directory = Path(directory)
    if not (directory / "meta.json").exists():
        raise NeuroDigitsError(f"{directory}: no prepared data; run `dvc repro prepare` first")
    meta = json.loads((directory / "meta.json").read_text())
    arrays = {name: np.load(directory / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
    quality = directory / f"{_QUALITY}.npy"
    return Prepared(**arrays, classes=meta["classes"], meta=meta,
                    quality_test=np.load(quality, allow_pickle=False) if quality.exists() else None)


def data_report(prepared: Prepared) -> dict:
    """Counts per class per split, and exact-duplicate images shared by train and test."""
    if prepared.meta.get("task") == "lines":
        return lines_report(prepared)
    def counts(y: np.ndarray) -> dict[str, int]:
        return {name: int((y == i).sum()) for i, name in enumerate(prepared.classes)}

    train_hashes = {row.tobytes() for row in prepared.x_train.reshape(len(prepared.x_train), -1)}
    overlap = sum(row.tobytes() in train_hashes for row in prepared.x_test.reshape(len(prepared.x_test), -1))
    return {
        "source": prepared.meta["source"],
        "source_sha256": prepared.meta["source_sha256"],
        "sources": prepared.meta["sources"],
        "image_size": prepared.meta["image_size"],
        "n_train": int(len(prepared.y_train)),
        "n_test": int(len(prepared.y_test)),
        "train_per_class": counts(prepared.y_train),
        "test_per_class": counts(prepared.y_test),
        "train_test_duplicates": int(overlap),
    }


def lines_report(prepared: Prepared) -> dict:
    """Line counts, widths and text lengths per split, character counts, duplicated transcriptions."""
    def split(x: np.ndarray, y: np.ndarray) -> dict:
        widths, lengths = line_widths(x), (y > 0).sum(axis=1)
        return {"n": int(len(y)), "median_width": int(np.median(widths)), "max_width": int(widths.max()),
                "median_characters": int(np.median(lengths)), "max_characters": int(lengths.max())}

    train_texts = set(decode_labels(prepared.y_train, prepared.classes))
    counts = np.bincount(prepared.y_train.ravel(), minlength=len(prepared.classes) + 1)[1:]
    return {
        "task": "lines",
        "source": prepared.meta["source"],
        "source_sha256": prepared.meta["source_sha256"],
        "sources": prepared.meta["sources"],
        "line_height": prepared.meta["line_height"],
        "train": split(prepared.x_train, prepared.y_train),
        "test": split(prepared.x_test, prepared.y_test),
        "train_characters": {char: int(n) for char, n in zip(prepared.classes, counts)},
        "test_texts_also_in_train": sum(t in train_texts for t in decode_labels(prepared.y_test, prepared.classes)),
    }
