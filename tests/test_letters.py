"""Characters: the EMNIST layout, case merging, several sources in one model, character metrics."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import copy_project, run
from data_helpers import embedded, write_emnist
from PIL import Image

from neurodigits import NeuroDigitsError
from neurodigits.data import load_datasets, prepare
from neurodigits.data.dataset import data_report, load_prepared, save_prepared
from neurodigits.evaluation import split_metrics, subset_masks
from neurodigits.params import DataParams, parse_params

CHARS = "ABab"  # labels 0-3; the images are embedded digits 0-3, one shape per label


def pairs(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` images of each of the four labels, upright."""
    images, labels = embedded()
    index = np.concatenate([np.flatnonzero(labels == c)[offset:offset + n] for c in range(len(CHARS))])
    return images[index], labels[index]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple:
    """Two EMNIST splits side by side: `emnist-letters` (with a test meta CSV) and `other`."""
    root = tmp_path_factory.mktemp("emnist")
    train, test = pairs(20), pairs(5, offset=20)
    write_emnist(root, "emnist-letters", CHARS, train, test, quality=["OK", "?"] * 10)
    write_emnist(root, "other", "xyzw", pairs(3), pairs(2, offset=3))
    return root, train, test


def test_emnist_layout_reads_upright_images_named_by_the_mapping(folder):
    root, train, test = folder
    [dataset] = load_datasets(DataParams(source="emnist", path=str(root), emnist_split="letters"))
    np.testing.assert_array_equal(dataset.images, train[0])  # stored transposed, read upright
    np.testing.assert_array_equal(dataset.test_images, test[0])
    assert dataset.labels.tolist() == [CHARS[i] for i in train[1]]
    assert dataset.test_quality.tolist() == ["OK", "?"] * 10
    [other] = load_datasets(DataParams(source="emnist", path=str(root), emnist_split="other"))
    assert sorted(set(other.labels)) == list("wxyz") and other.test_quality is None


def test_unknown_split_lists_the_prefixes_found(folder):
    root, _, _ = folder
    with pytest.raises(NeuroDigitsError) as error:
        load_datasets(DataParams(source="emnist", path=str(root), emnist_split="digits"))
    message = str(error.value)
    assert "\n" not in message and "no EMNIST split 'digits'" in message
    assert "found: emnist-letters, other" in message and "data.emnist_split" in message


def test_case_merge_folds_upper_and_lower_case(folder):
    root, _, test = folder
    params = DataParams(source="emnist", path=str(root), emnist_split="letters", image_size=28)
    sensitive = prepare(load_datasets(params), params)
    assert sensitive.classes == ["A", "B", "a", "b"]
    merged_params = params.model_copy(update={"case": "merge"})
    merged = prepare(load_datasets(merged_params), merged_params)
    assert merged.classes == ["A", "B"]
    np.testing.assert_array_equal(merged.y_test, test[1] % 2)


def test_several_sources_union_their_classes_and_split_per_source(folder, tmp_path):
    root, _, _ = folder
    params = parse_params({"data": {"source": ["mnist-5k", {"source": "emnist", "path": str(root)}], "path": str(root),
                                    "emnist_split": "letters", "limit": 1000, "image_size": 28}}).data
    prepared = prepare(load_datasets(params), params)
    assert prepared.classes == [str(d) for d in range(10)] + list(CHARS)
    digits, letters = prepared.meta["sources"]
    assert (digits["name"], digits["n_train"], digits["n_test"]) == ("mnist-5k", 800, 200)  # limit, then 20%
    assert (letters["name"], letters["n_train"], letters["n_test"]) == ("emnist", 80, 20)  # its own test split
    assert digits["sha256"] != letters["sha256"] and len(prepared.meta["source_sha256"]) == 64
    test_digits = prepared.y_test[:200]
    assert np.bincount(test_digits).tolist() == [20] * 10  # stratified within the digit source
    save_prepared(prepared, tmp_path / "prepared")
    loaded = load_prepared(tmp_path / "prepared")
    assert loaded.quality_test.tolist() == [""] * 200 + ["OK", "?"] * 10
    masks = subset_masks(loaded.meta, loaded.quality_test)
    assert sorted(masks) == ["emnist", "mnist-5k", "ok"] and masks["ok"].sum() == 10 and masks["emnist"].sum() == 20
    assert [s["sha256"] for s in data_report(loaded)["sources"]] == [digits["sha256"], letters["sha256"]]


def test_single_source_has_no_subsets_and_source_lists_reject_bad_entries():
    params = DataParams(limit=100)
    prepared = prepare(load_datasets(params), params)
    assert subset_masks(prepared.meta, prepared.quality_test) == {} and prepared.quality_test is None
    with pytest.raises(NeuroDigitsError, match="data.source"):
        parse_params({"data": {"source": ["mnist-5k", {"source": "emnist", "split": "x"}]}})
    outside = {"source": ["mnist-5k", {"source": "emnist", "path": "elsewhere/letters"}], "path": "data/raw"}
    with pytest.raises(NeuroDigitsError, match="'elsewhere/letters' is outside data.path 'data/raw', the folder"):
        parse_params({"data": outside})  # DVC would not see it change
    parse_params({"data": {**outside, "source": ["mnist-5k", {"source": "emnist", "path": "data/raw/letters"}]}})


def test_character_metrics_top3_and_case_insensitive():
    classes = ["A", "B", "a", "b"]
    logits = np.array([[3.0, 2, 1, 0],    # A, true A: right
                       [0, 1, 3, 2],      # a, true A: wrong, right ignoring case, true class 4th
                       [0, 3, 2, 1]])     # B, true b: wrong, right ignoring case, true class 3rd
    metrics = split_metrics(logits, np.array([0, 0, 3]), classes)
    assert metrics["accuracy"] == pytest.approx(1 / 3) and metrics["case_insensitive_accuracy"] == 1.0
    assert metrics["top3_accuracy"] == pytest.approx(2 / 3)
    assert "case_insensitive_accuracy" not in split_metrics(logits, np.array([0, 0, 3]), list("ABCD"))


def test_dvc_exp_run_trains_a_digits_and_letters_model_end_to_end(folder, tmp_path):
    """Embedded digits + a generated EMNIST-layout folder, through the real dvc exp run (with the letters
    recipe's label smoothing), MLflow and export; the exported and the registered model then read a letter
    through `neurodigits predict`."""
    root, _, test = folder
    project = copy_project(tmp_path / "project", train={"epochs": 8})
    run(["dvc", "exp", "run", "-S", "data.source=[mnist-5k, emnist]", "-S", f"data.path={root}",
         "-S", "data.limit=300", "-S", "data.image_size=28", "-S", "train.label_smoothing=0.1"], project)
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["test_mnist-5k"]["n"] == 60 and metrics["test_emnist"]["n"] == 20 and metrics["test_ok"]["n"] == 10
    assert {"top3_accuracy", "case_insensitive_accuracy"} <= set(metrics["test"])
    assert metrics["test"]["top3_accuracy"] >= metrics["test"]["accuracy"] > 0.3  # far above chance (1/14)
    classes = [str(d) for d in range(10)] + list(CHARS)
    assert json.loads((project / "models/export/metadata.json").read_text())["classes"] == classes
    assert sorted(json.loads((project / "reports/per_class.json").read_text())) == sorted(classes)
    data = json.loads((project / "reports/data.json").read_text())
    assert [s["name"] for s in data["sources"]] == ["mnist-5k", "emnist"]
    letter = project / "letter.png"
    Image.fromarray(255 - np.kron(test[0][0], np.ones((4, 4), dtype=np.uint8))).save(letter)  # dark ink, 112 px
    for model in ("models/export", "models:/neurodigits@champion"):  # TFLite, and MLflow's registered model
        result = run([sys.executable, "-m", "neurodigits.cli", "predict", "--json", "--model", model, str(letter)],
                     project)
        [record] = json.loads(result.stdout)
        assert record["label"] in classes and {t["label"] for t in record["top"]} <= set(classes), model
