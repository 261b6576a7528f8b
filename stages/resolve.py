"""resolve: pin `train.init_from` (a registered model, a run's model or an export folder) to a fixed version,
run and weights hash, and copy its Keras file, so that train depends on exactly this parent. DVC runs it every
time (always_changed): when the champion moves, the pinned parent changes and train re-runs."""

import json
import shutil
from pathlib import Path

from neurodigits import NeuroDigitsError
from neurodigits.io import atomic_path, sha256_file, write_json
from neurodigits.params import ModelParams, load_params, resolve_path
from stages import PARENT_DIR, PARENT_FILE, PARENT_MODEL, run_stage


def from_export(folder: str, destination: Path) -> dict:
    """An export folder (models/export of some run): its metadata.json and model.keras."""
    from neurodigits.export import KERAS_FILE  # noqa: PLC0415 - TensorFlow: only for a parent
    from neurodigits.inference import METADATA_FILE  # noqa: PLC0415

    path = resolve_path(folder)
    if not (path / KERAS_FILE).is_file() or not (path / METADATA_FILE).is_file():
        raise NeuroDigitsError(f"train.init_from {folder!r}: {path} is not an export folder (no {KERAS_FILE} and "
                               f"{METADATA_FILE}); give models/export of a run or models:/neurodigits@champion")
    shutil.copyfile(path / KERAS_FILE, destination)
    metadata = json.loads((path / METADATA_FILE).read_text())
    return {"registered_model": None, "version": None, "run_id": metadata.get("mlflow_run_id"),
            "weights_sha256": metadata.get("weights_sha256"), "metadata": metadata}


def resolve(uri: str, destination: Path) -> dict:
    """The parent's lineage (registered model, version, run id, weights hash), classes and architecture."""
    if uri.startswith(("models:/", "runs:/")):
        from neurodigits import tracking  # noqa: PLC0415 - MLflow: only for a parent

        found = tracking.resolve_model(uri, destination)
    else:
        found = from_export(uri, destination)
    metadata = found.pop("metadata")
    try:
        model = ModelParams.model_validate(metadata["params"]["model"]).model_dump()
        return {**found, "keras_sha256": sha256_file(destination), "image_size": int(metadata["image_size"]),
                "classes": [str(c) for c in metadata["classes"]], "model": model}
    except (KeyError, TypeError, ValueError) as exc:
        raise NeuroDigitsError(f"train.init_from {uri}: its export metadata lacks classes, image_size or model "
                               f"params ({exc.__class__.__name__}); give a model exported by this pipeline") from None


def main() -> None:
    params = load_params()
    uri = params.train.init_from
    with atomic_path(PARENT_DIR) as tmp:
        tmp.mkdir()
        record = {"init_from": uri} | (resolve(uri, tmp / Path(PARENT_MODEL).name) if uri else {})
        write_json(tmp / Path(PARENT_FILE).name, record)
    if uri is None:
        print("no parent model (train.init_from: null): train starts from scratch")
        return
    ignored = [f"model.{key}={value!r}" for key, value in params.model.model_dump().items()
               if record["model"][key] != value]
    print(f"parent {uri}: " + (f"models:/{record['registered_model']}/{record['version']}, "
                               if record["version"] else "")
          + f"run {record['run_id']}, weights sha256 {str(record['weights_sha256'])[:12]}, "
          f"{len(record['classes'])} classes, {record['image_size']}x{record['image_size']}"
          + (f"; the architecture comes from the parent, so params.yaml's {', '.join(ignored)} is not used"
             if ignored else ""))


if __name__ == "__main__":
    run_stage(main)
