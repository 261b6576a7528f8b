"""`neurodigits predict` as a user runs it: a subprocess, real image files, a tiny exported model."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from model_helpers import ENV, PYTHON, export_tiny_model, write_image
from PIL import Image

from neurodigits.inference import classify, load_classifier
from neurodigits.preprocess import load_digit
from neurodigits.synth import clean_accuracy, held_out_digits, predict_path_accuracy, realistic_photo, scan_variant

HEAVY = {"tensorflow", "keras", "mlflow", "scipy", "skimage"}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_model(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Six realistic photos of held-out digits, with their labels."""
    folder = tmp_path_factory.mktemp("photos")
    x, y, classes = held_out_digits(28)
    rng = np.random.default_rng(3)
    files = []
    for i in range(6):
        path = folder / f"digit{i}.jpg"
        Image.open(io.BytesIO(realistic_photo(x[i], rng))).convert("L").save(path)
        files.append((path, classes[y[i]]))
    return files


def neurodigits(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "neurodigits.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd)


def test_predict_prints_digit_probability_and_top3(export, photos):
    result = neurodigits("predict", "--model", export, *(p for p, _ in photos))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(photos) and result.stderr == ""
    for line, (path, _) in zip(lines, photos):
        assert line.startswith(f"{path}: ") and "top-3: " in line and line.count("%") == 4


def test_json_output_and_tflite_file(export, photos):
    result = neurodigits("predict", "--json", "--model", export / "model.tflite", photos[0][0])
    [record] = json.loads(result.stdout)
    assert record["file"] == str(photos[0][0]) and len(record["top"]) == 3
    assert record["label"] == record["top"][0]["label"] and 0 < record["probability"] <= 1


def test_default_model_is_models_export_under_cwd(export, photos, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "export").symlink_to(export)
    assert neurodigits("predict", photos[0][0], cwd=tmp_path).returncode == 0


def test_bad_files_get_one_error_line_each_and_the_rest_is_predicted(export, photos, tmp_path):
    (tmp_path / "text.png").write_text("hello")
    blank = write_image(tmp_path / "blank.png", np.full((64, 64), 0.85))
    Image.new("L", (9000, 5000)).save(tmp_path / "huge.png")
    good = photos[0][0]
    result = neurodigits("predict", "--model", export, tmp_path / "missing.png", good, tmp_path / "text.png",
                         blank, tmp_path / "huge.png")
    assert result.returncode == 1
    assert result.stdout.startswith(f"{good}: ")
    errors = result.stderr.splitlines()
    assert len(errors) == 4 and all(line.startswith("error: ") for line in errors)
    assert "missing.png: no such file" in errors[0] and "text.png: not a readable image" in errors[1]
    assert "blank.png: image is blank" in errors[2] and "huge.png: image is 9000x5000" in errors[3]


def test_usage_errors_exit_2_and_a_missing_model_exits_1(photos, tmp_path):
    assert neurodigits("predict").returncode == 2
    assert neurodigits("frobnicate").returncode == 2
    result = neurodigits("predict", "--model", tmp_path / "nowhere", photos[0][0])
    assert result.returncode == 1 and "no such model" in result.stderr


def test_serve_on_an_address_in_use_and_bad_numbers_are_one_line(export):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = neurodigits("serve", "--model", export, "--port", port)
    assert result.returncode == 1 and result.stderr == (f"error: cannot listen on 127.0.0.1:{port} (Address already "
                                                        "in use); choose another --port, or a --host of this machine\n")
    bad_port = neurodigits("serve", "--port", "99999")
    assert bad_port.returncode == 2 and "argument --port: '99999' is not a TCP port (1 to 65535)" in bad_port.stderr
    no_workers = neurodigits("predict", "--workers", "0", "digit.png")
    assert no_workers.returncode == 2 and "'0' is not a whole number of at least 1" in no_workers.stderr


def test_predict_starts_fast_without_tensorflow(export, photos):
    code = ("import sys; from neurodigits.cli import main; main(['predict', '--model', sys.argv[1], sys.argv[2]]); "
            "print(sorted({m.split('.')[0] for m in sys.modules}))")
    started = time.perf_counter()
    result = subprocess.run([PYTHON, "-c", code, export, photos[0][0]], capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - started
    imported = set(eval(result.stdout.splitlines()[-1]))  # noqa: S307 - our own printed list
    assert not imported & HEAVY, imported & HEAVY
    assert elapsed < 3  # ~0.3 s when idle; generous for a busy CI machine


def test_realistic_photos_are_nearly_as_accurate_as_the_clean_split(export):
    classifier = load_classifier(export)
    x, y, classes = held_out_digits(28)
    rng = np.random.default_rng(0)
    right = sum(classify(classifier, load_digit(io.BytesIO(realistic_photo(d, rng)), 20)[None])[0].label
                == classes[label] for d, label in zip(x[:400], y[:400]))
    assert right / 400 > clean_accuracy(classifier) - 0.06


@pytest.mark.parametrize("variant", ["tight", "16px", "binary", "low-contrast"])
def test_scans_are_nearly_as_accurate_as_the_clean_split(export, variant):
    classifier = load_classifier(export)
    x, y, classes = held_out_digits(28)
    rng = np.random.default_rng(0)
    accuracy, refused = predict_path_accuracy(classifier, [scan_variant(d, variant, rng) for d in x[:200]],
                                              y[:200], classes)
    assert refused == 0 and accuracy > clean_accuracy(classifier) - 0.06


def test_folders_and_globs_give_one_record_per_input_in_order(export, photos, tmp_path):
    """80 files (enough for the process pool), a glob, a bad file and a missing one: one JSON record and
    one CSV row each, in input order, failures as error records, a non-zero exit, no TensorFlow."""
    folder = tmp_path / "scans" / "batch"
    folder.mkdir(parents=True)
    for i in range(80):
        (folder / f"{i:03d}.jpg").write_bytes(photos[i % len(photos)][0].read_bytes())
    (tmp_path / "bad.png").write_text("not an image")
    inputs = [str(tmp_path / "scans"), str(tmp_path / "bad.png"), str(folder / "00*.jpg"), str(tmp_path / "gone.png")]
    code = ("import sys, json; from neurodigits.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps([rc, sorted({m.split('.')[0] for m in sys.modules})]))")
    result = subprocess.run([PYTHON, "-c", code, "predict", "--json", "--quiet", "--csv", tmp_path / "out.csv",
                             "--model", export, *inputs], capture_output=True, text=True, env=ENV)
    rc, imported = json.loads(result.stdout.splitlines()[-1])
    records = json.loads("\n".join(result.stdout.splitlines()[:-1]))
    expected = ([str(folder / f"{i:03d}.jpg") for i in range(80)] + [str(tmp_path / "bad.png")]
                + [str(folder / f"{i:03d}.jpg") for i in range(10)] + [str(tmp_path / "gone.png")])
    assert [r["file"] for r in records] == expected and rc == 1
    assert [r["file"] for r in records if "error" in r] == [str(tmp_path / "bad.png"), str(tmp_path / "gone.png")]
    assert records[0]["label"] == records[80 + 1]["label"]  # the same image, the same answer
    assert not set(imported) & HEAVY, set(imported) & HEAVY
    with open(tmp_path / "out.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == expected and rows[80]["error"].endswith("not a readable image "
                                                                                   "(UnidentifiedImageError); "
                                                                                   "give a PNG or JPEG file")
