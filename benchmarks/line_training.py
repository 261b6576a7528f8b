"""Training speed of a line model: milliseconds per training step of the `lines` preset's CRNN (presets.yaml)
with Keras's CTC loss (dense labels: TensorFlow's step-by-step implementation) and with `training.ctc_loss`
(the same loss on sparse labels: TensorFlow's C++ kernel), with one and two CTC steps per column of the
convolutions, on the same augmented batches of a seeded sample of prepared training lines. Every batch width
is traced in a first pass; the following passes are timed, each configuration in turn, in the same run.

    python benchmarks/line_training.py                   # data/prepared: the prepare stage's output for line data
    python benchmarks/line_training.py --lines 512 --passes 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from neurodigits.data.dataset import load_prepared  # noqa: E402
from neurodigits.models import build_model  # noqa: E402
from neurodigits.presets import load_presets  # noqa: E402
from neurodigits.training import LineBatches, ctc_loss, set_determinism  # noqa: E402

LOSSES = {"keras.losses.CTC (dense labels)": keras.losses.CTC(), "training.ctc_loss (sparse labels)": ctc_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    parser.add_argument("--lines", type=int, default=384, help="training lines sampled (seeded)")
    parser.add_argument("--passes", type=int, default=2, help="timed passes over their batches")
    args = parser.parse_args()
    prepared = load_prepared(args.prepared)
    if prepared.meta.get("task") != "lines":
        raise SystemExit(f"{args.prepared}: not line data; run the `lines` preset's `dvc exp run` first")
    params = load_presets()["lines"].apply()
    rows = np.sort(np.random.default_rng(0).choice(len(prepared.y_train), args.lines, replace=False))
    lines = LineBatches(prepared.x_train[rows], prepared.y_train[rows], params.train.batch_size, seed=0,
                        augment=params.train)
    batches = [lines[i] for i in range(len(lines))]
    print(f"{len(batches)} batches of {params.train.batch_size} lines, widths {[b[0].shape[2] for b in batches]}")
    models = {}
    for steps in (1, 2):
        for name, loss in LOSSES.items():
            set_determinism(0)
            model = build_model(params.model.model_copy(update={"steps_per_column": steps}), params.train,
                                prepared.x_train.shape[1], len(prepared.classes))
            model.compile(optimizer=keras.optimizers.Adam(params.train.learning_rate), loss=loss)
            for batch in batches:  # trace every width
                model.train_on_batch(*batch)
            models[steps, name] = model
    times = {key: [] for key in models}
    for _ in range(args.passes):
        for key, model in models.items():
            started = time.perf_counter()
            for batch in batches:
                model.train_on_batch(*batch)
            times[key].append(1000 * (time.perf_counter() - started) / len(batches))
    table = pd.DataFrame([{"steps per column": steps, "loss": name, "ms per step (median)": statistics.median(t),
                           "per pass": ", ".join(f"{v:.0f}" for v in t),
                           "vs Keras's CTC": statistics.median(times[steps, next(iter(LOSSES))]) / statistics.median(t)}
                          for (steps, name), t in times.items()])
    print(table.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
