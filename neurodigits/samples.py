"""Teach mode: a user's own labelled samples, one PNG per sample in a folder per class (the layout the
`images` data source reads), so `data.source=images` with `data.path=data/user` trains on them."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from neurodigits import NeuroDigitsError
from neurodigits.io import atomic_path

USER_DIR = Path("data") / "user"
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # a safe folder name on every OS: no dots, slashes, spaces


class BadLabelError(NeuroDigitsError):
    """A label that cannot be a class folder name."""


def check_label(label: str) -> str:
    """The label as a class folder name; one line naming the rule otherwise."""
    if not LABEL.fullmatch(label):
        raise BadLabelError(f"label {label[:40]!r}: use 1-32 letters, digits, '_' or '-', starting with a letter "
                               "or digit (e.g. 7, a, A, my_sign)")
    return label


def save_sample(root: Path, label: str, gray: np.ndarray) -> Path:
    """Write a grayscale [0, 1] image as an 8-bit PNG under a new unique name in root/label/, atomically."""
    path = Path(root) / check_label(label) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.png"
    with atomic_path(path) as tmp:
        Image.fromarray(np.rint(np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(tmp, format="PNG")
    return path


def sample_counts(root: Path) -> dict[str, int]:
    """PNG samples per class folder of `root` (none when it does not exist yet)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {folder.name: len(list(folder.glob("*.png"))) for folder in sorted(root.iterdir())
            if folder.is_dir() and LABEL.fullmatch(folder.name)}
