"""DVC stage entry points (`python -m stages.<name>`). The paths below are the ones dvc.yaml declares."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path


def _use_project_python() -> None:
    """DVC runs `python` from PATH. When that is not the project's environment (no venv activated), re-run the stage
    with the project's .venv; without one, stop with one line naming the fix."""
    try:
        metadata.version("neurodigits")
        return
    except metadata.PackageNotFoundError:
        pass
    venv_python = Path(os.environ.get("DVC_ROOT") or ".") / ".venv" / "bin" / "python"
    if venv_python.exists() and not os.environ.get("NEURODIGITS_REEXEC"):
        os.environ["NEURODIGITS_REEXEC"] = "1"
        os.execv(venv_python, [str(venv_python), *sys.orig_argv[1:]])
    sys.exit(f"error: {sys.executable} is not the project's Python (the neurodigits package is not installed there); "
             "run `make setup`, then `source .venv/bin/activate` (or put .venv/bin first on PATH)")


_use_project_python()

from neurodigits import NeuroDigitsError  # noqa: E402
from neurodigits.params import ModelParams, Params, load_params  # noqa: E402

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
    model = ModelParams.model_validate(parent["model"])
    if (model.kind == "crnn") != (params.data.task == "lines"):
        raise NeuroDigitsError(f"train.init_from: the parent is a {model.kind} model, which cannot read "
                               f"{params.data.task}; give a parent trained on {params.data.task}")
    return params.model_copy(update={"model": model})


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage; a user-fixable problem becomes one line on stderr and exit status 1."""
    try:
        main()
    except NeuroDigitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM; the MLflow run is marked KILLED
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
