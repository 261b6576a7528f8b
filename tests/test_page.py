"""`neurodigits read`: generated pages of held-out digits, broken and touching digits, words, the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from model_helpers import ENV, PYTHON, export_tiny_model, write_image
from PIL import Image

from neurodigits import NeuroDigitsError
from neurodigits.inference import load_classifier
from neurodigits.page import find_digits, read_page
from neurodigits.preprocess import ink_map
from neurodigits.synth import clean_accuracy, held_out_digits, synthetic_page, with_specks


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_model(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, list[str]]:
    x, y, classes = held_out_digits(28)
    return x, [classes[i] for i in y]


def page_of(digits: list[np.ndarray], gap: int) -> np.ndarray:
    """Digits side by side (`gap` px apart, negative overlaps), dark on white, 40 px margins."""
    width = sum(d.shape[1] for d in digits) + gap * (len(digits) - 1) + 80
    ink = np.zeros((28 + 80, width))
    x = 40
    for digit in digits:
        region = ink[40:68, x:x + digit.shape[1]]
        np.maximum(region, digit / 255.0, out=region)
        x += digit.shape[1] + gap
    return 1 - 0.9 * np.kron(ink, np.ones((3, 3)))  # 3x: pen-sized strokes


def test_generated_pages_read_about_as_well_as_the_clean_split(export, held_out):
    classifier = load_classifier(export)
    x, labels = held_out
    rng = np.random.default_rng(0)
    right = total = 0
    for _ in range(25):
        order = rng.permutation(len(x))
        page = synthetic_page(x[order], [labels[i] for i in order], rng)
        lines = ["".join(d.label for d in line) for line in read_page(page.image / 255.0, classifier)]
        assert [len(line) for line in lines] == [len(line) for line in page.lines]
        right += sum(a == b for truth, read in zip(page.lines, lines) for a, b in zip(truth, read))
        total += sum(map(len, page.lines))
    assert right / total > clean_accuracy(classifier) - 0.05  # tiny MLP, 280 digits: +-2 points of noise


def test_touching_digits_are_split_and_broken_digits_kept_whole(held_out):
    x, _ = held_out
    touching = page_of([x[0], x[1], x[2]], gap=-4)
    touching[3 * 53:3 * 55, 3 * 40:-3 * 40] = 0.1  # a stroke through all three: one blob, three digits wide
    found = find_digits(ink_map(touching))
    assert len(found) == 1 and 3 <= len(found[0]) <= 4  # cut near each expected digit boundary
    broken = x[4].copy()
    broken[13:15] = 0  # a cut across the digit
    lines = find_digits(ink_map(page_of([x[3], broken, x[5]], gap=8)))
    assert len(lines) == 1 and len(lines[0]) == 3


def test_an_i_keeps_its_dot_though_far_above_and_beside_its_stem(held_out):
    x, _ = held_out
    tall = [d for d in x if np.ptp(np.nonzero(d)[0]) >= 19][:4]  # digits 20 px tall, like the i
    letter_i = np.zeros((28, 12), np.uint8)
    letter_i[17:28, 4:6] = 255  # a short thin stem, little ink: alone it would be taken for dust
    letter_i[3:6, 7:10] = 255  # its dot, 11 px (0.4 of a character) above and to the right of it
    lines = find_digits(ink_map(page_of([*tall[:2], letter_i, *tall[2:]], gap=10)))
    assert [len(line) for line in lines] == [5]
    top, _, bottom, _ = lines[0][2][0]
    assert (top, bottom) == (3 * (40 + 3), 3 * (40 + 28))  # the dot's top to the stem's foot (3x page_of)


def test_specks_on_the_page_neither_join_nor_become_characters(held_out):
    x, labels = held_out
    rng = np.random.default_rng(4)
    page = with_specks(synthetic_page(x, labels, rng, lines=4), 300, rng)
    assert [len(line) for line in find_digits(ink_map(page.image / 255.0))] == [len(line) for line in page.lines]


def test_a_dark_speck_as_heavy_as_a_thin_character_is_not_one(held_out):
    """Dust can hold as much ink as a thin digit (a third of a typical one here), but no character is that small
    both ways: a blob under MIN_SIDE character heights tall and wide is dropped, however dark."""
    x, _ = held_out
    tall = [d for d in x if np.ptp(np.nonzero(d)[0]) >= 19][:4]  # digits 20 px tall: 60 px on the page
    page = page_of(tall, gap=30)
    for left in (3 * 40 + 3 * 28 + 30, 3 * 40 + 6 * 28 + 120):  # in the gaps between the first digits
        page[3 * 40 + 25:3 * 40 + 41, left:left + 16] = 0.1  # 16 px square: 256 px of ink
    lines = find_digits(ink_map(page))
    assert [len(line) for line in lines] == [4]


def overlap(a: tuple, b: tuple) -> float:
    """Intersection over union of two (top, left, bottom, right) boxes."""
    rows, cols = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    shared = max(0, rows) * max(0, cols)
    return shared / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - shared)


@pytest.mark.parametrize("seed", [0, 1, 17, 19])
def test_specks_beside_characters_do_not_chain_into_them(held_out, seed):
    """A speck near a character joins it, but the next speck is measured from the character's own ink, not from
    the speck: no chain of specks grows a character into a tall blob that swallows lines. Each line's characters
    are found, in one line, each box over half its true box."""
    x, labels = held_out
    rng = np.random.default_rng(seed)
    page = with_specks(synthetic_page(x, labels, rng, lines=4), 300, rng)
    found = [[box for box, _ in line] for line in find_digits(ink_map(page.image / 255.0))]
    for true_line in page.boxes:
        assert any(all(any(overlap(true, box) >= 0.5 for box in line) for true in true_line) for line in found)


def test_lines_are_ordered_top_to_bottom_left_to_right(export, held_out):
    x, labels = held_out
    rng = np.random.default_rng(5)
    page = synthetic_page(x, labels, rng, lines=3)
    boxes = [[d.box for d in line] for line in read_page(page.image / 255.0, load_classifier(export))]
    assert len(boxes) == 3
    assert all(a[1] < b[1] for line in boxes for a, b in zip(line, line[1:]))
    assert all(max(b[2] for b in upper) < min(b[2] for b in lower) for upper, lower in zip(boxes, boxes[1:]))


def test_blank_page_is_an_error(export):
    with pytest.raises(NeuroDigitsError, match="no handwriting"):
        read_page(np.full((300, 400), 0.8), load_classifier(export))


def test_cli_prints_the_text_and_annotates(export, held_out, tmp_path):
    x, labels = held_out
    page = synthetic_page(x, labels, np.random.default_rng(2), lines=2)
    path = write_image(tmp_path / "page.png", page.image / 255.0)
    result = subprocess.run([PYTHON, "-m", "neurodigits.cli", "read", "--model", str(export), str(path),
                             "--annotate", str(tmp_path / "out.png")], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    text = result.stdout.splitlines()
    assert [len(line) for line in text] == [len(line) for line in page.lines] and all(t.isdigit() for t in text)
    assert result.stderr.startswith("line 1: ")
    assert Image.open(tmp_path / "out.png").size == page.image.shape[::-1]


def test_words_are_split_at_wide_gaps_and_json_gives_each_character(export, held_out, tmp_path):
    x, labels = held_out
    text = ["12 3456 78", "90 1"]
    pool = {c: [i for i, label in enumerate(labels) if label == c] for c in set(labels)}
    index = [pool[c][k] for k, c in enumerate(c for line in text for c in line if c != " ")]
    page = synthetic_page(x[index], [labels[i] for i in index], np.random.default_rng(4), text=text)
    assert page.lines == text and [len(row) for row in page.boxes] == [8, 3]
    path = write_image(tmp_path / "words.png", page.image / 255.0)
    result = subprocess.run([PYTHON, "-m", "neurodigits.cli", "read", "--json", "--model", str(export), str(path)],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    lines = json.loads(result.stdout)
    assert [[len(word["text"]) for word in line["words"]] for line in lines] == [[2, 4, 2], [2, 1]]
    character = lines[0]["words"][1]["characters"][0]
    assert set(character) == {"char", "probability", "box"} and len(character["box"]) == 4
    assert lines[0]["text"] == " ".join(word["text"] for word in lines[0]["words"])
