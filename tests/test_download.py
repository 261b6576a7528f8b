"""The `mnist` and `emnist` downloaders against a real HTTP server on 127.0.0.1 serving real IDX .gz files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
import zipfile

import numpy as np
import pytest
from data_helpers import per_class, write_emnist, write_idx_set

from neurodigits import NeuroDigitsError
from neurodigits.data.emnist import ARCHIVE_SHA256, load_emnist
from neurodigits.data.mnist import SHA256, load_mnist
from neurodigits.params import DataParams


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """(base URL, {filename: sha256}) of a local server holding the four MNIST-named files."""
    root = write_idx_set(tmp_path_factory.mktemp("mirror"), per_class(10), per_class(3, offset=10))
    checksums = {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in SHA256}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", checksums
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_url():
    """A loopback URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_falls_back_to_the_next_mirror_and_caches(tmp_path, mirror, dead_url):
    url, checksums = mirror
    params = DataParams(source="mnist", cache_dir=str(tmp_path))
    dataset = load_mnist(params, mirrors=(dead_url, url), checksums=checksums)
    assert dataset.images.shape == (100, 28, 28) and dataset.test_images.shape == (30, 28, 28)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(SHA256)
    again = load_mnist(params, mirrors=(dead_url,), checksums=checksums)  # verified cache: no network
    np.testing.assert_array_equal(again.images, dataset.images)


def test_bad_checksum_leaves_nothing_in_the_cache(tmp_path, mirror):
    url, checksums = mirror
    wrong = {name: "0" * 64 for name in checksums}
    with pytest.raises(NeuroDigitsError) as error:
        load_mnist(DataParams(source="mnist", cache_dir=str(tmp_path)), mirrors=(url,), checksums=wrong)
    message = str(error.value)
    assert "\n" not in message and "sha256 mismatch" in message
    assert f"{url}train-images-idx3-ubyte.gz" in message and "0" * 64 in message and "data.path" in message
    assert list((tmp_path / "mnist").iterdir()) == []


def test_server_down_names_the_urls_and_the_manual_fix(tmp_path, dead_url):
    with pytest.raises(NeuroDigitsError) as error:
        load_mnist(DataParams(source="mnist", cache_dir=str(tmp_path)), mirrors=(dead_url, dead_url + "b/"))
    message = str(error.value)
    assert "\n" not in message and "Connection refused" in message
    assert f"{dead_url}train-images-idx3-ubyte.gz" in message and f"{dead_url}b/train-images-idx3-ubyte.gz" in message
    assert SHA256["train-images-idx3-ubyte.gz"] in message and "set data.path" in message
    assert list((tmp_path / "mnist").iterdir()) == []


def test_hand_placed_files_are_verified(tmp_path, mirror):
    _, checksums = mirror
    placed = write_idx_set(tmp_path / "placed", per_class(10), per_class(3, offset=10))
    params = DataParams(source="mnist", path=str(placed), cache_dir=str(tmp_path / "cache"))
    assert len(load_mnist(params, mirrors=(), checksums=checksums).labels) == 100
    with pytest.raises(NeuroDigitsError, match="is not the official"):
        load_mnist(params, mirrors=())  # the real MNIST checksums
    assert not (tmp_path / "cache").exists()


@pytest.fixture(scope="module")
def emnist_mirror(tmp_path_factory):
    """(base URL, sha256) of a local server holding a small gzip.zip laid out like the official one."""
    root = tmp_path_factory.mktemp("emnist-mirror")
    split = write_emnist(root / "gzip", "emnist-letters", "ABCDEFGHIJ", per_class(5), per_class(2, offset=5))
    write_emnist(split, "emnist-digits", "0123456789", per_class(3), per_class(1, offset=3))
    with zipfile.ZipFile(root / "gzip.zip", "w") as archive:
        for path in sorted(split.iterdir()):
            archive.write(path, f"gzip/{path.name}")
    sha256 = hashlib.sha256((root / "gzip.zip").read_bytes()).hexdigest()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", sha256
    server.shutdown()
    server.server_close()


def test_emnist_downloads_once_and_extracts_only_the_chosen_split(tmp_path, emnist_mirror, dead_url):
    url, sha256 = emnist_mirror
    params = DataParams(source="emnist", emnist_split="letters", cache_dir=str(tmp_path))
    dataset = load_emnist(params, mirrors=(dead_url, url), sha256=sha256)
    assert dataset.images.shape == (50, 28, 28) and sorted(set(dataset.labels)) == list("ABCDEFGHIJ")
    cache = tmp_path / "emnist"
    assert sorted(p.name for p in cache.iterdir()) == ["emnist-letters", "gzip.zip"]
    assert len(list((cache / "emnist-letters").iterdir())) == 5  # train/test images/labels + mapping
    again = load_emnist(params, mirrors=(dead_url,), sha256=sha256)  # verified cache: no network
    np.testing.assert_array_equal(again.images, dataset.images)


def test_emnist_bad_checksum_or_no_server_leaves_nothing(tmp_path, emnist_mirror, dead_url):
    url, _ = emnist_mirror
    params = DataParams(source="emnist", cache_dir=str(tmp_path))
    with pytest.raises(NeuroDigitsError) as error:
        load_emnist(params, mirrors=(url,), sha256="0" * 64)
    message = str(error.value)
    assert "\n" not in message and "sha256 mismatch" in message and f"{url}gzip.zip" in message
    with pytest.raises(NeuroDigitsError) as error:
        load_emnist(params, mirrors=(dead_url,))
    message = str(error.value)
    assert "\n" not in message and "Connection refused" in message and ARCHIVE_SHA256 in message
    assert "set data.path" in message
    assert list((tmp_path / "emnist").iterdir()) == []
