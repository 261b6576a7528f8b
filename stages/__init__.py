"""DVC stage entry points (`python -m stages.<name>`). The paths below are the ones dvc.yaml declares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from neurodigits import NeuroDigitsError
from neurodigits.params import ModelParams, Params, load_params

PREPARED_DIR = "data/prepared"
DATA_REPORT = "reports/data.json"
MODEL_FILE = "models/model.keras"
RUN_FILE = "models/run.json"
HISTORY_FILE = "reports/history.csv"
METRICS_FILE = "reports/metrics.json"
PER_CLASS_FILE = "reports/per_class.json"
CONFUSION_FILE = "reports/confusion.csv"
PLOTS_DIR = "reports/plots"
EXPORT_DIR = "models/export"
PARENT_DIR = "models/parent"
PARENT_FILE = f"{PARENT_DIR}/parent.json"  # what train.init_from resolved to: version, run id, hashes, classes
PARENT_MODEL = f"{PARENT_DIR}/model.keras"  # the parent's Keras file, copied byte for byte


def read_run() -> dict:
    """What train recorded: the MLflow run id later stages add to, and the weights hash."""
    with open(RUN_FILE) as f:
        return json.load(f)


def read_parent() -> dict:
    """What resolve pinned `train.init_from` to ({"init_from": null} without a parent)."""
    with open(PARENT_FILE) as f:
        return json.load(f)


def load_stage_params() -> Params:
    """params.yaml; with `train.init_from`, the model section is the parent's: its architecture wins."""
    params = load_params()
    if params.train.init_from is None:
        return params
    parent = read_parent()
    if parent["init_from"] != params.train.init_from:
        raise NeuroDigitsError(f"{PARENT_FILE} resolves {parent['init_from']!r}, not train.init_from "
                               f"{params.train.init_from!r}; run `dvc repro` (it re-resolves the parent)")
    return params.model_copy(update={"model": ModelParams.model_validate(parent["model"])})


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage; a user-fixable problem becomes one line on stderr and exit status 1."""
    try:
        main()
    except NeuroDigitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
