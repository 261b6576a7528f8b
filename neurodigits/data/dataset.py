"""Raw datasets, the prepare step (resize, split) and the prepared-data files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from neurodigits import NeuroDigitsError
from neurodigits.io import atomic_path
from neurodigits.params import DataParams
from neurodigits.preprocess import resize_images


@dataclass(frozen=True)
class Dataset:
    """Images as loaded from a source: uint8 (N, H, W), bright ink on a dark background (MNIST style)."""

    images: np.ndarray
    labels: np.ndarray
    sha256: str
    description: str
    test_images: np.ndarray | None = None  # a source's official test split, if it has one
    test_labels: np.ndarray | None = None


@dataclass(frozen=True)
class Prepared:
    """Model-ready splits: uint8 (N, S, S) images and int class indices into `classes`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    meta: dict


def class_names(*label_arrays: np.ndarray) -> list[str]:
    """The sorted class list found in the data (numeric labels sort numerically)."""
    labels = np.unique(np.concatenate([np.asarray(a).ravel() for a in label_arrays]))
    return [str(label) for label in labels]


def prepare(dataset: Dataset, params: DataParams) -> Prepared:
    """Resize to `image_size`, then split off a stratified test set (or keep the source's own)."""
    images, labels = dataset.images, dataset.labels
    if params.limit is not None and params.limit < len(images):
        images, _, labels, _ = train_test_split(
            images, labels, train_size=params.limit, stratify=labels, random_state=params.seed)
    if dataset.test_images is not None:
        x_train, y_train, x_test, y_test = images, labels, dataset.test_images, dataset.test_labels
    else:
        try:
            x_train, x_test, y_train, y_test = train_test_split(
                images, labels, test_size=params.test_fraction, stratify=labels, random_state=params.seed)
        except ValueError as exc:
            raise NeuroDigitsError(
                f"data: cannot make a stratified split ({exc}); add samples or change data.test_fraction") from None
    classes = class_names(y_train, y_test)
    index = {name: i for i, name in enumerate(classes)}
    to_index = np.vectorize(lambda label: index[str(label)], otypes=[np.int64])
    meta = {
        "source": dataset.description,
        "source_sha256": dataset.sha256,
        "image_size": params.image_size,
        "classes": classes,
        "n_train": len(x_train),
        "n_test": len(x_test),
    }
    return Prepared(resize_images(x_train, params.image_size), to_index(y_train),
                    resize_images(x_test, params.image_size), to_index(y_test), classes, meta)


_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def save_prepared(prepared: Prepared, directory: str | Path) -> None:
    """Write the splits as .npy files (byte-identical for identical data) plus meta.json, atomically."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(prepared, name), allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(prepared.meta, indent=2, sort_keys=True) + "\n")


def load_prepared(directory: str | Path) -> Prepared:
    directory = Path(directory)
    if not (directory / "meta.json").exists():
        raise NeuroDigitsError(f"{directory}: no prepared data; run `dvc repro prepare` first")
    meta = json.loads((directory / "meta.json").read_text())
    arrays = {name: np.load(directory / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
    return Prepared(**arrays, classes=meta["classes"], meta=meta)


def data_report(prepared: Prepared) -> dict:
    """Counts per class per split, and exact-duplicate images shared by train and test."""
    def counts(y: np.ndarray) -> dict[str, int]:
        return {name: int((y == i).sum()) for i, name in enumerate(prepared.classes)}

    train_hashes = {row.tobytes() for row in prepared.x_train.reshape(len(prepared.x_train), -1)}
    overlap = sum(row.tobytes() in train_hashes for row in prepared.x_test.reshape(len(prepared.x_test), -1))
    return {
        "source": prepared.meta["source"],
        "source_sha256": prepared.meta["source_sha256"],
        "image_size": prepared.meta["image_size"],
        "n_train": int(len(prepared.y_train)),
        "n_test": int(len(prepared.y_test)),
        "train_per_class": counts(prepared.y_train),
        "test_per_class": counts(prepared.y_test),
        "train_test_duplicates": int(overlap),
    }
