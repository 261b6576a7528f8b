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

.PHONY: setup repro test lint ui server bench lock
PORT ?= 5050
.DEFAULT_GOAL := repro

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

PLOTS_TEMPLATE := .dvc/plots/offline.html
$(PLOTS_TEMPLATE): $(VENV)/.installed  # dvc plots show/diff: Vega inline, no CDN (.dvc/config names it)
	$(BIN)/python -m neurodigits.plots_template

setup: $(VENV)/.installed $(PLOTS_TEMPLATE)  ## create .venv, install the pinned dependencies

repro: setup  ## run the pipeline (dvc repro) on params.yaml
	dvc repro

test: setup  ## run the test suite
	pytest

lint: setup  ## style and import checks
	ruff check .

ui: setup  ## browse runs in the MLflow UI on http://127.0.0.1:5000 (or say where the MLFLOW_TRACKING_URI server is)
	@case "$$MLFLOW_TRACKING_URI" in \
	  http*) echo "runs live on the tracking server: open $$MLFLOW_TRACKING_URI in a browser";; \
	  *) mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --default-artifact-root ./mlflow/artifacts \
	       --host 127.0.0.1 --port 5000;; \
	esac

server: setup  ## a team tracking server (PostgreSQL + mlflow server) on 127.0.0.1:$(PORT) until Ctrl-C
	python -m neurodigits.team_server --port $(PORT)

bench: setup  ## measure speed and accuracy (benchmarks/README section)
	python benchmarks/run.py

lock:  ## re-pin every transitive dependency after changing pyproject.toml
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
