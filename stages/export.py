"""export: .keras, SavedModel and TFLite with a parity check (a line model: and its decoder's language model),
then log and register in MLflow."""

from importlib.metadata import version

import keras
import mlflow

from neurodigits import tracking
from neurodigits.data import load_prepared
from neurodigits.data.dataset import decode_labels
from neurodigits.decoding import LM_FILE, uses_language_model
from neurodigits.export import (
    check_parity,
    format_logits,
    model_signature,
    parity_lines,
    probability_model,
    write_formats,
)
from neurodigits.inference import METADATA_FILE, TFLITE_FILE
from neurodigits.io import atomic_path, write_json, write_text
from neurodigits.models import inference_model, load_model
from neurodigits.preprocess import to_model_input
from stages import EXPORT_DIR, MODEL_FILE, PREPARED_DIR, load_stage_params, read_run, run_stage


def main() -> None:
    params = load_stage_params()
    data = load_prepared(PREPARED_DIR)
    run = read_run()
    lines = data.meta.get("task") == "lines"
    size = data.meta["line_height"] if lines else data.meta["image_size"]
    trained = load_model(MODEL_FILE)
    model = inference_model(trained, params.model, params.train, size, len(data.classes))
    x = parity_lines(data.x_test) if lines else to_model_input(data.x_test)
    reference = model.predict(x, batch_size=1024, verbose=0)

    with tracking.run(params, run["mlflow_run_id"]), atomic_path(EXPORT_DIR) as tmp:
        tmp.mkdir()
        write_formats(model, tmp)
        parity = check_parity(reference, format_logits(tmp, x), params.export.logits_tolerance)
        metadata = {
            "task": data.meta.get("task", "characters"),
            "input": {"shape": [None, size, None] if lines else [None, size * size], "dtype": "float32",
                      "range": [0.0, 1.0], "polarity": "bright ink on dark",
                      "layout": f"a text line {size} px high, any width (a multiple of 4)" if lines else
                      f"{size}x{size} image flattened row-major"},
            "output": (f"logits per {params.model.downsample // params.model.steps_per_column} columns over the CTC "
                       "blank (index 0) and the classes (index i: classes[i-1])"
                       if lines else "logits (apply softmax for probabilities)"),
            "image_size": size,
            "classes": data.classes,
            "model_kind": params.model.kind,
            "params": params.model_dump(),
            "data_source": data.meta["source"],
            "data_sha256": data.meta["source_sha256"],
            "weights_sha256": run["weights_sha256"],
            "mlflow_run_id": run["mlflow_run_id"],
            "parity": parity,
        }
        write_json(tmp / METADATA_FILE, metadata)
        mlflow.log_metrics(parity)
        mlflow.log_artifact(str(tmp / TFLITE_FILE), "export")
        mlflow.log_artifact(str(tmp / METADATA_FILE), "export")
        if lines and uses_language_model(params.decode.model_dump()):  # what the decoder's language model counts
            write_text(tmp / LM_FILE, "\n".join(decode_labels(data.y_train, data.classes)))
            mlflow.log_artifact(str(tmp / LM_FILE), "export")
        served = probability_model(model)
        mlflow.set_tag(tracking.CLASSES_TAG, tracking.classes_key(data.classes))
        info = mlflow.tensorflow.log_model(
            served, name="model", signature=model_signature(served, x[:5]),
            input_example=x[:2], pip_requirements=[f"tensorflow-cpu=={version('tensorflow-cpu')}",
                                                   f"keras=={keras.__version__}"])
        registered, champion = tracking.register_and_promote(info.model_uri, params, data.classes)

    name = params.tracking.registered_model
    print(f"exported .keras, SavedModel, TFLite to {EXPORT_DIR} (max logit diff "
          f"{max(parity.values()):.1e}); registered models:/{name}/{registered}; "
          f"@{params.tracking.alias} -> version {champion}")


if __name__ == "__main__":
    run_stage(main)
