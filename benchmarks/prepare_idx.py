"""Time and peak memory of the prepare stage's work (load + prepare + save) on IDX files.

    python benchmarks/prepare_idx.py [IDX_FOLDER]   # default: Debian's dataset-fashion-mnist package
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurodigits.data import load_dataset, prepare, save_prepared  # noqa: E402
from neurodigits.params import DataParams  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(path: str = FASHION_MNIST) -> None:
    params = DataParams(source="idx", path=path)
    baseline = peak_rss_mib()
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        dataset = load_dataset(params)
        timings["load"] = time.perf_counter() - started
        prepared = prepare(dataset, params)
        timings["prepare"] = time.perf_counter() - started - timings["load"]
        save_prepared(prepared, Path(tmp) / "prepared")
        timings["total"] = time.perf_counter() - started
    print(f"{dataset.description}: {len(prepared.x_train)} train / {len(prepared.x_test)} test -> "
          f"{params.image_size}x{params.image_size}")
    print(f"wall: load {timings['load']:.2f} s, prepare {timings['prepare']:.2f} s, "
          f"load+prepare+save {timings['total']:.2f} s")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB ({baseline:.0f} MiB after imports)")


if __name__ == "__main__":
    main(*sys.argv[1:])
