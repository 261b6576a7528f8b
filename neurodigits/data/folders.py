"""The `images` source: one subfolder per class of image files (Keras' directory convention)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from neurodigits import NeuroDigitsError
from neurodigits.data.dataset import Dataset, files_sha256, source_path
from neurodigits.params import DataParams
from neurodigits.preprocess import MNIST_SIZE, load_digit

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def find_images(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (searched recursively, hidden files skipped), classes sorted."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p, root))
    if not folders:
        raise NeuroDigitsError(f"{root}: no class subfolders; put each class's images in its own folder "
                               "(e.g. 0/, 1/, ... 9/)")
    found = {folder.name: sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                                 and p.is_file() and _visible(p, root))
             for folder in folders}
    empty = [name for name, files in found.items() if not files]
    if empty:
        raise NeuroDigitsError(f"{root}: class folders {empty} hold no {'/'.join(IMAGE_SUFFIXES)} images; "
                               "add images or remove those folders")
    return found


def load_images(params: DataParams) -> Dataset:
    """Every image preprocessed MNIST style (polarity, crop, centre) to 28x28; labels are folder names."""
    root = source_path(params)
    found = find_images(root)
    files = [path for paths in found.values() for path in paths]
    names = [name for name, paths in found.items() for _ in paths]
    images = np.stack([load_digit(path, MNIST_SIZE) for path in tqdm(files, desc="images", disable=None)])
    labels = np.array(names)
    if all(name.isdecimal() for name in found):
        labels = labels.astype(np.int64)  # numeric folder names sort numerically: 2 before 10
    return Dataset(images=images, labels=labels, sha256=files_sha256(files, root), description=f"images ({root})")
