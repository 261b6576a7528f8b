"""Transfer learning, measured on real handwriting the parent never saw. Prints tables; writes JSON, Markdown, PNG.

    python benchmarks/transfer.py                  # digits (load_digits) and letters (../shared/data)
    python benchmarks/transfer.py --skip-letters   # load_digits only (about 5 minutes on 2 cores)

1. Few-shot digits: scikit-learn's `load_digits` (UCI optical digits, 1,797 images by 43 writers; offline).
   k = 5, 10, 20 labelled samples per class train; the rest is the test set. The parent is the `cnn` preset
   (presets.yaml) trained on the embedded 5,000 MNIST digits, as `dvc exp run` trains it. Compared on the same
   splits, several seeds: the parent unchanged, the same CNN trained from scratch, and the parent fine-tuned
   (`train.init_from`), each with the same recipe.
2. Digits -> letters: the letters CNN (52 classes A-Z, a-z) initialised from the digits CNN (its head replaced,
   no class shared) vs from scratch, with 20, 100 and all samples per class of ../shared/data/unipen-letters,
   tested on its writer-disjoint test split (all, and the `OK`-verified subset).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from neurodigits.data import load_dataset, prepare  # noqa: E402
from neurodigits.data.idx import load_idx_folder  # noqa: E402
from neurodigits.evaluation import save_figure  # noqa: E402
from neurodigits.models import build_from_parent, build_model, load_model  # noqa: E402
from neurodigits.params import Params  # noqa: E402
from neurodigits.preprocess import resize_images, to_model_input  # noqa: E402
from neurodigits.presets import load_presets  # noqa: E402
from neurodigits.training import fit, set_determinism, weights_sha256  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LETTERS = ROOT.parent / "shared" / "data" / "unipen-letters"
SIZE = 20
DIGITS = [str(d) for d in range(10)]


def parent_cnn(params: Params) -> keras.Model:
    """The `cnn` preset trained on the embedded digits exactly as the train stage does (cached per params)."""
    recipe = json.dumps(params.model_dump(include={"data", "model", "train"}), sort_keys=True).encode()
    cached = RESULTS / f"transfer_parent_{hashlib.sha256(recipe).hexdigest()[:12]}.keras"
    if cached.exists():
        return load_model(cached)
    data = prepare(load_dataset(params.data), params.data)
    set_determinism(params.train.seed)
    model = build_model(params.model, params.train, SIZE, len(data.classes))
    started = time.perf_counter()
    fit(model, to_model_input(data.x_train), data.y_train, params.train, verbose=0)
    test = (model.predict(to_model_input(data.x_test), verbose=0).argmax(1) == data.y_test).mean()
    print(f"parent: cnn preset on {len(data.x_train)} embedded digits, {time.perf_counter() - started:.0f} s, "
          f"held-out accuracy {test:.4f}, weights sha256 {weights_sha256(model)[:12]}")
    model.save(cached)
    return model


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x, batch_size=1024, verbose=0).argmax(1) == y).mean())


def train(params: Params, x: np.ndarray, y: np.ndarray, classes: list[str], seed: int,
          parent: tuple[keras.Model, list[str]] | None) -> tuple[keras.Model, float]:
    """The preset's CNN on (x, y), from scratch or from `parent`; returns it and the training seconds."""
    set_determinism(seed)
    train_params = params.train.model_copy(update={"seed": seed, "init_from": "parent" if parent else None})
    model = (build_from_parent(*parent, params.model, train_params, SIZE, classes) if parent
             else build_model(params.model, train_params, SIZE, len(classes)))
    started = time.perf_counter()
    fit(model, x, y, train_params, verbose=0)
    return model, time.perf_counter() - started


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """load_digits' 8x8 images (0-16, ink bright; each digit fills its box) placed as MNIST places digits: the box
    scaled to 14x14 (MNIST: 20 of 28 pixels) and centred in 20x20."""
    digits = load_digits()
    boxes = resize_images(np.rint(digits.images * 255 / 16).astype(np.uint8), 14)
    return to_model_input(np.pad(boxes, ((0, 0), (3, 3), (3, 3)))), digits.target


def few_shot_split(y: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False) for c in np.unique(y)])
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    return chosen, rest


def digits_benchmark(params: Params, parent: keras.Model, shots: list[int], seeds: list[int], epochs: int,
                     learning_rate: float) -> pd.DataFrame:
    x, y = uci_digits()
    recipe = params.model_copy(update={"train": params.train.model_copy(
        update={"epochs": epochs, "learning_rate": learning_rate})})
    rows = []
    for k in shots:
        for seed in seeds:
            chosen, rest = few_shot_split(y, k, seed)
            scratch, scratch_s = train(recipe, x[chosen], y[chosen], DIGITS, seed, None)
            tuned, tuned_s = train(recipe, x[chosen], y[chosen], DIGITS, seed, (parent, DIGITS))
            row = {"k": k, "seed": seed, "n_train": len(chosen), "n_test": len(rest),
                   "parent": accuracy(parent, x[rest], y[rest]), "scratch": accuracy(scratch, x[rest], y[rest]),
                   "fine_tuned": accuracy(tuned, x[rest], y[rest]), "scratch_s": scratch_s, "fine_tune_s": tuned_s}
            rows.append(row)
            print(" ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                           for key, value in row.items()), flush=True)
    return pd.DataFrame(rows)


def letters_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """unipen-letters upright at 20x20: train x/y, test x/y, the test `OK` mask, and the 52 class names."""
    dataset = load_idx_folder(LETTERS, "unipen-letters")
    mapping = dict(np.loadtxt(LETTERS / "unipen-letters-mapping.txt", dtype=int))
    classes = [chr(mapping[i]) for i in range(len(mapping))]
    upright = lambda images: to_model_input(resize_images(np.ascontiguousarray(images.transpose(0, 2, 1)), SIZE))  # noqa: E731
    ok = pd.read_csv(LETTERS / "unipen-letters-test-meta.csv")["quality"].eq("OK").to_numpy()
    return (upright(dataset.images), dataset.labels.astype(int), upright(dataset.test_images),
            dataset.test_labels.astype(int), ok, classes)


def letters_benchmark(params: Params, parent: keras.Model, sizes: list[str], seed: int,
                      epochs: dict[str, int]) -> pd.DataFrame:
    x, y, x_test, y_test, ok, classes = letters_data()
    rows = []
    for size in sizes:
        chosen = np.arange(len(y)) if size == "all" else few_shot_split(y, int(size), seed)[0]
        recipe = params.model_copy(update={"train": params.train.model_copy(update={"epochs": epochs[size]})})
        for method, init in (("scratch", None), ("from_digits", (parent, DIGITS))):
            model, seconds = train(recipe, x[chosen], y[chosen], classes, seed, init)
            row = {"per_class": size, "n_train": len(chosen), "epochs": epochs[size], "method": method,
                   "test": accuracy(model, x_test, y_test), "test_ok": accuracy(model, x_test[ok], y_test[ok]),
                   "seconds": seconds}
            rows.append(row)
            print(" ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                           for key, value in row.items()), flush=True)
    return pd.DataFrame(rows)


def plot(digits: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    summary = digits.groupby("k")[["parent", "scratch", "fine_tuned"]].agg(["mean", "std"])
    figure, axis = plt.subplots(figsize=(6, 4))
    for method, label in (("fine_tuned", "fine-tuned from the digits CNN"), ("scratch", "same CNN from scratch"),
                          ("parent", "parent unchanged")):
        axis.errorbar(summary.index, 100 * summary[method]["mean"], yerr=100 * summary[method]["std"],
                      marker="o", capsize=3, label=label)
    axis.set(xlabel="labelled samples per class (k)", ylabel="accuracy on the rest of load_digits (%)",
             title="Few-shot digits: UCI optical digits (43 writers)", xticks=list(summary.index))
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, RESULTS / "transfer_digits.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30, help="few-shot training epochs (both methods)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="few-shot Adam rate (both methods)")
    parser.add_argument("--letters", nargs="+", default=["20", "100", "all"], help="samples per class, or all")
    parser.add_argument("--letters-epochs", type=int, nargs=3, default=[30, 15, 3], metavar=("E20", "E100", "EALL"))
    parser.add_argument("--skip-letters", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    params = load_presets()["cnn"].apply()
    parent = parent_cnn(params)
    report: dict = {"date": str(date.today()), "load_average": os.getloadavg(), "cpus": os.cpu_count()}

    if not args.skip_digits:
        digits = digits_benchmark(params, parent, args.shots, args.seeds, args.epochs, args.learning_rate)
        plot(digits)
        table = digits.groupby("k")[["parent", "scratch", "fine_tuned", "fine_tune_s"]].mean()
        table["gain_vs_best_baseline"] = table["fine_tuned"] - table[["parent", "scratch"]].max(axis=1)
        print(f"\nfew-shot load_digits, mean over seeds {args.seeds} ({args.epochs} epochs, lr {args.learning_rate}):")
        print(table.to_markdown(floatfmt=".4f"))
        report["digits"] = digits.to_dict("records")

    if args.skip_letters:
        print("\nletters: skipped (--skip-letters)")
    elif not LETTERS.is_dir():
        print(f"\nletters: skipped: {LETTERS} is absent (the shared research data; see ../shared/data/README.md)")
    else:
        sizes = dict(zip(["20", "100", "all"], args.letters_epochs))
        letters = letters_benchmark(params, parent, args.letters, args.seeds[0], sizes)
        print("\ndigits -> letters (unipen-letters, writer-disjoint test):")
        print(letters.to_markdown(index=False, floatfmt=".4f"))
        report["letters"] = letters.to_dict("records")
    (RESULTS / "transfer.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nload average at the end: {os.getloadavg()}; plot: {RESULTS / 'transfer_digits.png'}")


if __name__ == "__main__":
    main()
