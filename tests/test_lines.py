"""Text lines: CTC decoding, CER/WER, the line data sources, line finding on a page, and a line model
trained, evaluated, exported and used by `read` through the real pipeline."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys

import httpx
import numpy as np
import pytest
from conftest import copy_project, run
from data_helpers import embedded
from model_helpers import CHROMIUM, PYTHON, draw, launch_chromium, start_server, stop_server
from PIL import Image

from neurodigits import NeuroDigitsError
from neurodigits.data import load_datasets, prepare
from neurodigits.data.dataset import ctc_fits, decode_labels, encode_texts, lines_report
from neurodigits.data.lines import compose_line
from neurodigits.decoding import LM_FILE, CharNgrams, Decoder, ctc_greedy
from neurodigits.evaluation import character_alignment, new_text, read_lines, text_metrics
from neurodigits.inference import load_classifier
from neurodigits.net import free_port
from neurodigits.page import find_lines
from neurodigits.params import DataParams, ModelParams, TrainParams, parse_params
from neurodigits.preprocess import ink_map, line_image
from neurodigits.synth import text_page

TINY_CRNN = {"kind": "crnn", "conv_filters": [8, 16], "convs_per_block": 1, "dense_units": 16, "rnn_units": 16,
             "rnn_layers": 1, "dropout": 0.1}


def logits_for(path: list[int], symbols: int = 4) -> np.ndarray:
    """Per-column logits whose most likely symbol is `path[t]` at column t (confidence 0.9-ish)."""
    logits = np.zeros((1, len(path), symbols))
    logits[0, np.arange(len(path)), path] = 5.0
    return logits


def test_ctc_greedy_collapses_repeats_and_drops_blanks():
    classes = ["a", "b", "c"]  # symbol i is classes[i - 1]; 0 is the blank
    assert ctc_greedy(logits_for([1, 1, 0, 1, 2, 2, 0, 0, 3]), classes)[0][0] == "aabc"
    assert ctc_greedy(logits_for([0, 0, 0]), classes) == [("", 1.0)]
    text, confidence = ctc_greedy(logits_for([2, 0, 3]), classes)[0]
    assert text == "bc" and confidence == pytest.approx(math.exp(5) / (math.exp(5) + 3))


def test_beam_search_reads_the_most_likely_text_where_greedy_reads_the_most_likely_path():
    # two steps, blank 0.6 and "a" 0.4 at each: the best path is blank-blank (""), but "a" has three paths,
    # 0.4 * 0.4 + 0.4 * 0.6 + 0.6 * 0.4 = 0.64 against 0.36
    logits = np.log([[0.6, 0.4], [0.6, 0.4]])
    assert Decoder(["a"]).read(logits)[0] == ""
    text, confidence = Decoder(["a"], beam_width=4).read(logits)
    assert text == "a" and confidence == pytest.approx(0.64)
    # a repeat reads as two characters only with a blank between them
    assert Decoder(["a", "b"], beam_width=8).read(logits_for([1, 1, 0, 1, 2], 3)[0])[0] == "aab"


def test_language_model_probabilities_sum_to_one_and_favour_what_it_counted():
    classes = list(" abcot")
    lm = CharNgrams(["a cat", "a cot", "a cat"], classes, order=3)
    for context in ("", "a", "a c", "a ca", "tt", "oo"):  # seen contexts and unseen ones
        assert sum(math.exp(lm.logprob(context, symbol)) for symbol in range(len(classes) + 1)) == pytest.approx(1.0)
    after = {c: lm.logprob("a c", i) for i, c in enumerate(classes)}
    assert after["a"] > after["o"] > after["b"]  # counted twice, once, never
    assert lm.logprob("a cat", lm.end) > math.log(0.5)


def test_language_model_decides_what_the_line_model_leaves_open():
    classes = list(" acot")
    # c, then a or o nearly equally likely (o a little more), then t: greedy reads "cot"
    steps = [[0.05, 0, 0.05, 0.9, 0, 0], [0.9, 0, 0, 0, 0.1, 0], [0.1, 0, 0.44, 0, 0.46, 0], [0.9, 0, 0, 0, 0, 0.1],
             [0.05, 0, 0, 0, 0, 0.95]]
    logits = np.log(np.array(steps) + 1e-6)
    assert Decoder(classes).read(logits)[0] == "cot"
    decode = {"beam_width": 8, "lm_order": 3, "lm_weight": 1.0, "insertion_bonus": 0.0}
    assert Decoder.from_params(decode, classes, ["a cat", "cat", "cat"]).read(logits)[0] == "cat"
    no_lm = Decoder.from_params(decode | {"lm_order": 0, "insertion_bonus": 5.0}, classes, ["cat"])
    assert no_lm.read(logits)[0] == "cot" and no_lm.insertion_bonus == 0  # a bonus only offsets the LM's cost


def test_ctc_loss_is_kerass_ctc_loss_by_the_faster_kernel():
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from neurodigits.training import ctc_loss  # noqa: PLC0415

    # two steps, blank and "a" equally likely at each: "a" is read by a-a, a-blank and blank-a, p = 3/4
    assert float(ctc_loss(tf.constant([[1]]), tf.zeros((1, 2, 2)))[0]) == pytest.approx(-math.log(3 / 4), abs=1e-6)
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(6, 30, 8)), tf.float32)
    labels = np.zeros((6, 9), np.int64)
    for row, length in enumerate([9, 1, 5, 3, 7, 2]):
        labels[row, :length] = rng.integers(1, 8, length)
    labels[0, 1] = labels[0, 0]  # a repeated character
    losses, gradients = [], []
    for loss in (ctc_loss, keras.losses.CTC(reduction=None)):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            losses.append(loss(tf.constant(labels), logits))
        gradients.append(tape.gradient(losses[-1], logits).numpy())
    np.testing.assert_allclose(losses[0].numpy(), losses[1].numpy(), rtol=1e-5)
    np.testing.assert_allclose(gradients[0], gradients[1], atol=1e-5)


def test_cer_and_wer_on_known_strings():
    metrics = text_metrics(["hello world", "12 34"], ["helo world", "12 34"])
    assert metrics["cer"] == pytest.approx(1 / 16)  # one deletion in 16 reference characters
    assert metrics["wer"] == pytest.approx(1 / 4)  # one of four words wrong
    assert metrics["line_accuracy"] == 0.5 and metrics["n"] == 2
    assert text_metrics(["ab"], ["xyz"])["cer"] == pytest.approx(3 / 2)  # insertions count: CER can pass 100%
    unseen = new_text(["12 34", "hello world", "56"], ["hello world", "78"])
    assert unseen.tolist() == [True, False, True]
    assert text_metrics(["12 34", "hello world", "56"], ["12 34", "x", "57"], unseen) == {
        "cer": pytest.approx(1 / 7), "wer": pytest.approx(1 / 3), "line_accuracy": 0.5, "n": 2}
    aligned = character_alignment(["abc"], ["axcd"])
    assert aligned.values.tolist() == [["a", "a"], ["b", "x"], ["c", "c"], ["(extra)", "d"]]


def test_ctc_labels_round_trip_and_width_check():
    classes = [" ", "1", "2"]
    rows = encode_texts(["12 1", "2"], classes)
    assert rows.tolist() == [[2, 3, 1, 2], [3, 0, 0, 0]]
    assert decode_labels(rows, classes) == ["12 1", "2"]
    assert ctc_fits("11", 12) and not ctc_fits("11", 11)  # a repeat needs a blank between: 3 steps of 4 px


def write_lines_folder(root, texts: list[str], writers: list[str], split: list[str] | None = None) -> None:
    """Line images of digits (dark ink on white paper, as scanned) and their labels.csv."""
    images, labels = embedded()
    rng = np.random.default_rng(0)
    (root / "lines").mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["file", "text", "writer", "quality", "split"])
        for i, (text, writer) in enumerate(zip(texts, writers)):
            digits = [images[rng.choice(np.flatnonzero(labels == int(c)))] for c in text if c != " "]
            line = compose_line(digits, text, rng, 48, 2000)
            Image.fromarray(255 - line).save(root / "lines" / f"{i:03d}.png")
            out.writerow([f"lines/{i:03d}.png", text, writer, "OK" if i % 2 else "?", split[i] if split else ""])


@pytest.fixture(scope="module")
def lines_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("lines")
    texts = ["12 34", "567", "8 9 0", "1234567", "42", "909 1", "77 3", "65"]
    write_lines_folder(root, texts, writers=["w1", "w1", "w2", "w2", "w3", "w3", "w4", "w4"])
    return root, texts


def test_lines_folder_loads_normalised_lines_and_splits_by_writer(lines_folder):
    root, texts = lines_folder
    params = DataParams(source="lines", path=str(root), line_height=32, test_fraction=0.25)
    [dataset] = load_datasets(params)
    assert dataset.images.shape[1] == 32 and dataset.images.dtype == np.uint8
    assert sorted([*dataset.labels, *dataset.test_labels]) == sorted(texts)
    assert len(dataset.test_labels) == 2  # one writer of four, both of its lines
    writer_of = dict(zip(texts, ["w1", "w1", "w2", "w2", "w3", "w3", "w4", "w4"]))
    assert len({writer_of[t] for t in dataset.test_labels}) == 1
    assert dataset.images[:, :, 0].max() == 0 and dataset.images.max() > 200  # bright ink on dark, margin kept
    prepared = prepare(dataset, params)
    assert prepared.classes == sorted(set("".join(texts)))
    assert prepared.x_train.shape[2] % 32 == 0 and prepared.meta["task"] == "lines"
    assert decode_labels(prepared.y_train, prepared.classes) == dataset.labels.tolist()
    assert lines_report(prepared)["train"]["n"] == 6


def test_lines_folder_errors_are_one_line(tmp_path, lines_folder):
    params = DataParams(source="lines", path=str(tmp_path))
    with pytest.raises(NeuroDigitsError, match="no labels.csv; give a folder of line images") as error:
        load_datasets(params)
    assert "\n" not in str(error.value)
    (tmp_path / "labels.csv").write_text("file,text,split\na.png,12,validation\n")
    with pytest.raises(NeuroDigitsError, match="split 'validation' is not train or test"):
        load_datasets(params)
    (tmp_path / "labels.csv").write_text("image,label\na.png,12\n")
    with pytest.raises(NeuroDigitsError, match="needs the columns file and text"):
        load_datasets(params)


def test_line_model_and_line_data_go_together():
    with pytest.raises(NeuroDigitsError, match="text lines need model.kind crnn"):
        parse_params({"data": {"source": "synthetic-lines"}})
    with pytest.raises(NeuroDigitsError, match="crnn reads text lines; set data.source to lines"):
        parse_params({"model": {"kind": "crnn"}})
    with pytest.raises(NeuroDigitsError, match="mixes text lines"):
        parse_params({"data": {"source": ["mnist-5k", "synthetic-lines"]}, "model": {"kind": "crnn"}})


def test_synthetic_lines_are_seeded_and_test_lines_use_held_out_digits_only():
    params = DataParams(source="synthetic-lines", synthetic_lines=40)
    first, second = load_datasets(params)[0], load_datasets(params)[0]
    np.testing.assert_array_equal(first.images, second.images)
    assert len(first.labels) == 32 and len(first.test_labels) == 8
    assert all(set(text) <= set("0123456789 ") and text.strip() == text for text in first.labels)


def test_messy_line_images_normalise_alike():
    """A line as a 1-bit scan, faint pencil, or white ink on black reads as the same normalised line."""
    _, texts = None, "305 12"
    images, labels = embedded()
    rng = np.random.default_rng(3)
    digits = [images[np.flatnonzero(labels == int(c))[0]] for c in texts if c != " "]
    clean = compose_line(digits, texts, rng, 64, 4000) / 255.0
    reference = line_image(1 - clean, 32, 1024)
    for variant in (1 - (clean > 0.5), 1 - 0.2 * clean, clean):
        line = line_image(variant.astype(np.float32), 32, 1024)
        assert line.shape[0] == 32 and abs(line.shape[1] - reference.shape[1]) <= 3
    with pytest.raises(NeuroDigitsError, match="blank"):
        line_image(np.ones((40, 200), dtype=np.float32), 32, 1024)


def two_line_page(texts: tuple[str, str]) -> tuple[np.ndarray, list]:
    """A page with two handwritten numbers, one under the other (synth.text_page): gray in [0, 1], line boxes."""
    images, labels = embedded()
    rng = np.random.default_rng(5)
    lines = [compose_line([images[np.flatnonzero(labels == int(c))[-1]] for c in text if c != " "], text, rng, 64, 480)
             for text in texts]
    return text_page(lines, rng)


def test_find_lines_finds_each_line_top_to_bottom():
    page, truth = two_line_page(("31 415", "92 65"))
    boxes = find_lines(ink_map(page))
    assert len(boxes) == 2
    for (top, left, bottom, right), (true_top, true_left, true_bottom, true_right) in zip(boxes, truth):
        assert true_top <= top < bottom <= true_bottom and true_left <= left < right <= true_right
        assert bottom - top > 0.6 * (true_bottom - true_top)  # the line's ink, not a sliver of it


@pytest.fixture(scope="module")
def line_project(tmp_path_factory):
    """`dvc exp run` of a tiny line model on synthetic lines, in a project copy (a step every 2 pixel columns,
    two per column of the convolutions: training, evaluation, export and `read` follow the model's steps)."""
    project = copy_project(tmp_path_factory.mktemp("lines-project"),
                           data={"source": "synthetic-lines", "synthetic_lines": 80},
                           model={**TINY_CRNN, "steps_per_column": 2}, train={"epochs": 2, "batch_size": 16},
                           decode={"beam_width": 4}, tracking={"registered_model": "lines-test"})
    run(["dvc", "exp", "run"], project)
    return project


def test_line_model_pipeline_end_to_end(line_project, tmp_path):
    """CER/WER metrics, the worst-lines gallery, aligned characters, an export with parity, a registered model."""
    metrics = json.loads((line_project / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"test", "train", "test_new_text", "test_greedy"}  # test_greedy: the model alone
    assert {"cer", "wer", "line_accuracy"} <= set(metrics["test"]) and metrics["test_greedy"]["n"] == 16
    assert metrics["test"]["n"] == 16 and 0 < metrics["test_new_text"]["n"] <= 16  # numbers no training line has
    assert (line_project / "reports" / "plots" / "misclassified.png").stat().st_size > 1000
    history = (line_project / "reports" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,cer" and all(float(row.split(",")[2]) >= 0 for row in history[1:])
    metadata = json.loads((line_project / "models" / "export" / "metadata.json").read_text())
    assert metadata["task"] == "lines" and metadata["image_size"] == 32
    assert metadata["classes"] == [" ", *"0123456789"] and max(metadata["parity"].values()) < 1e-4
    # the decoder read goes with the export: its params and the transcriptions its language model counts
    assert metadata["params"]["decode"]["beam_width"] > 1 and metadata["params"]["decode"]["lm_order"] > 0
    corpus = (line_project / "models" / "export" / LM_FILE).read_text().split("\n")
    assert len(corpus) == json.loads((line_project / "reports" / "data.json").read_text())["train"]["n"]
    reader = load_classifier(line_project / "models" / "export")
    assert reader.decoder.beam_width > 1 and reader.decoder.language_model is not None
    incomplete = shutil.copytree(line_project / "models" / "export", tmp_path / "export")
    (incomplete / LM_FILE).unlink()  # never a silent fallback to another decoder than the one evaluated
    with pytest.raises(NeuroDigitsError, match=f"no {LM_FILE}.*re-export"):
        load_classifier(incomplete)
    confusion = (line_project / "reports" / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) > 50
    versions = run([sys.executable, "-c", "import mlflow; from neurodigits import tracking; "
                    "mlflow.set_tracking_uri(tracking.tracking_uri()); "
                    "print(len(mlflow.MlflowClient().search_model_versions(\"name='lines-test'\")))"], line_project)
    assert versions.stdout.strip() == "1"


@pytest.mark.parametrize("model", ["models/export", "models:/lines-test@champion"])  # TFLite; the registry's
def test_read_finds_and_reads_both_lines_of_a_page(line_project, tmp_path, model):
    page, _ = two_line_page(("31 415", "92 65"))
    Image.fromarray((page * 255).astype(np.uint8)).save(tmp_path / "page.png")
    result = run([sys.executable, "-m", "neurodigits.cli", "read", str(tmp_path / "page.png"), "--json",
                  "--model", model, "--annotate", str(tmp_path / "read.png")], line_project)
    lines = json.loads(result.stdout)
    assert len(lines) == 2 and lines[0]["box"][0] < lines[1]["box"][0]
    assert all(set(line["text"]) <= set("0123456789 ") and 0 <= line["confidence"] <= 1 for line in lines)
    assert Image.open(tmp_path / "read.png").size == page.shape[::-1]


def test_predict_with_a_line_model_reads_each_image_as_a_line(line_project, tmp_path):
    images, labels = embedded()
    line = compose_line([images[np.flatnonzero(labels == d)[0]] for d in (4, 2)], "42", np.random.default_rng(1),
                        64, 2000)
    Image.fromarray(255 - line).save(tmp_path / "line.png")
    Image.fromarray(np.full((40, 200), 230, np.uint8)).save(tmp_path / "blank.png")
    files = [str(tmp_path / "line.png"), str(tmp_path / "blank.png")]
    result = run([sys.executable, "-m", "neurodigits.cli", "predict", *files, "--json", "--csv",
                  str(tmp_path / "out.csv"), "--model", "models/export"], line_project, check=False)
    records = json.loads(result.stdout)
    assert result.returncode == 1 and [r["file"] for r in records] == files
    assert set(records[0]["text"]) <= set("0123456789 ") and 0 <= records[0]["confidence"] <= 1
    assert "blank.png: image is blank" in records[1]["error"]
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[0] == "file,text,confidence,error" and len(rows) == 3


@pytest.fixture(scope="module")
def line_server(line_project):
    base = f"http://127.0.0.1:{free_port()}"
    server = start_server([PYTHON, "-m", "neurodigits.cli", "serve", "--model",
                           str(line_project / "models" / "export"), "--port", base.rsplit(":", 1)[1]],
                          f"{base}/api/info")
    yield base
    stop_server(server)


def test_serving_a_line_model_reads_an_uploaded_line(line_server):
    info = httpx.get(f"{line_server}/api/info").json()
    assert info["task"] == "lines" and info["image_size"] == 32
    images, labels = embedded()
    line = compose_line([images[np.flatnonzero(labels == d)[0]] for d in (4, 2)], "42", np.random.default_rng(1),
                        64, 2000)
    buffer = io.BytesIO()
    Image.fromarray(255 - line).save(buffer, "PNG")
    body = httpx.post(f"{line_server}/api/predict", files={"file": ("line.png", buffer.getvalue())}).json()
    assert set(body["text"]) <= set("0123456789 ") and 0 <= body["confidence"] <= 1
    assert body["input"].startswith("data:image/png;base64,")
    refused = httpx.post(f"{line_server}/api/samples", files={"file": ("line.png", buffer.getvalue())},
                         data={"label": "42"})
    assert refused.status_code == 409 and "single characters" in refused.json()["detail"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="apt-get install chromium")
def test_drawing_page_offers_a_wide_canvas_for_a_line_model(line_server):
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(line_server)
        page.wait_for_function("document.body.classList.contains('lines')")
        box = page.locator("#canvas").bounding_box()
        draw(page, [[(0.2 + 0.3 * k, 0.2), (0.2 + 0.3 * k, 0.8)] for k in range(3)])  # like "1 1 1"
        page.wait_for_function("document.getElementById('probability').textContent.includes('sure')")
        teach_hidden = page.locator(".teach").is_hidden()
        browser.close()
    assert box["width"] > 3 * box["height"] and teach_hidden


def test_find_lines_joins_dots_and_marks_to_the_nearest_line():
    ink = np.zeros((200, 300), dtype=np.float32)
    ink[20:60, 10:290] = 1  # a line
    ink[64:67, 50:90] = 1  # a mark just under it
    ink[100:104, 100:130] = 1  # a row of i-dots above the next line
    ink[110:150, 10:200] = 1  # the next line
    ink[200 - 50:200 - 47, 10:60] = 1  # a stroke touching its bottom
    [first, second] = find_lines(ink)
    assert abs(first[0] - 20) <= 1 and abs(first[2] - 67) <= 1 and first[1::2] == (10, 290)
    assert abs(second[0] - 100) <= 1 and abs(second[2] - 153) <= 1 and second[1::2] == (10, 200)


def test_line_batches_are_seeded_width_sorted_and_augmented_within_ctc_limits():
    from neurodigits.training import LineBatches, ctc_steps, warp_line  # noqa: PLC0415

    params = DataParams(source="synthetic-lines", synthetic_lines=60)
    prepared = prepare(load_datasets(params), params)
    train = TrainParams(augment=True, augment_zoom=0.5, augment_stroke=0.3)

    def epoch(seed: int) -> list:
        return [LineBatches(prepared.x_train, prepared.y_train, 8, seed, train)[i] for i in range(6)]

    first, again = epoch(1), epoch(1)
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
        assert x.shape[2] % 32 == 0 and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert not np.array_equal(first[0][0], epoch(2)[0][0])
    rng, line, label = np.random.default_rng(0), prepared.x_train[0][:, :40], prepared.y_train[0]
    need = 4 * ctc_steps(label)
    widths = [warp_line(line, rng, train, min_width=need).shape[1] for _ in range(50)]
    assert min(widths) >= need  # squeezing never leaves a label fewer model steps than CTC needs


@pytest.mark.parametrize(("downsample", "steps_per_column"), [(2, 1), (4, 1), (4, 2)])
def test_line_model_steps_follow_model_downsample(downsample, steps_per_column):
    """model.downsample / model.steps_per_column set the pixel columns per CTC step; predict_lines keeps each
    line's own steps."""
    from neurodigits.models import build_model  # noqa: PLC0415
    from neurodigits.training import predict_lines  # noqa: PLC0415

    lines = np.zeros((2, 32, 96), np.uint8)
    lines[0, 8:24, :40], lines[1, 8:24, :90] = 255, 255
    model = build_model(ModelParams(**TINY_CRNN, downsample=downsample, steps_per_column=steps_per_column),
                        TrainParams(), 32, 5)
    columns = downsample // steps_per_column
    assert model.predict_on_batch(np.zeros((1, 32, 64), np.float32)).shape == (1, 64 // columns, 6)
    assert [len(steps) for steps in predict_lines(model, lines)] == [-(-40 // columns), -(-90 // columns)]


def test_line_model_params_are_checked():
    with pytest.raises(ValueError, match="model.downsample 4 needs 2 conv blocks"):
        ModelParams(kind="crnn", conv_filters=[8], downsample=4)


def test_line_model_training_is_bit_identical_for_the_same_params():
    from neurodigits.models import build_model  # noqa: PLC0415
    from neurodigits.training import fit, set_determinism, weights_sha256  # noqa: PLC0415

    params = DataParams(source="synthetic-lines", synthetic_lines=40)
    prepared = prepare(load_datasets(params), params)
    train = TrainParams(epochs=2, batch_size=8, augment=True, augment_stroke=0.3)

    def trained():  # weights hash, history, model
        set_determinism(train.seed)
        model = build_model(ModelParams(**TINY_CRNN, batch_norm=True), train, 32, len(prepared.classes))
        history = fit(model, prepared.x_train, prepared.y_train, train, verbose=0)
        return weights_sha256(model), history, model

    first, history, model = trained()
    assert trained()[0] == first
    # the per-epoch CER (on the training lines here: all 40 < TRACKED_LINES) is the evaluation's CER
    truth = decode_labels(prepared.y_train, prepared.classes)
    read = read_lines(model, prepared.x_train, [Decoder(prepared.classes)])[0]
    assert history.columns.tolist() == ["epoch", "loss", "cer"]
    assert history["cer"].iloc[-1] == pytest.approx(text_metrics(truth, read)["cer"], abs=1e-6)
