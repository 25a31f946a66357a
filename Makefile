# The two commands of the README are `make run` and `make test`; both create
# or reuse the virtualenv in .venv and install the pinned requirements.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	exec $(BIN)/python -m controlplane.launcher run

test: $(STAMP)
	$(BIN)/python -m controlplane.launcher test $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .

bench: $(STAMP)
	$(BIN)/python -m controlplane.launcher bench

# CHAOS_ARGS passes options on, e.g. CHAOS_ARGS="--runs 200 --workers 4".
chaos: $(STAMP)
	$(BIN)/python -m controlplane.launcher chaos $(CHAOS_ARGS)

clean:
	rm -rf var/test .pytest_cache .mypy_cache .ruff_cache
