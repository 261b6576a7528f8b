"""Realistic test images from held-out digits: photos of ink on paper, scans (tight crops, 16 px,
1-bit, 4-bit, low contrast, thick and thin strokes, ruled paper, EXIF-rotated photos), and whole
pages of numbers.

Every image is built from a digit of the embedded set's test split (never trained on), so the
label is known. Used by the tests and by benchmarks/realistic.py and benchmarks/read_pages.py.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from neurodigits import NeuroDigitsError
from neurodigits.data import load_dataset, prepare
from neurodigits.data.dataset import model_images
from neurodigits.inference import Classifier, classify
from neurodigits.params import DataParams
from neurodigits.preprocess import to_model_input


def held_out_digits(size: int = 28) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The pipeline's held-out split of the embedded set (default data params) at size x size:
    uint8 (N, size, size) bright-on-dark images, class indices, class names."""
    params = DataParams(image_size=size)
    prepared = prepare(load_dataset(params), params)
    return prepared.x_test, prepared.y_test, prepared.classes


def clean_images(classifier: Classifier, images: np.ndarray) -> np.ndarray:
    """Stored held-out images (uint8, bright ink on dark) as the classifier's own evaluation saw them: resized,
    or put through `predict`'s preprocessing when it was trained that way (data.preprocess), as `prepare` does."""
    return model_images(images, DataParams(image_size=classifier.image_size, preprocess=classifier.preprocessed))[0]


def clean_accuracy(classifier: Classifier) -> float:
    """The classifier's accuracy on the clean held-out digits: the figure realistic ones are compared to."""
    x, y, _ = held_out_digits(28)
    return float((classifier.probabilities(to_model_input(clean_images(classifier, x))).argmax(1) == y).mean())


def predict_path_accuracy(classifier: Classifier, images: list[bytes], labels: np.ndarray,
                          classes: list[str]) -> tuple[float, int]:
    """Accuracy of `predict` on encoded images (decoded and preprocessed exactly as it does; a refused
    image counts as wrong) and how many were refused."""
    from neurodigits.preprocess import load_digit  # noqa: PLC0415

    correct = refused = 0
    for image, label in zip(images, labels):
        try:
            digit = load_digit(io.BytesIO(image), classifier.image_size)
        except NeuroDigitsError:
            refused += 1
            continue
        correct += classify(classifier, digit[None])[0].label == classes[label]
    return correct / len(images), refused


def _paper(shape: tuple[int, int], rng: np.random.Generator, shadow: float) -> tuple[np.ndarray, np.ndarray]:
    """Uneven grey paper (reflectance in [0, 1]) and its lighting: a linear shadow in a random direction."""
    level = rng.uniform(0.6, 0.95)
    blotches = rng.normal(0, 0.03, (4, 4)).astype(np.float32)
    uneven = np.asarray(Image.fromarray(blotches, mode="F").resize(shape[::-1], Image.Resampling.BICUBIC))
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    ramp = (np.cos(angle) * rows / shape[0] + np.sin(angle) * cols / shape[1])
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    return np.clip(level + uneven, 0, 1), 1 - shadow * ramp


def _scaled_ink(digit: np.ndarray, height: int, stroke: float, angle: float, longer_side: bool = False) -> np.ndarray:
    """A 28x28 digit's ink (cropped) scaled to `height` px (its longer side, with `longer_side`), strokes
    grown (stroke > 0) or shrunk by `stroke` MNIST pixels, rotated by `angle` degrees: float32 alpha in [0, 1]."""
    rows, cols = np.nonzero(digit)
    crop = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = height / (max(crop.shape) if longer_side else crop.shape[0])
    big = Image.fromarray(crop).resize((max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                                       Image.Resampling.BICUBIC)
    radius = round(abs(stroke) * scale / 2)
    if radius:
        big = big.filter((ImageFilter.MaxFilter if stroke > 0 else ImageFilter.MinFilter)(2 * radius + 1))
    big = big.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    return np.asarray(big.crop(big.getbbox()), dtype=np.float32) / 255.0


def _encode(gray: np.ndarray, rng: np.random.Generator) -> bytes:
    """JPEG at a random quality (mostly) or PNG."""
    image = Image.fromarray((np.clip(gray, 0, 1) * 255).round().astype(np.uint8))
    buffer = io.BytesIO()
    if rng.random() < 0.7:
        image.save(buffer, "JPEG", quality=int(rng.integers(30, 95)))
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def _finish(paper: tuple[np.ndarray, np.ndarray], alpha: np.ndarray, rng: np.random.Generator,
            size: tuple[int, int], blur: float, noise: float) -> np.ndarray:
    """Ink `alpha` on lit paper, camera blur and downsampling to (rows, cols), sensor noise."""
    reflectance, light = paper
    ink = rng.uniform(0.05, 0.35)
    image = Image.fromarray((np.clip((reflectance * (1 - alpha) + ink * alpha) * light, 0, 1) * 255).astype(np.uint8))
    image = image.resize(size[::-1], Image.Resampling.BOX)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    out = np.asarray(image, dtype=np.float32) / 255.0
    return out + rng.normal(0, noise, out.shape).astype(np.float32)


def realistic_photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """One held-out 28x28 digit as a photo or scan: dark ink on uneven, shadowed grey paper
    (a quarter of the time inverted, white-on-black), any size from 16 to 600 px, random margins,
    thin or thick strokes, a small rotation, blur, noise and JPEG compression: encoded bytes."""
    side = int(np.exp(rng.uniform(np.log(16), np.log(600))))
    shape = (side, max(16, int(side * rng.uniform(0.75, 1.33))))
    fill = rng.uniform(0.55, 0.9) if side < 40 else rng.uniform(0.3, 0.85)
    render = max(1, -(-160 // side))  # draw at >= 160 px, then downsample like a camera
    big = (shape[0] * render, shape[1] * render)
    alpha = _scaled_ink(digit, max(8, round(fill * min(big))), stroke=rng.uniform(-0.7, 1.5),
                        angle=rng.uniform(-12, 12))
    if alpha.shape[0] > big[0] or alpha.shape[1] > big[1]:  # a wide digit: shrink it to fit
        fit = min(big[0] / alpha.shape[0], big[1] / alpha.shape[1])
        alpha = np.asarray(Image.fromarray(alpha, mode="F").resize(
            (int(alpha.shape[1] * fit), int(alpha.shape[0] * fit)), Image.Resampling.BILINEAR))
    alpha = alpha * rng.uniform(0.8, 1.0)
    top = int(rng.integers(0, big[0] - alpha.shape[0] + 1))
    left = int(rng.integers(0, big[1] - alpha.shape[1] + 1))
    placed = np.zeros(big, dtype=np.float32)
    placed[top:top + alpha.shape[0], left:left + alpha.shape[1]] = alpha
    for _ in range(rng.poisson(0.5)):  # dust
        y, x, r = rng.integers(0, big[0]), rng.integers(0, big[1]), max(1, big[0] // 150)
        speck = placed[max(0, y - r):y + r, max(0, x - r):x + r]
        np.maximum(speck, 0.7, out=speck)
    gray = _finish(_paper(big, rng, rng.uniform(0, 0.35)), placed, rng, shape,
                   blur=rng.uniform(0, 1.2) * min(1.0, side / 60), noise=rng.uniform(0, 0.04))
    return _encode(1 - gray if rng.random() < 0.25 else gray, rng)


SCAN_VARIANTS = ("tight", "16px", "binary", "4-bit", "low-contrast", "thick", "thin", "ruled", "exif-rotated")


def _save(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _gray_image(gray: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(gray, 0, 1) * 255).round().astype(np.uint8))


def _tight(digit: np.ndarray, side: int) -> np.ndarray:
    """A 28x28 digit cropped to its ink, longer side scaled to `side` px: alpha in [0, 1], ink on every edge."""
    rows, cols = np.nonzero(digit > 32)
    crop = Image.fromarray(digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    scale = side / max(crop.size)
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.Resampling.BOX)
    return np.asarray(crop, dtype=np.float32) / 255.0


def _stroke_changed(digit: np.ndarray, pixels: int) -> np.ndarray:
    """A 28x28 digit drawn 4x larger with strokes grown (pixels > 0) or shrunk by `pixels` at that size."""
    big = Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC)
    big = big.filter((ImageFilter.MaxFilter if pixels > 0 else ImageFilter.MinFilter)(2 * abs(pixels) + 1))
    return np.asarray(big, dtype=np.float32) / 255.0


def scan_variant(digit: np.ndarray, variant: str, rng: np.random.Generator) -> bytes:
    """One held-out 28x28 digit as a scan of kind `variant` (one of SCAN_VARIANTS), encoded:
    tight: cropped to the ink, 16 px scaled up to 64 (strokes touch the edges), dark on white;
    16px: the whole 28x28 frame shrunk to 16x16; binary: a tight 16 px 1-bit PNG; 4-bit: a tight
    16 px 16-level PNG; low-contrast: a tight 16 px scan, ink 0.1-0.2 darker than grey paper;
    thick / thin: strokes grown or shrunk (marker / fine pencil) on paper; ruled: on lined or
    squared paper; exif-rotated: a realistic photo stored rotated, upright only through its EXIF tag."""
    if variant == "tight":
        small = _tight(digit, 16)
        up = Image.fromarray(small, mode="F").resize((small.shape[1] * 4, small.shape[0] * 4), Image.Resampling.BICUBIC)
        return _save(_gray_image(0.97 - 0.9 * np.clip(np.asarray(up), 0, 1)))
    if variant == "16px":
        small = np.asarray(Image.fromarray(digit).resize((16, 16), Image.Resampling.BOX), dtype=np.float32) / 255
        return _save(_gray_image(0.95 - 0.85 * small))
    if variant == "binary":
        return _save(Image.fromarray(_tight(digit, 16) < 0.5))
    if variant == "4-bit":
        return _save(_gray_image(np.round(15 * (1 - _tight(digit, 16))) / 15), bits=4)
    if variant == "low-contrast":
        paper, contrast = rng.uniform(0.7, 0.9), rng.uniform(0.1, 0.2)
        gray = paper - contrast * _tight(digit, 16)
        return _save(_gray_image(gray + rng.normal(0, 0.01, gray.shape)))
    if variant in ("thick", "thin"):
        alpha = _stroke_changed(digit, 4 if variant == "thick" else -2)
        side = int(rng.integers(48, 160))
        gray = np.asarray(_gray_image(0.92 - 0.8 * alpha).resize((side, side), Image.Resampling.BOX))
        return _save(Image.fromarray(gray), "JPEG", quality=90)
    if variant == "ruled":
        side = int(rng.integers(64, 160))
        alpha = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
        paper = np.full((side, side), rng.uniform(0.85, 0.97), np.float32)
        gap, width, shade = side // int(rng.integers(3, 6)), max(1, side // 60), rng.uniform(0.15, 0.3)
        offset = int(rng.integers(0, gap))
        for start in range(offset, side, gap):
            paper[start:start + width] -= shade
            if rng.random() < 0.5:  # squared paper
                paper[:, start:start + width] -= shade
        gray = paper * (1 - alpha) + 0.1 * alpha
        return _save(_gray_image(gray + rng.normal(0, 0.01, gray.shape)), "JPEG", quality=90)
    if variant == "exif-rotated":
        image = Image.open(io.BytesIO(realistic_photo(digit, rng))).convert("L")
        orientation, transpose = [(6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180),
                                  (8, Image.Transpose.ROTATE_270)][int(rng.integers(0, 3))]
        exif = Image.Exif()
        exif[0x0112] = orientation  # the viewer turns it back upright
        return _save(image.transpose(transpose), "JPEG", quality=90, exif=exif)
    raise ValueError(f"unknown scan variant {variant!r}; choose from {', '.join(SCAN_VARIANTS)}")


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's `load_digits` (UCI optical digits: 1,797 digits by 43 writers, 8x8, 16 grey
    levels, bright ink on dark, shipped offline in the wheel) as 8-bit images, and their labels."""
    from sklearn.datasets import load_digits  # noqa: PLC0415 - benchmarks and tests only

    digits = load_digits()
    return np.round(digits.images * (255 / 16)).astype(np.uint8), digits.target


@dataclass(frozen=True)
class Page:
    """A generated page: grayscale uint8 image, its lines of text, and each digit's box per line."""

    image: np.ndarray
    lines: list[str]
    boxes: list[list[tuple[int, int, int, int]]]  # (top, left, bottom, right)


def synthetic_page(digits: np.ndarray, labels: list[str], rng: np.random.Generator,
                   lines: int | None = None, text: list[str] | None = None) -> Page:
    """Numbers of 2-7 held-out digits in 1-4 lines on a noisy, shadowed page, digits drawn in
    order from `digits` (28x28 bright-on-dark) with text `labels`; random heights, spacing, jitter.
    With `text` (lines of space-separated words, one image in `digits` per character, in order), those
    words instead: characters closer together, each scaled by its longer side, wide gaps between words."""
    lines = len(text) if text else lines or int(rng.integers(1, 5))
    height = int(rng.integers(28, 72))
    spacing = (0.1, 0.4) if text else (0.15, 0.6)
    placed, boxes, texts, used = [], [], [], 0
    y = int(rng.integers(height // 2, 2 * height))
    for number in range(lines):
        counts = [len(word) for word in text[number].split(" ")] if text else [int(rng.integers(2, 8))]
        x, row_boxes, line = int(rng.integers(height // 2, 3 * height)), [], ""
        for w, count in enumerate(counts):
            if w:
                x += int(height * rng.uniform(0.8, 1.4))
                line += " "
            for digit, label in zip(digits[used:used + count], labels[used:used + count]):
                alpha = _scaled_ink(digit, int(height * rng.uniform(0.85, 1.1)), stroke=rng.uniform(-0.3, 1.0),
                                    angle=rng.uniform(-6, 6), longer_side=bool(text))
                top = y + int(rng.integers(-height // 10, height // 10 + 1))
                if text:  # centred on the line: a wide letter scaled by its longer side is short
                    top += (height - alpha.shape[0]) // 2
                placed.append((top, x, alpha))
                row_boxes.append((top, x, top + alpha.shape[0], x + alpha.shape[1]))
                line += label
                x += alpha.shape[1] + int(height * rng.uniform(*spacing))
            used += count
        boxes.append(row_boxes)
        texts.append(line)
        y += int(height * rng.uniform(1.6, 2.4))
    shape = (y + height // 2, max(box[3] for row in boxes for box in row) + int(rng.integers(height // 2, 3 * height)))
    alpha = np.zeros(shape, dtype=np.float32)
    for top, left, ink in placed:
        region = alpha[top:top + ink.shape[0], left:left + ink.shape[1]]
        np.maximum(region, ink, out=region)
    gray = _finish(_paper(shape, rng, rng.uniform(0, 0.3)), alpha, rng, shape, blur=rng.uniform(0, 0.8),
                   noise=rng.uniform(0, 0.02))
    return Page((np.clip(gray, 0, 1) * 255).round().astype(np.uint8), texts, boxes)


def with_specks(page: Page, count: int, rng: np.random.Generator) -> Page:
    """The page with `count` dark specks (dust, pencil grain): squares of 3-6 px at 0.2 of white, anywhere."""
    image = page.image.copy()
    rows, cols = rng.integers(0, image.shape[0] - 6, count), rng.integers(0, image.shape[1] - 6, count)
    for row, col, side in zip(rows, cols, rng.integers(3, 7, count)):
        image[row:row + side, col:col + side] = round(0.2 * 255)
    return Page(image, page.lines, page.boxes)


def text_page(lines: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Lines of handwriting (uint8 ink maps, bright on dark, any sizes) set one under another on a page as a
    paragraph is written: margins, a little indentation, uneven line spacing, grey paper with light noise.
    Returns the page (float32 grayscale in [0, 1], dark ink) and each line's box (top, left, bottom, right)."""
    gap = max(line.shape[0] for line in lines)
    width = max(line.shape[1] for line in lines) + 2 * gap
    tops, y = [], gap
    for line in lines:
        tops.append(y)
        y += line.shape[0] + int(rng.integers(gap // 4, gap // 2 + 1))
    page = np.zeros((y + gap, width), dtype=np.float32)
    boxes = []
    for line, top in zip(lines, tops):
        left = gap + int(rng.integers(0, gap // 2 + 1))
        page[top:top + line.shape[0], left:left + line.shape[1]] = line / 255.0
        boxes.append((top, left, top + line.shape[0], left + line.shape[1]))
    paper = rng.uniform(0.85, 0.97)
    gray = paper * (1 - 0.9 * page) + rng.normal(0, 0.02, page.shape)
    return np.clip(gray, 0, 1).astype(np.float32), boxes
