"""Realistic test images from held-out digits: photos of ink on paper, and whole pages of numbers.

Every image is built from a digit of the embedded set's test split (never trained on), so the
label is known. Used by the tests and by benchmarks/realistic.py and benchmarks/read_pages.py.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from neurodigits.data import load_dataset, prepare
from neurodigits.inference import Classifier
from neurodigits.params import DataParams
from neurodigits.preprocess import to_model_input


def held_out_digits(size: int = 28) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The pipeline's held-out split of the embedded set (default data params) at size x size:
    uint8 (N, size, size) bright-on-dark images, class indices, class names."""
    params = DataParams(image_size=size)
    prepared = prepare(load_dataset(params), params)
    return prepared.x_test, prepared.y_test, prepared.classes


def clean_accuracy(classifier: Classifier) -> float:
    """The classifier's accuracy on the clean held-out digits: the figure realistic ones are compared to."""
    x, y, _ = held_out_digits(classifier.image_size)
    return float((classifier.probabilities(to_model_input(x)).argmax(1) == y).mean())


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
