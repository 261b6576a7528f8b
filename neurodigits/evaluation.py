"""Metrics and pictures of a trained model's predictions."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rapidfuzz.distance import Levenshtein  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_fscore_support  # noqa: E402

from neurodigits.decoding import Decoder, log_softmax  # noqa: E402
from neurodigits.io import atomic_path  # noqa: E402

MISSING, EXTRA = "(missing)", "(extra)"  # the other side of a dropped or an added character


def case_folding(classes: list[str]) -> np.ndarray | None:
    """Each class's index among the case-folded classes, when some classes differ only in case (else None)."""
    folded = [name.upper() for name in classes]
    if len(set(folded)) == len(folded):
        return None
    merged = sorted(set(folded))
    return np.array([merged.index(name) for name in folded])


def split_metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float | int]:
    """Accuracy, top-3 accuracy, misclassification count and mean cross-entropy of logits against int labels;
    also the case-insensitive accuracy when some classes differ only in case."""
    predicted = logits.argmax(axis=1)
    wrong = int((predicted != labels).sum())
    loss = float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())
    top3 = (np.argsort(-logits, axis=1, kind="stable")[:, :3] == labels[:, None]).any(axis=1)
    metrics = {"accuracy": round(1 - wrong / len(labels), 6), "top3_accuracy": round(float(top3.mean()), 6),
               "misclassified": wrong, "n": int(len(labels)), "loss": round(loss, 6)}
    fold = case_folding(classes)
    if fold is not None:
        metrics["case_insensitive_accuracy"] = round(float((fold[predicted] == fold[labels]).mean()), 6)
    return metrics


def text_metrics(truth: list[str], predicted: list[str], mask: np.ndarray | None = None) -> dict[str, float | int]:
    """Character error rate (edit distance / reference characters), word error rate (the same over words),
    and the share of lines read exactly, over all lines together (with `mask`, over the lines it marks)."""
    if mask is not None:
        truth, predicted = [t for t, m in zip(truth, mask) if m], [p for p, m in zip(predicted, mask) if m]
    chars = sum(Levenshtein.distance(t, p) for t, p in zip(truth, predicted))
    words = sum(Levenshtein.distance(t.split(), p.split()) for t, p in zip(truth, predicted))
    return {"cer": round(chars / max(1, sum(len(t) for t in truth)), 6),
            "wer": round(words / max(1, sum(len(t.split()) for t in truth)), 6),
            "line_accuracy": round(float(np.mean([t == p for t, p in zip(truth, predicted)])), 6),
            "n": len(truth)}


def new_text(texts: list[str], trained: list[str]) -> np.ndarray:
    """Which of `texts` no training line has: writers are disjoint, texts need not be, and text never
    trained on is the harder and fairer test."""
    seen = set(trained)
    return np.array([text not in seen for text in texts], dtype=bool)


def read_lines(model, x: np.ndarray, decoders: list[Decoder]) -> list[list[str]]:
    """A line model's reading of uint8 (N, H, W) lines by each decoder: the model runs once."""
    from neurodigits.training import predict_lines  # noqa: PLC0415 - TensorFlow: only line evaluation needs it

    logits = predict_lines(model, x)
    return [[decoder.read(line)[0] for line in logits] for decoder in decoders]


def character_alignment(truth: list[str], predicted: list[str]) -> pd.DataFrame:
    """Each line's characters aligned by edit distance, one row per aligned pair (actual, predicted): what the
    model read for each character, MISSING where it dropped one, and EXTRA rows for characters it added.
    The input of the confusion plot and the per-character scores of a line model."""
    actual, read = [], []
    for t, p in zip(truth, predicted):
        for tag, t0, t1, p0, p1 in Levenshtein.opcodes(t, p):
            if tag in ("equal", "replace"):
                actual += t[t0:t1]
                read += p[p0:p1]
            elif tag == "delete":
                actual += t[t0:t1]
                read += [MISSING] * (t1 - t0)
            else:
                actual += [EXTRA] * (p1 - p0)
                read += p[p0:p1]
    return pd.DataFrame({"actual": actual, "predicted": read})


def per_character_metrics(aligned: pd.DataFrame, classes: list[str]) -> dict[str, dict]:
    """Precision, recall and F1 of each character, from the aligned characters of the test lines."""
    return per_class_metrics(aligned["actual"].to_numpy(), aligned["predicted"].to_numpy(), classes)


def subset_masks(meta: dict, quality: np.ndarray | None) -> dict[str, np.ndarray]:
    """Named boolean masks over the test split: each source's images (when there are several) and the
    images whose labels the source verified (`ok`, when it flags label quality)."""
    subsets, start = {}, 0
    sources = meta.get("sources", [])
    for source in sources if len(sources) > 1 else []:
        mask = np.zeros(meta["n_test"], dtype=bool)
        mask[start:start + source["n_test"]] = True
        subsets[source["name"]] = mask
        start += source["n_test"]
    if quality is not None:
        subsets["ok"] = quality == "OK"
    return subsets


def per_class_metrics(labels: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support per class; labels are class indices, or the class names themselves."""
    names = labels.dtype.kind in "UO"
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes if names else np.arange(len(classes)), zero_division=0)
    return {name: {"precision": round(float(p), 6), "recall": round(float(r), 6), "f1": round(float(f), 6),
                   "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)}


def confusion_table(labels: np.ndarray, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per test sample (actual, predicted): the input of DVC's `confusion` plot template."""
    names = np.asarray(classes)
    return pd.DataFrame({"actual": names[labels], "predicted": names[predicted]})


def save_figure(figure: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def plot_history(history: pd.DataFrame) -> plt.Figure:
    """Loss and accuracy (or a line model's character error rate) per epoch, with validation curves when present."""
    metrics = [m for m in ("loss", "accuracy", "cer") if m in history or f"val_{m}" in history]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        if metric in history:
            ax.plot(history["epoch"], history[metric], label=f"train {metric}")
        if f"val_{metric}" in history:
            ax.plot(history["epoch"], history[f"val_{metric}"], label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return figure


def plot_confusion(labels: np.ndarray, predicted: np.ndarray, classes: list[str]) -> plt.Figure:
    """The confusion matrix; with many classes a bigger grid of row-normalized shares (unequal class sizes
    would hide the small classes' confusions), no numbers in the cells, small tick labels."""
    many = len(classes) > 20
    side = max(6.0, 0.2 * len(classes))
    figure, ax = plt.subplots(figsize=(side, side * 0.92))
    ConfusionMatrixDisplay.from_predictions(labels, predicted, labels=np.arange(len(classes)),
                                            display_labels=classes, ax=ax, colorbar=many, cmap="Blues",
                                            include_values=not many, normalize="true" if many else None)
    if many:
        ax.tick_params(labelsize=7)
    ax.set_title(f"Confusion matrix (test, {int((labels != predicted).sum())} errors / {len(labels)}"
                 + (", share of each true class)" if many else ")"))
    return figure


def plot_misclassified(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                       classes: list[str], limit: int) -> plt.Figure:
    """A grid of misclassified images titled 'true→predicted (probability)'."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)[:limit]
    columns = 10
    rows = max(1, math.ceil(len(wrong) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"{classes[labels[i]]}→{classes[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})",
                     fontsize=8, color="firebrick")
    total = int((predicted != labels).sum())
    figure.suptitle(f"Misclassified test images: {total} of {len(labels)} (true→predicted, probability)"
                    + (f", first {len(wrong)} shown" if total > len(wrong) else ""), fontsize=10)
    figure.tight_layout()
    return figure


def plot_worst_lines(images: np.ndarray, truth: list[str], predicted: list[str], limit: int) -> plt.Figure:
    """The test lines read worst (most character errors per character), each with its truth and reading."""
    errors = np.array([Levenshtein.distance(t, p) / max(1, len(t)) for t, p in zip(truth, predicted)])
    worst = [i for i in np.argsort(-errors, kind="stable")[:min(limit, 24)] if errors[i] > 0]
    widths = [max(1, int(np.flatnonzero(images[i].any(axis=0)).max(initial=0)) + 1) for i in worst]
    figure, axes = plt.subplots(max(1, len(worst)), 1, figsize=(10, 0.95 * max(1, len(worst)) + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i, width in zip(axes.flat, worst, widths):
        ax.imshow(images[i][:, :width], cmap="gray_r", aspect="equal")
        ax.set_title(f"truth: {truth[i]!r}\nread:  {predicted[i]!r}   (CER {errors[i]:.0%})", fontsize=8,
                     loc="left", family="monospace", color="firebrick")
    total = int((errors > 0).sum())
    figure.suptitle(f"Test lines read worst: {total} of {len(truth)} lines have errors"
                    + (f", worst {len(worst)} shown" if total > len(worst) else ""), fontsize=10)
    figure.tight_layout()
    return figure
