"""Bad params and bad data stop the prepare stage with one line on stderr, exit 1 and no outputs."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_helpers import idx_bytes, per_class, write_idx, write_idx_set, write_pngs

from neurodigits import NeuroDigitsError
from stages import DATA_REPORT, PREPARED_DIR, run_stage
from stages.prepare import main as prepare_main

ROOT = Path(__file__).resolve().parents[1]


def idx_folder(root: Path) -> Path:
    return write_idx_set(root / "raw", per_class(5))


def truncated_idx(root: Path) -> None:
    folder = write_idx_set(root / "raw", per_class(5), suffix="")
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])


def truncated_gz(root: Path) -> None:
    path = idx_folder(root) / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-500])


def wrong_magic(root: Path) -> None:
    data = bytearray(idx_bytes(per_class(5)[0]))
    data[3] = 1
    (idx_folder(root) / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(data)))


def corrupt_gz(root: Path) -> None:
    (idx_folder(root) / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not deflate data")


def idx_count_mismatch(root: Path) -> None:
    write_idx(idx_folder(root) / "train-labels-idx1-ubyte.gz", per_class(5)[1][:-1])


def unseen_test_class(root: Path) -> None:
    images, labels = per_class(5)
    write_idx_set(root / "raw", (images[labels < 9], labels[labels < 9]), per_class(2, offset=5))


def undecodable_png(root: Path) -> None:
    write_pngs(root / "raw", *per_class(2))
    (root / "raw" / "3" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def empty_class_folder(root: Path) -> None:
    write_pngs(root / "raw", *per_class(2))
    (root / "raw" / "extra").mkdir()


def arrays(root: Path, x: np.ndarray, y: np.ndarray) -> None:
    (root / "raw").mkdir()
    np.save(root / "raw" / "X.npy", x)
    np.save(root / "raw" / "y.npy", y)


def nan_pixels(root: Path) -> None:
    x = per_class(5)[0].reshape(50, -1) / 255.0
    x[7, 100] = np.nan
    arrays(root, x, per_class(5)[1])


def xy_length_mismatch(root: Path) -> None:
    arrays(root, per_class(5)[0], per_class(5)[1][:-3])


def class_with_one_image(root: Path) -> None:
    images, labels = per_class(5)
    arrays(root, images[4:], labels[4:])


def one_class(root: Path) -> None:
    arrays(root, per_class(5)[0], np.zeros(50, dtype=np.int64))


IDX, NUMPY, IMAGES = ({"source": source, "path": "raw"} for source in ("idx", "numpy", "images"))

CASES = {
    "unknown key": ({"data": {"sourc": "idx"}}, None, "unknown key 'data.sourc'; did you mean 'data.source'?"),
    "wrong type": ({"train": {"epochs": "ten"}}, None, "'train.epochs' input should be a valid integer"),
    "zero epochs": ({"train": {"epochs": 0}}, None, "'train.epochs' input should be greater than 0"),
    "zero learning rate": ({"train": {"learning_rate": 0}}, None, "'train.learning_rate' input should be greater"),
    "test fraction above 1": ({"data": {"test_fraction": 1.5}}, None, "'data.test_fraction' input should be less"),
    "test fraction 0": ({"data": {"test_fraction": 0}}, None, "'data.test_fraction' input should be greater"),
    "no hidden units": ({"model": {"hidden_units": []}}, None, "'model.hidden_units' list should have at least 1"),
    "missing data.path": ({"data": {"source": "idx"}}, None, "'data.path' is required for data.source 'idx'"),
    "data.path not there": ({"data": IDX}, None, "'data.path' 'raw' is not an existing folder"),
    "truncated idx": ({"data": IDX}, truncated_idx,
                      "train-images-idx3-ubyte: 39116 bytes but the header (50, 28, 28) says 39216"),
    "truncated gz": ({"data": IDX}, truncated_gz, "train-images-idx3-ubyte.gz: corrupt or truncated file"),
    "wrong magic": ({"data": IDX}, wrong_magic, "bad IDX magic number 0x00000801"),
    "corrupt gz": ({"data": IDX}, corrupt_gz, "train-labels-idx1-ubyte.gz: corrupt or truncated file"),
    "idx count mismatch": ({"data": IDX}, idx_count_mismatch,
                           "has 50 images but train-labels-idx1-ubyte.gz has 49 labels"),
    "test class unseen in train": ({"data": IDX}, unseen_test_class, "test classes [9] have no training"),
    "undecodable png": ({"data": IMAGES}, undecodable_png, "raw/3/bad.png: not a readable image"),
    "empty class folder": ({"data": IMAGES}, empty_class_folder, "class folders ['extra'] hold no"),
    "nan pixels": ({"data": NUMPY}, nan_pixels, "X.npy: 1 NaN or infinite pixel values"),
    "x/y length mismatch": ({"data": NUMPY}, xy_length_mismatch, "X.npy has shape (50, 28, 28) but y.npy (47,)"),
    "class with one image": ({"data": NUMPY}, class_with_one_image, "classes [0] have fewer than 2 images"),
    "one class": ({"data": NUMPY}, one_class, "only one class (0)"),
    "limit below class count": ({"data": {"limit": 5}}, None, "cannot make a stratified split"),
    "class weights on a line model": ({"data": {"source": "synthetic-lines"}, "model": {"kind": "crnn"},
                                       "train": {"class_weight": "balanced"}}, None,
                                      "train.class_weight weighs single characters"),
    "label smoothing on a line model": ({"data": {"source": "synthetic-lines"}, "model": {"kind": "crnn"},
                                         "train": {"label_smoothing": 0.1}}, None,
                                        "train.label_smoothing softens single characters' targets"),
}


def assert_no_outputs(root: Path) -> None:
    assert not (root / PREPARED_DIR).exists() and not (root / DATA_REPORT).exists()
    assert not (root / "data").exists() or list((root / "data").iterdir()) == []  # no temporaries


@pytest.mark.parametrize("params, make_data, expected", CASES.values(), ids=CASES.keys())
def test_prepare_stops_with_one_line(tmp_path, monkeypatch, capsys, params, make_data, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    if make_data:
        make_data(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        run_stage(prepare_main)
    stderr = capsys.readouterr().err
    assert exit_.value.code == 1
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and expected in stderr, stderr
    assert_no_outputs(tmp_path)


def test_prepare_subprocess_exit_code_and_stderr(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": NUMPY}))
    nan_pixels(tmp_path)
    result = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert result.stderr == "error: raw/X.npy: 1 NaN or infinite pixel values; fix or drop those rows\n"
    assert_no_outputs(tmp_path)


def test_failed_stage_marks_its_mlflow_run_failed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    import mlflow

    from neurodigits import tracking
    from neurodigits.params import Params

    with pytest.raises(NeuroDigitsError):
        with tracking.run(Params()) as active:
            run_id = active.info.run_id
            raise NeuroDigitsError("failed after the run started")
    assert mlflow.get_run(run_id).info.status == "FAILED"
