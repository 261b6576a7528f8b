"""Image -> model input, MNIST style. Shared by data sources, training, evaluation and inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage
from skimage.filters import threshold_otsu

from neurodigits import NeuroDigitsError

MNIST_SIZE, MNIST_BOX = 28, 20  # MNIST fits each digit's longer side into 20 px of a 28 px frame
MAX_PIXELS = 40_000_000


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


def read_grayscale(path: str | Path) -> np.ndarray:
    """Decode an image file to float32 grayscale in [0, 1], EXIF rotation applied."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise NeuroDigitsError(f"{path}: image is {image.width}x{image.height}, over "
                                       f"{MAX_PIXELS // 1_000_000} megapixels; downscale it first")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                background = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(background, image.convert("RGBA"))
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise NeuroDigitsError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise NeuroDigitsError(f"{path}: not a readable image ({exc.__class__.__name__}); "
                               "give a PNG or JPEG file") from None


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Grayscale in [0, 1] -> ink strength in [0, 1] on a zero background, whatever the polarity.

    The background is the border's median; dark-on-light images are inverted. Uneven paper and
    shadows are removed by subtracting a smooth estimate of the background, then Otsu's threshold
    zeroes what is left of the paper.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:
        gray = 1.0 - gray
    size = max(3, min(gray.shape) // 4)
    background = ndimage.grey_opening(ndimage.uniform_filter(gray, 3), size=(size, size))
    ink = np.clip(gray - ndimage.uniform_filter(background, size), 0, None)
    if ink.max() < 0.08:
        raise NeuroDigitsError("image is blank (no ink found); give an image of one digit")
    threshold = threshold_otsu(ink)
    ink = np.where(ink > threshold * 0.5, ink, 0.0)
    return np.clip(ink / np.percentile(ink[ink > 0], 95), 0, 1)


def mnist_style(ink: np.ndarray, size: int) -> np.ndarray:
    """Crop an ink map to its ink, fit the longer side in MNIST's 20 px box, centre the centre of
    mass in a 28x28 frame, then resize to size x size like the training data: uint8 (size, size)."""
    rows, cols = np.nonzero(ink > 0)
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = MNIST_BOX / max(crop.shape)
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    digit = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR), dtype=np.float32)
    frame = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    top, left = (MNIST_SIZE - height) // 2, (MNIST_SIZE - width) // 2
    frame[top:top + height, left:left + width] = digit
    cy, cx = ndimage.center_of_mass(frame)
    frame = ndimage.shift(frame, (MNIST_SIZE / 2 - 0.5 - cy, MNIST_SIZE / 2 - 0.5 - cx), order=1, mode="constant")
    frame = np.clip(frame / max(frame.max(), 1e-6) * 255, 0, 255).astype(np.uint8)
    return resize_images(frame[None], size)[0]


def preprocess_image(gray: np.ndarray, size: int) -> np.ndarray:
    """Any grayscale digit image in [0, 1] (either polarity, any size) -> uint8 (size, size), MNIST style."""
    return mnist_style(ink_map(gray), size)


def load_digit(path: str | Path, size: int) -> np.ndarray:
    """Read one digit image file and preprocess it; errors name the file."""
    gray = read_grayscale(path)
    try:
        return preprocess_image(gray, size)
    except NeuroDigitsError as exc:
        raise NeuroDigitsError(f"{path}: {exc}") from None
