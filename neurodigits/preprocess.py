"""Image -> model input, MNIST style. Shared by data sources, training, evaluation and inference.

Only NumPy and Pillow: `neurodigits predict` imports this module and must start fast.
"""

from __future__ import annotations

import functools
import io
import math
import multiprocessing
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from neurodigits import NeuroDigitsError

MNIST_SIZE, MNIST_BOX = 28, 20  # MNIST fits each digit's longer side into 20 px of a 28 px frame
MNIST_CENTRE = 14.0  # where MNIST puts the centre of mass (row, column), measured on the embedded set
MNIST_STROKE = 2.0  # median stroke width of the embedded set at 28x28, in pixels (2 * area / perimeter)
MAX_PIXELS = 40_000_000
MAX_PAGE_SIDE = 3000  # pages and line images are read shrunk to this, at most
WORK_SIDE = 96  # a single digit is analysed with its longer side at most this long (the answer is 20 px)
MIN_WORK_SIDE = 64  # ... and at least this long (tiny scans are enlarged smoothly)
BACKGROUND_SIDE = 32  # the paper's shading and the digit's blobs are found at this resolution
MIN_CONTRAST = 0.08  # weaker ink than this (on a 0-1 scale) counts as a blank image
PARALLEL_CHUNK = 32  # images per task sent to a worker process
FLOOR = 0.4  # residuals under this share of the typical ink strength are paper
RULE_COVERAGE = 0.95  # a row (column) inked along this share of its length is a printed rule ...
RULE_WIDTH = 0.06  # ... if the run of such rows is at most this share of the image thick


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
    rotation applied, transparency on white, any bit depth (1-bit to 16-bit); with `max_side`, shrunk to
    fit (cheaply for JPEG: decoded at a reduced scale)."""
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
                ImageOps.exif_transpose(image, in_place=True)
                if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float scans: their own range
                    image = image.convert("F")
                elif image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    background = Image.new("RGBA", image.size, "white")
                    image = Image.alpha_composite(background, image.convert("RGBA")).convert("L")
                else:
                    image = image.convert("L")
                if max_side and max(image.size) > max_side:
                    image.thumbnail((max_side, max_side), Image.Resampling.BOX)
                gray = np.asarray(image, dtype=np.float32)
                if image.mode == "F":
                    low, high = float(gray.min()), float(gray.max())
                    return (gray - low) / max(high - low, 1e-6)
                return gray / 255.0
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
    array = np.ascontiguousarray(array, dtype=np.float32)
    image = Image.frombuffer("F", array.shape[::-1], array, "raw", "F", 0, 1)
    return np.asarray(image.resize((shape[1], shape[0]), resample), dtype=np.float32)


def _window(array: np.ndarray, size: int, reduce: np.ufunc) -> np.ndarray:
    """A size x size sliding-window min or max (odd size, edges replicated, which for a min or max is the
    window clipped to the image), per axis by doubling: runs of 1, 2, 4, ... pixels reduced with themselves
    shifted, then two overlapping runs cover the window (log2(size) passes instead of size)."""
    for axis in (0, 1):
        source = array if axis == 0 else array.T
        half = min(size // 2, len(source) - 1)
        if half < 1:
            continue
        n, length = len(source), 2 * half + 1
        run = np.empty((n + 2 * half,) + source.shape[1:], source.dtype)
        run[:half], run[half:half + n], run[half + n:] = source[0], source, source[-1]
        span = 1
        while 2 * span <= length:
            run = reduce(run[:-span], run[span:])
            span *= 2
        out = reduce(run[:n], run[length - span:length - span + n])
        array = out if axis == 0 else out.T
    return array


def _mean3(array: np.ndarray) -> np.ndarray:
    """A 3x3 mean (edges replicated): removes pixel noise."""
    padded = np.empty((array.shape[0] + 2, array.shape[1] + 2), array.dtype)  # np.pad(mode="edge"), faster
    padded[1:-1, 1:-1] = array
    padded[0, 1:-1], padded[-1, 1:-1] = array[0], array[-1]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def _quantiles(values: np.ndarray, qs: Sequence[float], weak: bool = True) -> list[np.floating]:
    """np.quantile(values, q) for each q in `qs` (linear method), bit for bit and of the same type, from
    one partial sort and without np.quantile's overhead, which dominates on the small arrays of one digit.
    `weak=False` gives the float64 values np.quantile gives when q is an array."""
    values = np.ravel(values)
    last = values.size - 1
    virtual = [last * q for q in qs]  # numpy's virtual index for the linear method
    below = [min(max(math.floor(v), 0), last) for v in virtual]
    part = np.partition(values, sorted({i for b in below for i in (b, min(b + 1, last))}))
    out = []
    for v, b in zip(virtual, below):
        low, high = part[b], part[min(b + 1, last) if v < last else last]
        t = v - math.floor(v) if 0 <= v < last else 0.0
        t = t if weak else np.float64(t)
        diff = high - low
        out.append(high - diff * (1 - t) if t >= 0.5 else low + diff * t)
    return out


def _median(values: np.ndarray) -> np.floating:
    """np.median of an array, bit for bit and of the same type."""
    values = np.ravel(values)
    half = values.size // 2
    if values.size % 2:
        return np.partition(values, half)[half]
    part = np.partition(values, (half - 1, half))
    return (part[half - 1] + part[half]) / 2


@functools.lru_cache(maxsize=64)
def _plane_terms(shape: tuple[int, int]) -> np.ndarray:
    """(rows * columns, 3) terms [1, y, x] of a plane over an image of `shape`, pixels in raster order, y and x
    in [-1, 1]."""
    rows, cols = np.mgrid[-1:1:shape[0] * 1j, -1:1:shape[1] * 1j]
    terms = np.stack([np.ones_like(rows), rows, cols], axis=-1).reshape(-1, 3)
    terms.flags.writeable = False
    return terms


def _paper_plane(small: np.ndarray, paper: np.ndarray) -> tuple[np.ndarray, float]:
    """A plane (a linear shadow) fitted to the paper pixels of a small image (first to the darker three
    quarters, where no faint ink is, then to all within three times the fit's spread), and a tolerance
    of three times that spread."""
    terms = _plane_terms(small.shape)
    keep = paper & (small <= _quantiles(small[paper], (0.75,))[0])
    for _ in range(2):
        a = terms.take(np.flatnonzero(keep), axis=0)  # terms[keep.ravel()], four times faster
        try:  # the normal equations of three terms: a 3x3 solve, far cheaper than an SVD
            coef = np.linalg.solve(a.T @ a, a.T @ small[keep])
        except np.linalg.LinAlgError:  # too few paper pixels to fix a plane
            coef = np.linalg.lstsq(a, small[keep], rcond=None)[0]
        plane = (terms @ coef).reshape(small.shape)
        residual = small - plane
        spread = max(0.01, 1.4826 * float(_median(np.abs(residual[keep]))))
        keep = paper & (np.abs(residual) < 3 * spread)
        if np.count_nonzero(keep) < 12:
            break
    return plane, 3 * spread


def _background(bright_ink: np.ndarray, middle: float) -> np.ndarray:
    """A smooth estimate of the paper under an ink-is-bright image, at low resolution: a wide grey opening,
    kept near a plane fitted to the paper (pixels under `middle`). The opening follows uneven paper and
    shadows; the plane stops it from taking thick strokes along the border for paper, and from lagging
    behind a shadow at the border."""
    scale = min(1.0, BACKGROUND_SIDE / max(bright_ink.shape))
    small_shape = (max(1, round(bright_ink.shape[0] * scale)), max(1, round(bright_ink.shape[1] * scale)))
    small = _resize(bright_ink, small_shape, Image.Resampling.BOX)
    size = max(3, max(small_shape) // 3 | 1)  # the longer side: a narrow crop of a 1 is all stroke across
    opened = _window(_window(small, size, np.minimum), size, np.maximum)
    paper = small < middle
    if np.count_nonzero(paper) >= 12:
        plane, tolerance = _paper_plane(small, paper)
        opened = np.clip(opened, plane - tolerance, plane + tolerance)
    return _resize(opened, bright_ink.shape, Image.Resampling.BILINEAR)


def _ink_is_dark(gray: np.ndarray, middle: float) -> bool:
    """Whether the paper is the bright side: what most of the border and most of the image show. Both
    count, because a crop tight to the ink has ink on its border and a margin-framed digit shows
    mostly ink when drawn with a thick marker."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return np.count_nonzero(border > middle) / border.size + np.count_nonzero(gray > middle) / gray.size > 1


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Grayscale in [0, 1] -> ink strength in [0, 1] on a zero background, whatever the polarity.

    The paper is the side most of the image and most of its border show. Uneven paper and shadows are
    estimated by a smooth grey opening (of the inverted image for dark ink on paper, whose ink is then
    measured relative to the local paper brightness, so shadows do not fade it); the ink is scaled from
    the noise floor (zero) to the typical ink strength (one), so faint and bold ink look alike.
    """
    gray = np.asarray(gray, dtype=np.float32)
    low, high = _quantiles(gray, (0.01, 0.99), weak=False)
    dark_ink = _ink_is_dark(gray, (low + high) / 2)
    bright = 1.0 - gray if dark_ink else gray
    middle = (2 - high - low if dark_ink else high + low) / 2
    paper = bright < middle
    background = _background(bright, middle)
    residual = bright - background
    if dark_ink:  # ink = share of the light it absorbs
        residual /= np.maximum(1.0 - background, 0.05)
    smooth = _mean3(residual)
    clear = _window(paper, 7, np.minimum)  # paper at least 3 px from any ink: no faint halo
    if np.count_nonzero(clear) >= 32:
        paper_values = smooth[clear]
        noise = 1.4826 * float(_median(np.abs(paper_values - _median(paper_values))))
    else:  # a crop with hardly any clear paper: the pixel-to-pixel jitter (white noise of std s leaves
        # s * sqrt(8/9) in x - mean3(x), and s / 3 in mean3(x))
        noise = 1.4826 * float(_median(np.abs(residual - smooth))) / 2.83
    residual = smooth
    candidates = residual[residual > max(MIN_CONTRAST / 2, 5 * noise)]
    strong = float(_quantiles(candidates, (0.9,))[0]) if len(candidates) >= 3 else 0.0
    if strong < MIN_CONTRAST:
        raise BlankImageError("image is blank (no ink found); give an image with handwriting on it")
    floor = max(3 * noise, FLOOR * strong)
    full = float(_quantiles(residual[residual > floor], (0.5,))[0])
    return _remove_rules(np.clip((residual - floor) / max(full - floor, 1e-3), 0.0, 1.0))


def _rules(coverage: np.ndarray, length: int) -> list[tuple[int, int]]:
    """Runs [start, stop) of rows inked along nearly their whole length, each thin: printed rules."""
    full = np.flatnonzero(coverage >= RULE_COVERAGE)
    if not len(full):
        return []
    runs = np.split(full, np.flatnonzero(np.diff(full) > 1) + 1)
    return [(int(r[0]), int(r[-1]) + 1) for r in runs if len(r) <= max(2, RULE_WIDTH * length)]


def _remove_rules(ink: np.ndarray) -> np.ndarray:
    """Erase the lines of ruled or squared paper: two or more thin rows (columns) inked from edge to
    edge. Strokes crossing a rule are bridged with the weaker of the ink just above and below it.
    (One full-width run alone is left: it may be the bar of a tightly cropped 7.)"""
    for axis in (0, 1):
        view = ink if axis == 0 else ink.T
        rules = _rules(np.count_nonzero(view > 0, axis=1) / view.shape[1], view.shape[0])
        if len(rules) < 2:
            continue
        view = view.copy()
        for start, stop in rules:
            view[start:stop] = np.minimum(view[max(start - 1, 0)], view[min(stop, len(view) - 1)])
        ink = view if axis == 0 else view.T
    return ink


def _components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels (0 = background) of a boolean mask, each component labelled 1 + the flat
    index of its last pixel: the runs of each row, joined to the runs they touch in the next row (union-find)."""
    edges = np.diff(mask.view(np.int8), axis=1, prepend=0, append=0)
    rows, starts = np.nonzero(edges == 1)
    ends = np.nonzero(edges == -1)[1]  # exclusive; both in raster order, so the i-th start and end are one run
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = i = parent[parent[i]]
        return i

    touching = (rows[None] == rows[:, None] + 1) & (starts[None] <= ends[:, None]) & (starts[:, None] <= ends[None])
    for i, j in zip(*np.nonzero(touching)):
        a, b = root(i), root(j)
        parent[max(a, b)] = min(a, b)
    roots = np.array([root(i) for i in range(len(rows))], dtype=np.intp)
    last = np.zeros(len(rows), np.intp)
    np.maximum.at(last, roots, rows * mask.shape[1] + ends)
    labels = np.zeros(mask.size, np.intp)
    labels[np.flatnonzero(mask)] = np.repeat(last[roots], ends - starts)
    return labels.reshape(mask.shape)


def main_ink(ink: np.ndarray, min_share: float = 0.05) -> np.ndarray:
    """Keep the ink that belongs to the digit: blobs holding at least `min_share` of the ink mass
    (dust and specks go; a digit's broken strokes, a few pixels apart, stay)."""
    step = max(1, -(-max(ink.shape) // BACKGROUND_SIDE))
    rows, cols = -(-ink.shape[0] // step) * step, -(-ink.shape[1] // step) * step
    padded = np.zeros((rows, cols), ink.dtype)
    padded[:ink.shape[0], :ink.shape[1]] = ink
    block_ink = padded.reshape(rows // step, step, cols // step, step).sum(axis=(1, 3))  # ink is never negative
    labels = _components(_window(block_ink > 0, 3, np.maximum))
    mass = np.bincount(labels.ravel(), weights=block_ink.ravel())
    mass[0] = 0
    keep = mass >= min_share * mass.sum()
    if keep[mass > 0].all():  # nothing to drop (the usual case)
        return ink
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
    padded = np.zeros((crop.shape[0] + 2 * abs(steps), crop.shape[1] + 2 * abs(steps)), crop.dtype)
    padded[abs(steps):-abs(steps), abs(steps):-abs(steps)] = crop
    changed = _window(padded, 2 * abs(steps) + 1, np.maximum if steps > 0 else np.minimum)
    return changed if changed.max() > 0.5 else crop  # never erode a digit away


def _crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """`image` cropped to the bounding box of a boolean `mask` of its shape; None when the mask is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def mnist_style(ink: np.ndarray, size: int) -> np.ndarray:
    """Crop an ink map to its ink, bring its strokes to MNIST's width, fit the longer side in MNIST's
    20 px box, centre the centre of mass in a 28x28 frame, then resize to size x size like the
    training data: uint8 (size, size)."""
    crop = _crop(ink, ink > 0)
    if crop is None:
        raise BlankImageError("image is blank (no ink found); give an image of one character")
    crop = _normalise_stroke(crop, MNIST_BOX / max(crop.shape))
    crop = _crop(crop, crop > 0.05) if crop.max() > 0.05 else crop  # faint ink only (a cut of a page): all of it
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


LINE_WIDTH_STEP = 32  # line models see lines padded to a multiple of this width, in training and in use
LINE_MARGIN = 0.125  # paper kept above and below a text line's ink, as a share of the line height


def fit_line(ink: np.ndarray, height: int, max_width: int) -> np.ndarray:
    """An ink map of one text line (bright ink on zero) -> uint8 (height, W): cropped to its ink, scaled so the
    ink spans the height less a margin above and below, aspect kept (squeezed to `max_width` if longer)."""
    crop = _crop(ink, ink > 0.1)
    if crop is None:
        raise BlankImageError("image is blank (no ink found); give an image of a line of text")
    margin = round(height * LINE_MARGIN)
    scale = (height - 2 * margin) / crop.shape[0]
    width = int(np.clip(round(crop.shape[1] * scale), 1, max_width - 2 * margin))
    line = np.zeros((height, width + 2 * margin), dtype=np.float32)
    line[margin:height - margin, margin:margin + width] = np.clip(_resize(
        crop, (height - 2 * margin, width), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR),
        0, 1)
    return (line * 255).round().astype(np.uint8)


def line_image(gray: np.ndarray, height: int, max_width: int) -> np.ndarray:
    """Any grayscale image of one text line in [0, 1] (either polarity, any size) -> uint8 (height, W)."""
    gray = np.asarray(gray, dtype=np.float32)
    if gray.shape[0] > 4 * height:  # analyse at a resolution near the answer's
        scale = 4 * height / gray.shape[0]
        gray = _resize(gray, (4 * height, max(1, round(gray.shape[1] * scale))), Image.Resampling.BOX)
    return fit_line(main_ink(ink_map(gray), min_share=0.002), height, max_width)


def line_widths(lines: np.ndarray) -> np.ndarray:
    """Widths of right-padded uint8 (N, H, W) lines: one past each line's last non-zero column."""
    inked = lines.any(axis=1)
    return np.where(inked.any(axis=1), lines.shape[2] - np.argmax(inked[:, ::-1], axis=1), 1)


def line_steps(logits: np.ndarray, padded_width: int, width: int) -> np.ndarray:
    """A line's own steps of the logits a line model gave for it padded to `padded_width` columns: those that
    cover its `width` pixel columns (each step covers padded_width / steps columns: model.downsample)."""
    columns = padded_width // logits.shape[-2]
    return logits[..., :-(-width // columns), :]


def pad_lines(lines: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """uint8 (H, W_i) lines -> one (N, H, width) array, each padded on the right with zeros (no ink)."""
    width = width or max(line.shape[1] for line in lines)
    out = np.zeros((len(lines), lines[0].shape[0], width), dtype=np.uint8)
    for i, line in enumerate(lines):
        out[i, :, :min(width, line.shape[1])] = line[:, :width]
    return out


def _preprocess(gray: np.ndarray, size: int, lines: bool) -> np.ndarray:
    """`preprocess_image`, or with `lines` `line_image` (`size` is then the line height)."""
    return line_image(gray, size, MAX_PAGE_SIDE) if lines else preprocess_image(gray, size)


def _load(path: str | Path | BinaryIO, size: int, lines: bool) -> np.ndarray:
    """Read an image file and preprocess it (`_preprocess`); errors name the file."""
    gray = read_grayscale(path, max_side=MAX_PAGE_SIDE if lines else WORK_SIDE)
    try:
        return _preprocess(gray, size, lines)
    except NeuroDigitsError as exc:
        raise type(exc)(f"{getattr(path, 'name', path)}: {exc}") from None


def load_digit(path: str | Path | BinaryIO, size: int) -> np.ndarray:
    """Read an image file of one character and preprocess it (`preprocess_image`); errors name the file."""
    return _load(path, size, lines=False)


def load_line(path: str | Path | BinaryIO, height: int) -> np.ndarray:
    """Read an image file of one line of text and preprocess it (`line_image`); errors name the file."""
    return _load(path, height, lines=True)


def _load_one(job: tuple[str | Path | bytes | np.ndarray, int, bool]) -> np.ndarray | NeuroDigitsError:
    """_load for a pool worker: the image, or the error (bytes are read as an upload, a uint8 array is an image
    already decoded)."""
    source, size, lines = job
    try:
        if isinstance(source, np.ndarray):
            return _preprocess(source / 255.0, size, lines)
        return _load(io.BytesIO(source) if isinstance(source, bytes) else source, size, lines)
    except NeuroDigitsError as exc:
        return exc


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_images(sources: Sequence[str | Path | bytes | np.ndarray], size: int, workers: int | None = None,
                chunk: int = PARALLEL_CHUNK, lines: bool = False) -> Iterator[np.ndarray | NeuroDigitsError]:
    """load_digit over many files (or encoded images, or decoded uint8 images), in input order: each one's
    image, or its error; with `lines`, load_line (`size` is then the line height).
    Batches of at least two chunks are spread over `workers` processes (default: every core)."""
    workers = min(workers or available_cores(), len(sources) // chunk)
    jobs = ((source, size, lines) for source in sources)
    if workers < 2:
        yield from map(_load_one, jobs)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_load_one, jobs, chunksize=chunk)
