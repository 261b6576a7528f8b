"""MNIST-style preprocessing of real-looking digit photos, bad images, and its import cost."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_helpers import write_image
from PIL import Image

from neurodigits.preprocess import (
    BlankImageError,
    ImageTooLargeError,
    UnreadableImageError,
    _components,
    _median,
    _quantiles,
    _window,
    load_digit,
    mnist_style,
    preprocess_image,
    read_grayscale,
)
from neurodigits.synth import SCAN_VARIANTS, held_out_digits, realistic_photo, scan_variant, uci_digits


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = held_out_digits(28)
    return x[:40], y[:40]


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def shaded_paper(digit: np.ndarray, side: int) -> np.ndarray:
    """A 28x28 bright-on-dark digit as dark ink on paper under a strong shadow, `side` px square."""
    ink = np.asarray(Image.fromarray(np.pad(digit, 10)).resize((side, side), Image.Resampling.BICUBIC)) / 255.0
    light = np.linspace(1.0, 0.55, side)[None, :]
    return (0.9 * (1 - ink) + 0.15 * ink) * light


def test_mnist_images_come_back_as_they_were(digits):
    x, _ = digits
    scores = [similarity(preprocess_image(d / 255.0, 28), d) for d in x]
    assert np.mean(scores) > 0.9


def test_ink_on_shaded_paper_any_size_looks_like_mnist(digits):
    x, _ = digits
    for side in (16, 90, 600):
        scores = [similarity(preprocess_image(shaded_paper(d, side), 28), d) for d in x[:15]]
        assert np.mean(scores) > 0.75, side


def test_polarity_does_not_matter(digits):
    gray = shaded_paper(digits[0][3], 120)
    assert similarity(preprocess_image(gray, 20), preprocess_image(1 - gray, 20)) > 0.95


def test_realistic_photos_decode_to_model_sized_images(digits):
    rng = np.random.default_rng(1)
    for digit in digits[0][:20]:
        image = load_digit(io.BytesIO(realistic_photo(digit, rng)), 20)
        assert image.shape == (20, 20) and image.dtype == np.uint8 and image.max() > 200


def test_broken_stroke_is_kept_and_dust_is_dropped(digits):
    gray = shaded_paper(digits[0][0], 200)
    gray[100:106, :] = 0.9 * np.linspace(1.0, 0.55, 200)[None, :]  # a gap across the digit
    gray[5:8, 5:8] = 0.1  # a speck in the corner
    assert similarity(preprocess_image(gray, 28), digits[0][0]) > 0.7


def test_a_character_of_faint_ink_only_is_framed_not_failed():
    """A cut from a page may hold only faint ink (under 0.05 of full strength): it is framed like any other."""
    ink = np.zeros((30, 12), np.float32)
    ink[3:27, 5:8] = 0.03
    framed = mnist_style(ink, 20)
    assert framed.shape == (20, 20) and framed.max() > 100  # a centred bar, at full strength
    assert framed[:, :8].max() == framed[:, -8:].max() == 0


def ruled_paper(squared: bool) -> np.ndarray:
    paper = np.full((120, 150), 0.9)
    paper[12::25] = 0.7
    if squared:
        paper[:, 12::25] = 0.7
    return paper


@pytest.mark.parametrize("gray", [np.full((50, 60), 0.8), np.random.default_rng(0).normal(0.7, 0.01, (300, 200)),
                                  np.tile(np.linspace(0.4, 0.9, 100), (80, 1)), ruled_paper(False), ruled_paper(True)])
def test_blank_images_are_refused(gray):
    with pytest.raises(BlankImageError, match="blank"):
        preprocess_image(np.clip(gray, 0, 1), 20)


def test_bad_files_name_the_file(tmp_path: Path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UnreadableImageError, match="notes.png: not a readable image"):
        read_grayscale(tmp_path / "notes.png")
    with pytest.raises(UnreadableImageError, match="missing.png: no such file"):
        load_digit(tmp_path / "missing.png", 20)
    Image.new("L", (8000, 6000)).save(tmp_path / "huge.png")
    with pytest.raises(ImageTooLargeError, match="huge.png: image is 8000x6000, over 40 megapixels"):
        load_digit(tmp_path / "huge.png", 20)
    with pytest.raises(BlankImageError, match="blank.png: image is blank"):
        load_digit(write_image(tmp_path / "blank.png", np.full((40, 40), 0.9)), 20)


def test_large_jpeg_is_read_shrunk(tmp_path: Path, digits):
    path = write_image(tmp_path / "big.jpg", shaded_paper(digits[0][5], 2000))
    assert max(read_grayscale(path, max_side=512).shape) <= 512
    assert similarity(load_digit(path, 28), digits[0][5]) > 0.75


def test_preprocess_imports_neither_scipy_nor_skimage():
    code = "import sys, neurodigits.preprocess; print(sorted({m.split('.')[0] for m in sys.modules}))"
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "scipy" not in modules and "skimage" not in modules


@pytest.mark.parametrize("variant", SCAN_VARIANTS)
def test_scans_are_never_refused_and_look_like_the_clean_digit(digits, variant):
    """Tight crops with ink on every edge, 16 px, 1-bit, 4-bit, faint ink, thick and thin strokes, ruled
    paper, EXIF-rotated photos: each read back close to the clean digit."""
    rng = np.random.default_rng(0)
    scores = [similarity(load_digit(io.BytesIO(scan_variant(d, variant, rng)), 20), preprocess_image(d / 255.0, 20))
              for d in digits[0][:20]]
    assert np.mean(scores) > 0.9


def test_uci_digits_read_the_same_in_either_polarity():
    """load_digits (8x8, 16 grey levels, cropped tight to the ink) upscaled: never refused, polarity-free."""
    images, _ = uci_digits()

    def png(image: np.ndarray) -> io.BytesIO:
        buffer = io.BytesIO()
        Image.fromarray(image).resize((32, 32), Image.Resampling.BICUBIC).save(buffer, "PNG")
        return buffer

    scores = [similarity(load_digit(png(d), 20), load_digit(png(255 - d), 20)) for d in images[:40]]
    assert np.mean(scores) > 0.97


def test_16_bit_scans_use_their_own_range(tmp_path: Path, digits):
    deep = (65535 * 0.3 + 65535 * 0.4 * (1 - digits[0][2] / 255.0)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    gray = read_grayscale(tmp_path / "deep.png")
    assert gray.min() == 0 and gray.max() == 1
    assert similarity(load_digit(tmp_path / "deep.png", 28), digits[0][2]) > 0.9


def test_components_are_scipys_8_connected_components():
    """The hand-rolled labelling (run-length union-find, for speed without importing SciPy) splits a mask as
    scipy.ndimage.label does with 8-connectivity, and names each blob 1 + the flat index of its last pixel."""
    from scipy import ndimage  # noqa: PLC0415

    rng = np.random.default_rng(0)
    for _ in range(500):
        mask = rng.random(tuple(rng.integers(1, 40, 2))) < rng.random()
        labels = _components(mask)
        want, count = ndimage.label(mask, structure=np.ones((3, 3)))
        assert np.array_equal(labels > 0, mask)
        for blob in range(1, count + 1):
            pixels = want == blob
            assert len(np.unique(labels[pixels])) == 1 and labels[pixels][0] == np.flatnonzero(pixels).max() + 1


def test_fast_statistics_equal_numpys_bit_for_bit():
    """The per-digit quantiles, medians and min/max windows are hand-rolled for speed: same values and
    types as np.percentile, np.median and an edge-padded window, on float and integer arrays of any size."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        values = (rng.random(int(rng.integers(1, 500))) ** 3).astype(np.float32 if trial % 2 else np.float64)
        for q in (0.01, 0.5, 0.75, 0.9, 0.99):
            got, want = _quantiles(values, (q,))[0], np.percentile(values, round(q * 100))
            assert got == want and type(got) is type(want)
        assert [*_quantiles(values, (0.01, 0.99), weak=False)] == [*np.percentile(values, [1, 99])]
        assert _median(values) == np.median(values) and type(_median(values)) is type(np.median(values))
        image = rng.integers(0, 50, tuple(rng.integers(1, 30, 2)))
        size = int(rng.choice([3, 7, 11, 21]))
        for array, reduce in itertools.product((image, image > 25), (np.minimum, np.maximum)):
            padded = np.pad(array, size // 2, mode="edge")
            windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
            want = (windows.min if reduce is np.minimum else windows.max)(axis=(2, 3))
            assert np.array_equal(_window(array, size, reduce), want)
