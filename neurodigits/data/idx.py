"""The `idx` source: MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST), plain or gzipped."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from neurodigits import NeuroDigitsError
from neurodigits.data.dataset import Dataset, files_sha256, source_path
from neurodigits.params import DataParams

# IDX header: two zero bytes, a type code, the number of dims, then one big-endian uint32 per dim.
_UBYTE = 0x08
_SPLITS = {"train": ("train",), "test": ("t10k", "test")}  # EMNIST names its test files "...-test-..."


def _read_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise NeuroDigitsError(f"{path}: corrupt or truncated file ({exc.__class__.__name__}: {exc}); "
                               "download it again") from None


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with `ndim` dims (3 for images, 1 for labels); the header is validated."""
    path = Path(path)
    data = _read_bytes(path)
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise NeuroDigitsError(f"{path}: only {len(data)} bytes, too short for an IDX header; download it again")
    magic = bytes(data[:4])
    if magic != bytes([0, 0, _UBYTE, ndim]):
        raise NeuroDigitsError(f"{path}: bad IDX magic number 0x{magic.hex()} (expected 0x0000080{ndim}, "
                               f"unsigned bytes in {ndim} dims); is it the right file?")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise NeuroDigitsError(f"{path}: {len(data)} bytes but the header {dims} says {expected}; "
                               "the file is truncated or corrupt, download it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def find_idx(directory: Path, split: str, kind: str) -> Path | None:
    """The one `*<split>-<kind>-idx?-ubyte[.gz]` file in `directory` (kind: images or labels), if any."""
    ndim = 3 if kind == "images" else 1
    matches = sorted(path for prefix in _SPLITS[split]
                     for pattern in (f"*{prefix}-{kind}-idx{ndim}-ubyte", f"*{prefix}-{kind}-idx{ndim}-ubyte.gz")
                     for path in directory.glob(pattern))
    if len(matches) > 1:
        raise NeuroDigitsError(f"{directory}: several {split} {kind} files ({', '.join(p.name for p in matches)}); "
                               "keep one set per folder")
    return matches[0] if matches else None


def _read_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[Path]] | None:
    images_path, labels_path = find_idx(directory, split, "images"), find_idx(directory, split, "labels")
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        missing = "images" if images_path is None else "labels"
        raise NeuroDigitsError(f"{directory}: {split} {missing} file missing "
                               f"(*{_SPLITS[split][0]}-{missing}-idx{3 if missing == 'images' else 1}-ubyte[.gz]); "
                               "add it next to the other one")
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise NeuroDigitsError(f"{directory}: {images_path.name} has {len(images)} images but {labels_path.name} "
                               f"has {len(labels)} labels; use files from the same set")
    return images, labels.astype(np.int64), [images_path, labels_path]


def load_idx_folder(directory: Path, description: str) -> Dataset:
    """Read the train files (required) and the t10k/test files (optional, kept as the test split)."""
    train = _read_split(directory, "train")
    if train is None:
        raise NeuroDigitsError(f"{directory}: no train-images-idx3-ubyte[.gz] / train-labels-idx1-ubyte[.gz]; "
                               "point data.path at the folder holding the IDX files")
    test = _read_split(directory, "test")
    images, labels, paths = train
    test_images, test_labels, test_paths = test if test is not None else (None, None, [])
    return Dataset(images=images, labels=labels, sha256=files_sha256(paths + test_paths),
                   description=description, test_images=test_images, test_labels=test_labels)


def load_idx(params: DataParams) -> Dataset:
    """IDX files in `data.path`."""
    directory = source_path(params)
    return load_idx_folder(directory, f"idx ({directory})")
