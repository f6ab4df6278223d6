# Two commands for a newcomer: `make demo` (set up + run the nightly pipeline) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo test lint clean repro lock

# the environment is requirements.lock (every dependency pinned, with hashes), then the package itself
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m flows.demo --profile $${PROFILE:-default}

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)  # both cores; one file per worker at a time

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	# the demo's world: everything the data root holds except other worlds kept there (data/paper_tables)
	rm -rf data/raw data/bronze data/quarantine data/features data/validation data/mlflow data/monitoring \
	  data/prefect data/gx data/reports data/registry data/experiments data/checkpoints data/serving \
	  data/.settings data/.staging data/.locks mlruns

repro: $(STAMP)  # data/raw is the pipeline's input: simulated here when there is none
	test -d data/raw || $(BIN)/eliverec simulate
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro

lock:  # requirements.lock from pyproject.toml (uv; torch's CPU wheel from pip's find-links, if any)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra deploy --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS)) \
	  --generate-hashes -o requirements.lock
