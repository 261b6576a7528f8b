"""Training speed of a preset's CNN: where batch norm sits, and what feeds `fit`.

    python benchmarks/train_step.py [--preset letters-26] [--steps 150] [--repeat 3] [--epochs 0]

Times `--steps` training steps of the preset's model on random images of its size, with `model.batch_norm`
true (after each convolution) and pooled (once per block, after its max-pool), in turn, `--repeat` times
each (fresh model each time, one warm-up call first). With `--epochs N`, also times N whole epochs (as many
images as the letters' training set) fed as NumPy arrays to Keras's `fit` and as `training.batches` (the same
batches, without tf.data's autotuning thread): per epoch, since the wait it causes falls at the epoch boundaries.
Prints milliseconds per step (median and range) and the ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from neurodigits import training  # noqa: E402
from neurodigits.models import build_model  # noqa: E402
from neurodigits.presets import load_presets  # noqa: E402

LETTERS_TRAIN_IMAGES = 66_880
CLASSES = 26  # letters-26's; the class count hardly changes the time of a step


class EpochTimes(keras.callbacks.Callback):
    """Wall time of each epoch, from one epoch's end to the next (the iterator's deletion included)."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.times, self.last = [], time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="letters-26")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=0)
    args = parser.parse_args()
    params = load_presets()[args.preset].apply()
    size, train = params.data.image_size, params.train
    rng = np.random.default_rng(0)

    def model_with(batch_norm: bool | str) -> keras.Model:
        training.set_determinism(train.seed)
        model = build_model(params.model.model_copy(update={"batch_norm": batch_norm}), train, size, CLASSES)
        training.compile_model(model, train, args.steps)
        return model

    x = rng.random((train.batch_size * args.steps, size * size), dtype=np.float32)
    y = rng.integers(0, CLASSES, len(x))
    per_step = {True: [], "pooled": []}
    for _ in range(args.repeat):
        for batch_norm in per_step:
            model = model_with(batch_norm)
            model.fit(training.batches(x[:train.batch_size * 5], y[:train.batch_size * 5], train.batch_size),
                      shuffle=False, verbose=0)
            start = time.perf_counter()
            model.fit(training.batches(x, y, train.batch_size, shuffle=True), shuffle=False, verbose=0)
            per_step[batch_norm].append((time.perf_counter() - start) / args.steps * 1000)
    for batch_norm, times in per_step.items():
        print(f"model.batch_norm {batch_norm!s:>6}: {statistics.median(times):5.1f} ms per step "
              f"(range {min(times):.1f}-{max(times):.1f}, {args.repeat} x {args.steps} steps of {train.batch_size})")
    print(f"pooled / true: {statistics.median(per_step['pooled']) / statistics.median(per_step[True]):.2f}")

    if args.epochs:
        x = rng.random((LETTERS_TRAIN_IMAGES, size * size), dtype=np.float32)
        y = rng.integers(0, CLASSES, len(x))
        feeds = {"NumPy arrays": {"x": x, "y": y, "batch_size": train.batch_size, "shuffle": True},
                 "training.batches": {"x": training.batches(x, y, train.batch_size, shuffle=True), "shuffle": False}}
        for feed, data in feeds.items():
            model, timer = model_with(params.model.batch_norm), EpochTimes()
            model.fit(**data, epochs=args.epochs, callbacks=[timer], verbose=0)
            print(f"{feed:>16}: epochs of {', '.join(f'{t:.1f}' for t in timer.times)} s "
                  f"(total {sum(timer.times):.0f} s, {len(x):,} images, batch {train.batch_size})")


if __name__ == "__main__":
    main()
