"""evaluate: held-out and training-set metrics, per-class scores, confusion matrix and pictures."""

from pathlib import Path

import keras
import mlflow
import pandas as pd

from neurodigits import evaluation, tracking
from neurodigits.data import Prepared, load_prepared
from neurodigits.data.dataset import decode_labels
from neurodigits.decoding import Decoder
from neurodigits.inference import softmax
from neurodigits.io import write_json, write_text
from neurodigits.models import load_model
from neurodigits.params import Params, load_params
from neurodigits.preprocess import to_model_input
from stages import (
    CONFUSION_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PER_CLASS_FILE,
    PLOTS_DIR,
    PREPARED_DIR,
    read_run,
    run_stage,
)


def log_reports(params: Params, metrics: dict) -> None:
    """Write metrics.json and log every metric, report and plot to the train stage's MLflow run."""
    write_json(METRICS_FILE, metrics)
    mlflow.log_metrics({f"{split}_{name}": value for split, values in metrics.items()
                        for name, value in values.items() if name != "n"})
    for path in (METRICS_FILE, PER_CLASS_FILE, CONFUSION_FILE, HISTORY_FILE):
        mlflow.log_artifact(path, "reports")
    mlflow.log_artifacts(PLOTS_DIR, "plots")


def evaluate_lines(params: Params, data: Prepared, model: keras.Model) -> None:
    """A line model: CER, WER and exact lines on the held-out lines, read by the decoder of params.decode (its
    language model counted over the training transcriptions) and greedily, and on the training lines, read
    greedily (the language model has counted their very texts); characters aligned for the confusion matrix
    and per-character scores, the worst lines as a gallery."""
    truth = {"test": decode_labels(data.y_test, data.classes), "train": decode_labels(data.y_train, data.classes)}
    decoder = Decoder.from_params(params.decode.model_dump(), data.classes, truth["train"])
    greedy = Decoder(data.classes)
    beam = decoder.beam_width > 1  # then also the line model alone, greedily: what the beam search adds
    read = {"train": evaluation.read_lines(model, data.x_train, [greedy])[0]}
    read["test"], *alone = evaluation.read_lines(model, data.x_test, [decoder, greedy] if beam else [decoder])
    metrics = {split: evaluation.text_metrics(truth[split], read[split]) for split in ("test", "train")}
    if alone:
        metrics["test_greedy"] = evaluation.text_metrics(truth["test"], alone[0])
    new_text = evaluation.new_text(truth["test"], truth["train"])
    masks = evaluation.subset_masks(data.meta, data.quality_test) | ({"new_text": new_text} if new_text.any() else {})
    for name, mask in masks.items():
        metrics[f"test_{name}"] = evaluation.text_metrics(truth["test"], read["test"], mask)
    aligned = evaluation.character_alignment(truth["test"], read["test"])
    with tracking.run(params, read_run()["mlflow_run_id"]):
        write_json(PER_CLASS_FILE, evaluation.per_character_metrics(aligned, data.classes))
        write_text(CONFUSION_FILE, aligned.to_csv(index=False))
        evaluation.save_figure(evaluation.plot_history(pd.read_csv(HISTORY_FILE)),
                               Path(PLOTS_DIR) / "training_curves.png")
        evaluation.save_figure(evaluation.plot_worst_lines(data.x_test, truth["test"], read["test"],
                                                           params.evaluate.gallery_size),
                               Path(PLOTS_DIR) / "misclassified.png")  # misread lines: dvc.yaml's gallery
        log_reports(params, metrics)
    for split, values in metrics.items():
        print(f"{split}: CER {values['cer']:.2%}, WER {values['wer']:.2%}, {values['line_accuracy']:.1%} of "
              f"{values['n']} lines read exactly")


def main() -> None:
    params = load_params()
    data = load_prepared(PREPARED_DIR)
    model = load_model(MODEL_FILE)
    if data.meta.get("task") == "lines":
        evaluate_lines(params, data, model)
        return
    test_logits = model.predict(to_model_input(data.x_test), batch_size=1024, verbose=0)
    train_logits = model.predict(to_model_input(data.x_train), batch_size=1024, verbose=0)
    test_predicted = test_logits.argmax(axis=1)
    metrics = {"test": evaluation.split_metrics(test_logits, data.y_test, data.classes),
               "train": evaluation.split_metrics(train_logits, data.y_train, data.classes)}
    for name, mask in evaluation.subset_masks(data.meta, data.quality_test).items():
        metrics[f"test_{name}"] = evaluation.split_metrics(test_logits[mask], data.y_test[mask], data.classes)
    plots = Path(PLOTS_DIR)

    with tracking.run(params, read_run()["mlflow_run_id"]):
        write_json(PER_CLASS_FILE, evaluation.per_class_metrics(data.y_test, test_predicted, data.classes))
        write_text(CONFUSION_FILE, evaluation.confusion_table(data.y_test, test_predicted, data.classes)
                   .to_csv(index=False))
        evaluation.save_figure(evaluation.plot_history(pd.read_csv(HISTORY_FILE)), plots / "training_curves.png")
        evaluation.save_figure(evaluation.plot_confusion(data.y_test, test_predicted, data.classes),
                               plots / "confusion_matrix.png")
        evaluation.save_figure(evaluation.plot_misclassified(data.x_test, data.y_test, softmax(test_logits),
                                                             data.classes, params.evaluate.gallery_size),
                               plots / "misclassified.png")
        log_reports(params, metrics)

    test, train = metrics["test"], metrics["train"]
    print(f"held-out: accuracy {test['accuracy']:.4f}, {test['misclassified']} misclassifications out of "
          f"{test['n']}; training set: {train['misclassified']} misclassifications out of {train['n']}")
    for split, values in metrics.items():
        if split.startswith("test_"):
            print(f"  {split}: accuracy {values['accuracy']:.4f} on {values['n']} images")


if __name__ == "__main__":
    run_stage(main)
