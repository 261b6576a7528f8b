"""The `emnist` source: the EMNIST file layout (any split prefix), read from `data.path` or downloaded once.

A split is `<prefix>-{train,test}-{images-idx3,labels-idx1}-ubyte.gz` plus `<prefix>-mapping.txt`
(label, ASCII code[s]); images are stored transposed relative to MNIST. An optional
`<prefix>-test-meta.csv` with a `quality` column flags the test images whose labels were verified.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neurodigits import NeuroDigitsError
from neurodigits.data.dataset import Dataset, files_sha256, source_path
from neurodigits.data.idx import read_idx
from neurodigits.data.mnist import download
from neurodigits.io import atomic_path
from neurodigits.params import DataParams

ARCHIVE = "gzip.zip"
# The official archive (561,753,746 bytes), pinned to the digest TensorFlow Datasets uses.
ARCHIVE_SHA256 = "fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e"
MIRRORS = ("https://biometrics.nist.gov/cs_links/EMNIST/", "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/")
_TRAIN_IMAGES = "-train-images-idx3-ubyte.gz"


def _files(prefix: str) -> list[str]:
    return [f"{prefix}-{split}-{kind}-ubyte.gz" for split in ("train", "test")
            for kind in ("images-idx3", "labels-idx1")] + [f"{prefix}-mapping.txt"]


def _pick(prefixes: list[str], split: str, where: str) -> str:
    """The prefix `split` names (`letters` also matches the official `emnist-letters`)."""
    for prefix in (split, f"emnist-{split}"):
        if prefix in prefixes:
            return prefix
    raise NeuroDigitsError(f"{where}: no EMNIST split '{split}' (found: {', '.join(sorted(prefixes)) or 'none'}); "
                           "set data.emnist_split to one of them")


def read_mapping(path: Path) -> dict[int, str]:
    """`<prefix>-mapping.txt`: label -> character (the first ASCII code of each line)."""
    if not path.is_file():
        raise NeuroDigitsError(f"{path}: not found; an EMNIST split needs its mapping file (label, ASCII code)")
    mapping = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            mapping[int(fields[0])] = chr(int(fields[1]))
        except (ValueError, IndexError, OverflowError):
            raise NeuroDigitsError(f"{path}:{number}: expected 'label ascii_code', got {line!r}; "
                                   "fix the file") from None
    return mapping


def _read(directory: Path, prefix: str, split: str, mapping: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(directory / f"{prefix}-{split}-images-idx3-ubyte.gz", 3)
    labels = read_idx(directory / f"{prefix}-{split}-labels-idx1-ubyte.gz", 1)
    if len(images) != len(labels):
        raise NeuroDigitsError(f"{directory}: {prefix} {split} has {len(images)} images but {len(labels)} labels; "
                               "use files from the same split")
    unknown = sorted(set(np.unique(labels).tolist()) - set(mapping))
    if unknown:
        raise NeuroDigitsError(f"{directory}: {prefix} {split} labels {unknown} are not in {prefix}-mapping.txt; "
                               "use the mapping file of the same split")
    names = np.array([mapping[label] for label in range(max(mapping) + 1)] if mapping else [], dtype="<U1")
    return np.ascontiguousarray(images.transpose(0, 2, 1)), names[labels]


def _quality(path: Path, n: int) -> np.ndarray | None:
    """Per-image label quality from `<prefix>-test-meta.csv` ('OK' = verified), when the file exists."""
    if not path.is_file():
        return None
    quality = pd.read_csv(path, usecols=["quality"], dtype=str, keep_default_na=False)["quality"].to_numpy()
    if len(quality) != n:
        raise NeuroDigitsError(f"{path}: {len(quality)} rows for {n} test images; use the meta file of the same split")
    return quality.astype("<U8")


def load_emnist_folder(directory: Path, split: str) -> Dataset:
    """The EMNIST split `split` in `directory`, upright, labelled with its mapping's characters."""
    prefixes = sorted(p.name.removesuffix(_TRAIN_IMAGES) for p in directory.glob(f"*{_TRAIN_IMAGES}"))
    prefix = _pick(prefixes, split, str(directory))
    paths = [directory / name for name in _files(prefix)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise NeuroDigitsError(f"{directory}: {', '.join(missing)} missing for EMNIST split '{prefix}'; "
                               "add them next to the other files")
    mapping = read_mapping(paths[-1])
    images, labels = _read(directory, prefix, "train", mapping)
    test_images, test_labels = _read(directory, prefix, "test", mapping)
    meta = directory / f"{prefix}-test-meta.csv"
    quality = _quality(meta, len(test_images))
    return Dataset(images=images, labels=labels, test_images=test_images, test_labels=test_labels,
                   test_quality=quality, sha256=files_sha256(paths + ([meta] if quality is not None else [])),
                   description=f"emnist {prefix} ({directory})")


def extract_split(archive: Path, split: str, directory: Path) -> Path:
    """`directory/<prefix>/` holding the split's files from the official zip (members under gzip/), made
    atomically: a complete folder or none."""
    with zipfile.ZipFile(archive) as zf:
        members = {Path(name).name: name for name in zf.namelist() if name.startswith("gzip/")}
        prefixes = [name.removesuffix(_TRAIN_IMAGES) for name in members if name.endswith(_TRAIN_IMAGES)]
        prefix = _pick(prefixes, split, str(archive))
        target = directory / prefix
        if all((target / name).is_file() for name in _files(prefix)):
            return target
        missing = [name for name in _files(prefix) if name not in members]
        if missing:
            raise NeuroDigitsError(f"{archive}: {', '.join(missing)} missing from the archive; delete it to "
                                   "download it again")
        with atomic_path(target) as tmp:
            tmp.mkdir()
            for name in _files(prefix):
                with zf.open(members[name]) as source, open(tmp / name, "wb") as out:
                    shutil.copyfileobj(source, out)
    return target


def load_emnist(params: DataParams, mirrors: Sequence[str] = MIRRORS, sha256: str = ARCHIVE_SHA256) -> Dataset:
    """The EMNIST split `data.emnist_split`: from `data.path` if it holds EMNIST-layout files, else from the
    official archive, downloaded once into `data.cache_dir`."""
    directory = source_path(params) if params.path is not None else None
    if directory is not None and any(directory.glob(f"*{_TRAIN_IMAGES}")):
        return load_emnist_folder(directory, params.emnist_split)
    cache = Path(params.cache_dir).expanduser() / "emnist"
    archive = download(ARCHIVE, cache, sha256, mirrors,
                       manual=f"download {MIRRORS[0]}{ARCHIVE} by hand, unzip it and set data.path to its gzip/ folder")
    return load_emnist_folder(extract_split(archive, params.emnist_split, cache), params.emnist_split)
