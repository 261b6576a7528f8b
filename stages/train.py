"""train: build the model from params, train it deterministically, track the run in MLflow."""

import time

import keras
import mlflow
from sklearn.model_selection import train_test_split

from neurodigits import tracking
from neurodigits.data import load_prepared
from neurodigits.io import atomic_path, write_json, write_text
from neurodigits.models import build_from_parent, build_model, load_parent
from neurodigits.preprocess import to_model_input
from neurodigits.training import fit, set_determinism, weights_sha256
from stages import (
    HISTORY_FILE,
    MODEL_FILE,
    PARENT_MODEL,
    PREPARED_DIR,
    RUN_FILE,
    load_stage_params,
    read_parent,
    run_stage,
)


def main() -> None:
    params = load_stage_params()
    parent = read_parent()
    data = load_prepared(PREPARED_DIR)
    set_determinism(params.train.seed)
    lines = data.meta.get("task") == "lines"  # text lines: uint8 (N, H, W) in, CTC label rows out
    x, y = (data.x_train if lines else to_model_input(data.x_train)), data.y_train
    validation = None
    if params.train.validation_fraction:
        x, x_val, y, y_val = train_test_split(x, y, test_size=params.train.validation_fraction,
                                              stratify=None if lines else y, random_state=params.train.seed)
        validation = (x_val, y_val)
    size = data.meta["line_height"] if lines else data.meta["image_size"]
    if params.train.init_from:
        model = build_from_parent(load_parent(PARENT_MODEL), parent["classes"], params.model, params.train,
                                  size, data.classes)
    else:
        model = build_model(params.model, params.train, size, len(data.classes))
    model.summary()

    with tracking.run(params) as run:
        mlflow.log_params(params.flat())
        mlflow.set_tags(tracking.lineage_tags(data.meta["source_sha256"], parent))
        mlflow.log_input(mlflow.data.from_numpy(x, targets=y, source=PREPARED_DIR, name="train"), context="training")
        log_epoch = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: mlflow.log_metrics(logs, step=epoch + 1))
        started = time.perf_counter()
        history = fit(model, x, y, params.train, validation, callbacks=[log_epoch])
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
        weights = weights_sha256(model)
        mlflow.set_tag("weights_sha256", weights)
        with atomic_path(MODEL_FILE) as tmp:
            model.save(tmp)
        write_text(HISTORY_FILE, history.to_csv(index=False, float_format="%.6f"))
        write_json(RUN_FILE, {"mlflow_run_id": run.info.run_id, "weights_sha256": weights})
    print(f"trained {model.name}: {len(history)} epochs, weights sha256 {weights[:12]}, MLflow run {run.info.run_id}")


if __name__ == "__main__":
    run_stage(main)
