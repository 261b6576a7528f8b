"""The `numpy` source: the reference project's X.npy / y.npy (or any N x H x W image array)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from neurodigits import NeuroDigitsError
from neurodigits.data.dataset import Dataset, files_sha256, source_path
from neurodigits.params import DataParams

# Float pixels: [0, 1] intensities when the maximum is at most UNIT_MAX, else 0-255 values up to BYTE_MAX.
UNIT_MAX, BYTE_MAX, FLOAT_MIN = 1.5, 300.0, -0.5


def _load(path: Path) -> np.ndarray:
    if not path.exists():
        raise NeuroDigitsError(f"{path}: not found; data.source 'numpy' needs X.npy and y.npy in data.path")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise NeuroDigitsError(f"{path}: not a readable .npy array ({' '.join(str(exc).split())}); "
                               "save it with numpy.save") from None


def to_uint8(values: np.ndarray, path: Path) -> np.ndarray:
    """Pixel values -> uint8 0-255.

    Integers must lie in 0-255 and booleans become 0/255. Floats are [0, 1] intensities (scaled by
    255) when their maximum is at most 1.5, else 0-255 values (maximum at most 300); they may dip to
    -0.5 (the reference's resampled digits go slightly below 0). Values are rounded and clipped to
    0-255. NaN, inf and anything further out (e.g. standardized data) is an error.
    """
    if values.dtype == bool:
        return values.astype(np.uint8) * 255
    if values.dtype.kind in "iu":
        if values.size and (values.min() < 0 or values.max() > 255):
            raise NeuroDigitsError(f"{path}: integer pixels in [{values.min()}, {values.max()}], expected 0-255; "
                                   "rescale the array")
        return values.astype(np.uint8)
    if values.dtype.kind != "f":
        raise NeuroDigitsError(f"{path}: pixels of dtype {values.dtype}, expected numbers; save a numeric array")
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise NeuroDigitsError(f"{path}: {bad} NaN or infinite pixel values; fix or drop those rows")
    if not values.size:
        return values.astype(np.uint8)
    scale = 255.0 if values.max() <= UNIT_MAX else 1.0
    if values.min() < FLOAT_MIN or values.max() > BYTE_MAX:
        raise NeuroDigitsError(f"{path}: pixels in [{values.min():.3g}, {values.max():.3g}], expected [0, 1] or "
                               "[0, 255] intensities; rescale the array")
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def to_images(x: np.ndarray, pixel_order: str, path: Path) -> np.ndarray:
    """N x D rows (each a square image unrolled in `pixel_order`) or N x H x W -> uint8 (N, H, W)."""
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise NeuroDigitsError(f"{path}: rows of {x.shape[1]} values are not square images; "
                                   "give N x (S*S) or N x H x W")
        x = x.reshape(len(x), side, side, order=pixel_order)
    elif x.ndim != 3:
        raise NeuroDigitsError(f"{path}: shape {x.shape}, expected N x (S*S) or N x H x W")
    return np.ascontiguousarray(to_uint8(x, path))


def to_labels(y: np.ndarray, path: Path) -> np.ndarray:
    """N or N x 1 labels -> int64 (integral numbers) or str; anything else is an error naming `path`."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise NeuroDigitsError(f"{path}: labels of shape {y.shape}, expected N or N x 1")
    if y.dtype.kind == "U":
        return y
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise NeuroDigitsError(f"{path}: labels must be whole numbers or strings (found NaN or fractions); fix y")
    if y.dtype.kind not in "fiub":
        raise NeuroDigitsError(f"{path}: labels of dtype {y.dtype}, expected integers or strings")
    return y.astype(np.int64)


def load_arrays(params: DataParams) -> Dataset:
    """X.npy and y.npy in `data.path`."""
    directory = source_path(params)
    x_path, y_path = directory / "X.npy", directory / "y.npy"
    x, y = _load(x_path), _load(y_path)
    if x.shape[:1] != y.shape[:1]:
        raise NeuroDigitsError(f"{directory}: X.npy has shape {x.shape} but y.npy {y.shape}; "
                               "give one label per image (same first dimension)")
    return Dataset(images=to_images(x, params.pixel_order, x_path), labels=to_labels(y, y_path),
                   sha256=files_sha256([x_path, y_path]), description=f"numpy ({directory})")
