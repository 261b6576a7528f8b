# Every target sets up .venv first (idempotent: reinstalls only when the pins change).
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export RAY_USAGE_STATS_ENABLED := 0
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1

.PHONY: setup repro test lint ui bench lock
.DEFAULT_GOAL := repro

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed  ## create .venv and install the pinned dependencies

repro: setup  ## run the pipeline (dvc repro) on params.yaml
	dvc repro

test: setup  ## run the test suite
	pytest

lint: setup  ## style and import checks
	ruff check .

ui: setup  ## browse runs in the MLflow UI on http://127.0.0.1:5000
	mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --default-artifact-root ./mlflow/artifacts --host 127.0.0.1 --port 5000

bench: setup  ## measure speed and accuracy (benchmarks/README section)
	python benchmarks/run.py

lock:  ## re-pin every transitive dependency after changing pyproject.toml
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
