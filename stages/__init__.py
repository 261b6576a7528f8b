"""DVC stage entry points (`python -m stages.<name>`). The paths below are the ones dvc.yaml declares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from neurodigits import NeuroDigitsError

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


def read_run() -> dict:
    """What train recorded: the MLflow run id later stages add to, and the weights hash."""
    with open(RUN_FILE) as f:
        return json.load(f)


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
