"""Data sources and the prepared-data format every later stage reads."""

from neurodigits.data.dataset import Dataset, Prepared, load_prepared, prepare, save_prepared
from neurodigits.data.sources import load_dataset, load_datasets

__all__ = ["Dataset", "Prepared", "load_dataset", "load_datasets", "load_prepared", "prepare", "save_prepared"]
