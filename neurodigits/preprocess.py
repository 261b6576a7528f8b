"""Image -> model input, MNIST style. Shared by data sources, training, evaluation and inference.

Only NumPy and Pillow: `neurodigits predict` imports this module and must start fast.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageOps, UnidentifiedImageError

from neurodigits import NeuroDigitsError

MNIST_SIZE, MNIST_BOX = 28, 20  # MNIST fits each digit's longer side into 20 px of a 28 px frame
MNIST_CENTRE = 14.0  # where MNIST puts the centre of mass (row, column), measured on the embedded set
MNIST_STROKE = 2.0  # median stroke width of the embedded set at 28x28, in pixels (2 * area / perimeter)
MAX_PIXELS = 40_000_000
WORK_SIDE = 256  # a single digit is analysed with its longer side at most this long
MIN_WORK_SIDE = 128  # ... and at least this long
BACKGROUND_SIDE = 64  # the paper's shading is estimated at this resolution
MIN_CONTRAST = 0.08  # weaker ink than this (on a 0-1 scale) counts as a blank image
FLOOR = 0.4  # residuals under this share of the typical ink strength are paper


class UnreadableImageError(NeuroDigitsError):
    """Not an image file (or a missing one)."""


class ImageTooLargeError(NeuroDigitsError):
    """An image over MAX_PIXELS."""


class BlankImageError(NeuroDigitsError):
    """An image without ink."""


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S) images -> float32 (N, S*S) in [0, 1], row-major: what every model takes."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (N, H, W) images to (N, size, size) with antialiasing; a no-op at the native size."""
    if images.shape[1:] == (size, size):
        return images
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return out


def read_grayscale(path: str | Path | BinaryIO, max_side: int | None = None) -> np.ndarray:
    """Decode an image file (a path or a binary file object) to float32 grayscale in [0, 1], EXIF
    rotation applied, transparency on white; with `max_side`, shrunk to fit (cheaply for JPEG)."""
    name = getattr(path, "name", path) if not isinstance(path, (str, Path)) else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageTooLargeError(f"{name}: image is {image.width}x{image.height}, over "
                                           f"{MAX_PIXELS // 1_000_000} megapixels; downscale it first")
                if max_side:
                    image.draft("L", (max_side, max_side))
                image = ImageOps.exif_transpose(image)
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    background = Image.new("RGBA", image.size, "white")
                    image = Image.alpha_composite(background, image.convert("RGBA"))
                image = image.convert("L")
                if max_side and max(image.size) > max_side:
                    image.thumbnail((max_side, max_side), Image.Resampling.BOX)
                return np.asarray(image, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise UnreadableImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise UnreadableImageError(f"{name}: is a folder, not an image file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageTooLargeError(f"{name}: image is over {MAX_PIXELS // 1_000_000} megapixels; "
                               "downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImageError(f"{name}: not a readable image ({exc.__class__.__name__}); "
                               "give a PNG or JPEG file") from None


def _resize(array: np.ndarray, shape: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize a float32 2-D array to (rows, columns)."""
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), resample), dtype=np.float32)


def _window(array: np.ndarray, size: int, reduce: np.ufunc) -> np.ndarray:
    """A size x size sliding-window min or max (edges replicated), as two 1-D passes."""
    pad = size // 2
    for axis in (0, 1):
        padded = np.pad(array, [(pad, pad) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        array = reduce.reduce(sliding_window_view(padded, size, axis=axis), axis=-1)
    return array


def _background(bright_ink: np.ndarray) -> np.ndarray:
    """A smooth estimate of the paper under an ink-is-bright image: a wide grey opening at low resolution."""
    scale = min(1.0, BACKGROUND_SIDE / max(bright_ink.shape))
    small_shape = (max(1, round(bright_ink.shape[0] * scale)), max(1, round(bright_ink.shape[1] * scale)))
    small = _resize(bright_ink, small_shape, Image.Resampling.BOX)
    size = max(3, min(small_shape) // 3 | 1)
    opened = _window(_window(small, size, np.minimum), size, np.maximum)
    return _resize(opened, bright_ink.shape, Image.Resampling.BILINEAR)


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Grayscale in [0, 1] -> ink strength in [0, 1] on a zero background, whatever the polarity.

    The background is what the border mostly shows. Uneven paper and shadows are estimated by a
    smooth grey opening (of the inverted image for dark ink on paper, whose ink is then measured
    relative to the local paper brightness, so shadows do not fade it); the ink is scaled from
    the noise floor (zero) to the typical ink strength (one), so faint and bold ink look alike.
    """
    gray = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    low, high = np.percentile(gray, [1, 99])
    if np.median(border) > (low + high) / 2:  # dark ink on paper: ink = share of the light it absorbs
        background = _background(1.0 - gray)
        residual = (1.0 - gray - background) / np.maximum(1.0 - background, 0.05)
    else:
        residual = gray - _background(gray)
    residual = sliding_window_view(np.pad(residual, 1, mode="edge"), (3, 3)).mean(axis=(-2, -1))  # denoise
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    candidates = residual[residual > max(MIN_CONTRAST / 2, 5 * noise)]
    if len(candidates) < 3 or np.percentile(candidates, 90) < MIN_CONTRAST:
        raise BlankImageError("image is blank (no ink found); give an image of one digit")
    strong = float(np.percentile(candidates, 90))
    floor = max(3 * noise, FLOOR * strong)
    full = float(np.percentile(residual[residual > floor], 50))
    return np.clip((residual - floor) / max(full - floor, 1e-3), 0.0, 1.0)


def _components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels (0 = background) of a small boolean mask."""
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    while True:
        spread = np.where(mask, _window(labels, 3, np.maximum), 0)
        if np.array_equal(spread, labels):
            return labels
        labels = spread


def main_ink(ink: np.ndarray, min_share: float = 0.05) -> np.ndarray:
    """Keep the ink that belongs to the digit: blobs holding at least `min_share` of the ink mass
    (dust and specks go; a digit's broken strokes, a few pixels apart, stay)."""
    step = max(1, -(-max(ink.shape) // BACKGROUND_SIDE))
    rows, cols = -(-ink.shape[0] // step) * step, -(-ink.shape[1] // step) * step
    padded = np.pad(ink, ((0, rows - ink.shape[0]), (0, cols - ink.shape[1])))
    blocks = padded.reshape(rows // step, step, cols // step, step)
    labels = _components(_window(blocks.max(axis=(1, 3)) > 0, 3, np.maximum))
    mass = np.bincount(labels.ravel(), weights=blocks.sum(axis=(1, 3)).ravel())
    mass[0] = 0
    keep = mass >= min_share * mass.sum()
    full = np.repeat(np.repeat(keep[labels], step, axis=0), step, axis=1)
    return np.where(full[:ink.shape[0], :ink.shape[1]], ink, 0.0)


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the inked area over its perimeter."""
    mask = ink > 0.5
    perimeter = np.count_nonzero(np.diff(mask, axis=0)) + np.count_nonzero(np.diff(mask, axis=1))
    return 2 * np.count_nonzero(mask) / max(perimeter, 1)


def _normalise_stroke(crop: np.ndarray, scale: float) -> np.ndarray:
    """Thicken or thin the strokes of a crop (to be scaled by `scale` into the 20 px box) towards
    MNIST's typical width: a grey dilation or erosion at a resolution where one step is small."""
    up = max(1.0, 4 * scale)  # at least 4 working pixels per MNIST pixel
    if up > 1:
        crop = _resize(crop, (round(crop.shape[0] * up), round(crop.shape[1] * up)), Image.Resampling.BILINEAR)
    per_mnist_pixel = up / scale
    width = stroke_width(crop)
    change = np.clip(MNIST_STROKE * per_mnist_pixel - width, -0.3 * width, 2 * per_mnist_pixel)
    steps = int(round(change / 2))
    if not steps:
        return crop
    changed = _window(np.pad(crop, abs(steps)), 2 * abs(steps) + 1, np.maximum if steps > 0 else np.minimum)
    return changed if changed.max() > 0.5 else crop  # never erode a digit away


def mnist_style(ink: np.ndarray, size: int) -> np.ndarray:
    """Crop an ink map to its ink, bring its strokes to MNIST's width, fit the longer side in MNIST's
    20 px box, centre the centre of mass in a 28x28 frame, then resize to size x size like the
    training data: uint8 (size, size)."""
    rows, cols = np.nonzero(ink > 0)
    if not len(rows):
        raise BlankImageError("image is blank (no ink found); give an image of one digit")
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    crop = _normalise_stroke(crop, MNIST_BOX / max(crop.shape))
    rows, cols = np.nonzero(crop > 0.05)
    crop = crop[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = MNIST_BOX / max(crop.shape)
    shape = (max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale)))
    digit = np.clip(_resize(crop, shape, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR), 0, 1)
    frame = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    top, left = (MNIST_SIZE - shape[0]) // 2, (MNIST_SIZE - shape[1]) // 2
    frame[top:top + shape[0], left:left + shape[1]] = digit
    total = frame.sum()
    cy = (frame.sum(axis=1) * np.arange(MNIST_SIZE)).sum() / total
    cx = (frame.sum(axis=0) * np.arange(MNIST_SIZE)).sum() / total
    moved = Image.fromarray(frame, mode="F").transform(
        frame.shape[::-1], Image.Transform.AFFINE, (1, 0, cx - MNIST_CENTRE, 0, 1, cy - MNIST_CENTRE),
        Image.Resampling.BILINEAR)
    frame = np.asarray(moved, dtype=np.float32)
    frame = np.clip(frame / max(frame.max(), 1e-6) * 255, 0, 255).round().astype(np.uint8)
    return resize_images(frame[None], size)[0]


def preprocess_image(gray: np.ndarray, size: int) -> np.ndarray:
    """Any grayscale digit image in [0, 1] (either polarity, any size) -> uint8 (size, size), MNIST style."""
    gray = np.asarray(gray, dtype=np.float32)
    if not MIN_WORK_SIDE <= max(gray.shape) <= WORK_SIDE:  # shrink big photos, enlarge tiny crops smoothly
        scale = np.clip(max(gray.shape), MIN_WORK_SIDE, WORK_SIDE) / max(gray.shape)
        gray = _resize(gray, (max(1, round(gray.shape[0] * scale)), max(1, round(gray.shape[1] * scale))),
                       Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC)
    return mnist_style(main_ink(ink_map(gray)), size)


def load_digit(path: str | Path | BinaryIO, size: int) -> np.ndarray:
    """Read one digit image file and preprocess it; errors name the file."""
    gray = read_grayscale(path, max_side=2 * WORK_SIDE)
    try:
        return preprocess_image(gray, size)
    except NeuroDigitsError as exc:
        raise type(exc)(f"{getattr(path, 'name', path)}: {exc}") from None
