"""Real data for the data-source tests: the embedded MNIST subset and IDX/PNG writers."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from neurodigits.data.sources import load_mnist_5k
from neurodigits.params import DataParams

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


@functools.cache
def embedded() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 embedded MNIST digits, uint8 (5000, 28, 28), and their int labels."""
    dataset = load_mnist_5k(DataParams())
    return dataset.images, dataset.labels


def per_class(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` embedded digits of each class (starting at the class's `offset`-th), grouped by class."""
    images, labels = embedded()
    index = np.concatenate([np.flatnonzero(labels == c)[offset:offset + n] for c in range(10)])
    return images[index], labels[index]


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` as IDX, gzipped when `path` ends in .gz."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def write_idx_set(directory: Path, train: tuple, test: tuple | None = None, prefix: str = "train",
                  suffix: str = ".gz") -> Path:
    """The MNIST file layout (train-*, optionally t10k-*) for (images, labels) pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, pair in ((prefix, train), ("t10k", test)):
        if pair is not None:
            write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", pair[0])
            write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", pair[1])
    return directory


def write_pngs(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str] | None = None) -> Path:
    """A class-per-folder tree of PNGs; every other image inverted (dark ink on white) and upscaled."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / (names[label] if names else str(label))
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(255 - image if i % 2 else image)
        if i % 2:
            picture = picture.resize((56, 56), Image.Resampling.BILINEAR)
        picture.save(folder / f"{i:04d}.png")
    return root


def write_emnist(directory: Path, prefix: str, chars: str, train: tuple, test: tuple,
                 quality: list[str] | None = None) -> Path:
    """The EMNIST layout for (images, labels) pairs of upright images: images stored transposed, labels
    0..len(chars)-1 with `<prefix>-mapping.txt` naming them `chars`; optionally a test meta CSV."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in (("train", train), ("test", test)):
        write_idx(directory / f"{prefix}-{split}-images-idx3-ubyte.gz", np.asarray(images).transpose(0, 2, 1))
        write_idx(directory / f"{prefix}-{split}-labels-idx1-ubyte.gz", np.asarray(labels))
    (directory / f"{prefix}-mapping.txt").write_text("".join(f"{i} {ord(c)}\n" for i, c in enumerate(chars)))
    if quality is not None:
        rows = [f"{i},{chars[label]},writer{i % 3},{q}" for i, (label, q) in enumerate(zip(test[1], quality))]
        (directory / f"{prefix}-test-meta.csv").write_text("index,label,writer,quality\n" + "\n".join(rows) + "\n")
    return directory
