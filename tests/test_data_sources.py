"""Every `data.source` on real data: the embedded subset, Fashion-MNIST IDX files, X.npy/y.npy, PNG folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_helpers import FASHION_MNIST, per_class, write_idx_set, write_pngs

from neurodigits import NeuroDigitsError
from neurodigits.data import load_dataset, prepare
from neurodigits.data.arrays import to_uint8
from neurodigits.data.idx import read_idx
from neurodigits.params import DataParams
from neurodigits.preprocess import preprocess_image, resize_images

ROOT = Path(__file__).resolve().parents[1]
needs_fashion = pytest.mark.skipif(not FASHION_MNIST.is_dir(),
                                   reason="apt-get install dataset-fashion-mnist")


def test_embedded_default_prepares_a_stratified_split():
    prepared = prepare(load_dataset(DataParams()), DataParams())
    assert prepared.x_train.shape == (4000, 20, 20) and prepared.x_test.shape == (1000, 20, 20)
    assert prepared.classes == [str(c) for c in range(10)]
    assert np.bincount(prepared.y_test).tolist() == [100] * 10


@needs_fashion
def test_fashion_mnist_full_files_parse_and_keep_the_official_test_split():
    images = read_idx(FASHION_MNIST / "train-images-idx3-ubyte.gz", 3)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    params = DataParams(source="idx", path=str(FASHION_MNIST), limit=1000)
    dataset = load_dataset(params)
    assert dataset.test_images.shape == (10000, 28, 28)
    assert np.bincount(dataset.labels).tolist() == [6000] * 10
    prepared = prepare(dataset, params)
    assert (prepared.meta["n_train"], prepared.meta["n_test"]) == (1000, 10000)
    assert np.bincount(prepared.y_train).tolist() == [100] * 10


@needs_fashion
def test_idx_subset_plain_and_gzipped(tmp_path):
    train = read_idx(FASHION_MNIST / "train-images-idx3-ubyte.gz", 3)[:600], \
        read_idx(FASHION_MNIST / "train-labels-idx1-ubyte.gz", 1)[:600]
    test = read_idx(FASHION_MNIST / "t10k-images-idx3-ubyte.gz", 3)[:100], \
        read_idx(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz", 1)[:100]
    for suffix in (".gz", ""):
        folder = write_idx_set(tmp_path / f"fashion{suffix}", train, test, suffix=suffix)
        dataset = load_dataset(DataParams(source="idx", path=str(folder)))
        np.testing.assert_array_equal(dataset.images, train[0])
        np.testing.assert_array_equal(dataset.test_labels, test[1])
    prepared = prepare(dataset, DataParams(source="idx", path=str(folder), image_size=28))
    assert prepared.x_train.shape == (600, 28, 28) and len(prepared.y_test) == 100


def test_idx_without_test_files_is_split_stratified(tmp_path):
    folder = write_idx_set(tmp_path, per_class(10))
    prepared = prepare(load_dataset(DataParams(source="idx", path=str(folder))), DataParams())
    assert np.bincount(prepared.y_test).tolist() == [2] * 10


def unrolled(images: np.ndarray) -> np.ndarray:
    """The reference's layout: each 20x20 image unrolled column-major, as floats in [0, 1]."""
    small = resize_images(images, 20)
    return small.transpose(0, 2, 1).reshape(len(small), 400) / 255.0


@pytest.mark.parametrize("order", ["F", "C"])
def test_numpy_rows_follow_pixel_order(tmp_path, order):
    images, labels = per_class(10)
    np.save(tmp_path / "X.npy", unrolled(images))
    np.save(tmp_path / "y.npy", labels.reshape(-1, 1).astype(np.float64))
    dataset = load_dataset(DataParams(source="numpy", path=str(tmp_path), pixel_order=order))
    expected = resize_images(images, 20)
    np.testing.assert_array_equal(dataset.images, expected if order == "F" else expected.transpose(0, 2, 1))
    assert dataset.labels.dtype == np.int64 and dataset.labels.tolist() == labels.tolist()


def test_numpy_accepts_n_h_w_and_any_class_names(tmp_path):
    images, labels = per_class(5)
    np.save(tmp_path / "X.npy", images)
    np.save(tmp_path / "y.npy", np.array([3, 7, 12, 40, 100])[labels // 2])
    prepared = prepare(load_dataset(DataParams(source="numpy", path=str(tmp_path))), DataParams(test_fraction=0.5))
    assert prepared.classes == ["3", "7", "12", "40", "100"]  # numeric order, not string order


@pytest.mark.parametrize("values, expected", [
    (np.array([-0.1, 0.0, 0.5, 1.0, 1.1]), [0, 0, 128, 255, 255]),  # reference-style [0, 1] floats
    (np.array([0.0, 127.6, 255.0, 260.0]), [0, 128, 255, 255]),  # 0-255 floats
    (np.array([0, 17, 255], dtype=np.int32), [0, 17, 255]),
    (np.array([False, True]), [0, 255]),
])
def test_pixel_values_become_uint8(values, expected):
    assert to_uint8(values, Path("X.npy")).tolist() == expected


@pytest.mark.parametrize("values", [
    np.array([-3.0, 0.0, 2.5]),  # standardized, not intensities
    np.array([0.0, 400.0]),
    np.array([0, 300]),
    np.array([0.2, np.inf]),
])
def test_pixel_values_out_of_range_are_rejected(values):
    with pytest.raises(NeuroDigitsError, match="X.npy"):
        to_uint8(values, Path("X.npy"))


def test_image_folders_are_preprocessed_mnist_style(tmp_path):
    images, labels = per_class(3)
    root = write_pngs(tmp_path / "digits", images, labels)
    dataset = load_dataset(DataParams(source="images", path=str(root)))
    assert dataset.images.shape == (30, 28, 28) and dataset.labels.tolist() == labels.tolist()
    assert np.median(dataset.images[:, 0, :]) == 0  # inverted inputs came back as bright ink on dark
    prepared = prepare(dataset, DataParams(test_fraction=0.5))
    assert len(prepared.y_test) == 15 and prepared.classes == [str(c) for c in range(10)]


def test_image_folder_names_are_the_classes(tmp_path):
    images, labels = per_class(2)
    keep = labels < 3
    root = write_pngs(tmp_path, images[keep], labels[keep], names=["zero", "one", "two"])
    (tmp_path / ".cache").mkdir()  # hidden folders are not classes
    dataset = load_dataset(DataParams(source="images", path=str(root)))
    assert sorted(set(dataset.labels.tolist())) == ["one", "two", "zero"]


def test_prepare_stage_writes_outputs_for_an_idx_folder(tmp_path):
    write_idx_set(tmp_path / "raw", per_class(10), per_class(2, offset=10))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "idx", "path": "raw"}}))
    result = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "reports" / "data.json").read_text())
    assert (report["n_train"], report["n_test"]) == (100, 20)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["prepared"]  # no temporaries left


def test_preprocess_puts_every_image_through_the_predict_path(tmp_path):
    """data.preprocess: the training and test images are what `predict` makes of each (here: digits stored small
    and off-centre, unlike MNIST's 20 px box); an image it refuses (blank) is kept resized, and counted."""
    images, labels = per_class(6)
    stored = np.zeros_like(images)
    stored[:, 2:16, 10:24] = resize_images(images, 14)
    stored[0] = 0
    np.save(tmp_path / "X.npy", stored)
    np.save(tmp_path / "y.npy", labels)
    params = DataParams(source="numpy", path=str(tmp_path), pixel_order="C", image_size=28, test_fraction=0.5,
                        preprocess=True)
    prepared = prepare(load_dataset(params), params)
    plain = prepare(load_dataset(params), params.model_copy(update={"preprocess": False}))
    assert sum(prepared.meta["preprocess_refused"].values()) == 1
    for raw, got in zip(np.concatenate([plain.x_train, plain.x_test]),
                        np.concatenate([prepared.x_train, prepared.x_test])):
        assert np.array_equal(got, preprocess_image(raw / 255.0, 28) if raw.any() else raw)
    rows = np.arange(28) @ prepared.x_train.sum(axis=2).T / prepared.x_train.sum(axis=(1, 2)).clip(1)
    assert np.abs(rows[prepared.x_train.any(axis=(1, 2))] - 14).max() < 1.5  # centred, as predict centres
    with pytest.raises(ValueError, match="data.preprocess is for single characters"):
        DataParams(source="synthetic-lines", preprocess=True)
