"""Metrics and pictures of a trained model's predictions."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import log_softmax  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_fscore_support  # noqa: E402

from neurodigits.io import atomic_path  # noqa: E402


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
    loss = float(-log_softmax(logits.astype(np.float64), axis=1)[np.arange(len(labels)), labels].mean())
    top3 = (np.argsort(-logits, axis=1, kind="stable")[:, :3] == labels[:, None]).any(axis=1)
    metrics = {"accuracy": round(1 - wrong / len(labels), 6), "top3_accuracy": round(float(top3.mean()), 6),
               "misclassified": wrong, "n": int(len(labels)), "loss": round(loss, 6)}
    fold = case_folding(classes)
    if fold is not None:
        metrics["case_insensitive_accuracy"] = round(float((fold[predicted] == fold[labels]).mean()), 6)
    return metrics


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
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(classes)), zero_division=0)
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
    """Loss and accuracy per epoch, with validation curves when present."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "accuracy")):
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
