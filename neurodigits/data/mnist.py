"""The `mnist` source: full MNIST (60k train / 10k official test), downloaded once and checksum-verified."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from neurodigits import NeuroDigitsError
from neurodigits.data.dataset import Dataset, source_path
from neurodigits.data.idx import load_idx_folder
from neurodigits.io import sha256_file
from neurodigits.params import DataParams

# Tried in order. yann.lecun.com no longer serves the files reliably, so only mirrors are listed.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# sha256 of the four official files (the same digests torchvision's and TFDS's mirrors are pinned to).
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
TIMEOUT_S = 30


def _fetch(url: str, target: Path, sha256: str) -> None:
    """Stream `url` to a temporary file next to `target`, check its sha256, then rename it into place."""
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part",
                                     delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(partial, "wb") as f, \
                tqdm(total=int(response.headers.get("Content-Length") or 0) or None, unit="B",
                     unit_scale=True, desc=target.name, disable=None) as progress:
            for block in iter(lambda: response.read(1 << 16), b""):
                f.write(block)
                digest.update(block)
                progress.update(len(block))
        if digest.hexdigest() != sha256:
            raise ValueError(f"sha256 mismatch, got {digest.hexdigest()}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def download(filename: str, directory: Path, sha256: str, mirrors: Sequence[str] = MIRRORS,
             manual: str = "download the four MNIST .gz files by hand into a folder and set data.path to it") -> Path:
    """`directory/filename`, downloaded from the first mirror that serves it with the right sha256.

    A verified file already there is reused; nothing unverified is ever left in `directory`. `manual`
    is the fix the error line offers when every mirror fails.
    """
    target = directory / filename
    if target.exists() and sha256_file(target) == sha256:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in (mirror + filename for mirror in mirrors):
        try:
            _fetch(url, target, sha256)
            return target
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = exc.reason if type(exc) is urllib.error.URLError else exc  # drop "<urlopen error ...>"
            failures.append(f"{url} ({' '.join(str(reason).split())})")
    raise NeuroDigitsError(f"cannot download {filename}: {'; '.join(failures)}; expected sha256 {sha256}; "
                           "download the four MNIST .gz files by hand into a folder and set data.path to it")


def _verify_placed(directory: Path, checksums: Mapping[str, str]) -> None:
    for filename, sha256 in checksums.items():
        path = directory / filename
        if not path.exists():
            raise NeuroDigitsError(f"{directory}: no {filename} for data.source 'mnist'; put the four official "
                                   f"MNIST .gz files there (e.g. from {MIRRORS[0]}{filename})")
        actual = sha256_file(path)
        if actual != sha256:
            raise NeuroDigitsError(f"{path}: sha256 {actual} is not the official {sha256}; "
                                   "download it again, or use data.source 'idx' for other IDX files")


def load_mnist(params: DataParams, mirrors: Sequence[str] = MIRRORS,
               checksums: Mapping[str, str] = SHA256) -> Dataset:
    """Full MNIST with its official test split: from `data.path` if it holds MNIST files, else the download cache."""
    directory = source_path(params) if params.path is not None else None
    if directory is not None and any((directory / filename).exists() for filename in checksums):
        _verify_placed(directory, checksums)
    else:
        directory = Path(params.cache_dir).expanduser() / "mnist"
        for filename, sha256 in checksums.items():
            download(filename, directory, sha256, mirrors)
    return load_idx_folder(directory, "mnist (full MNIST, official 60k/10k split)")
