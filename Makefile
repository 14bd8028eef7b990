# The README's commands. Everything installs into .venv; nothing global but apt packages in CI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast lint format bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/python examples/demo.py

test: venv
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/pytest -q -x -m "not slow and not slurm" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check hpcflow submitters tests bench examples
	$(BIN)/mypy hpcflow submitters

format: venv
	$(BIN)/ruff format hpcflow submitters tests bench examples

bench: venv
	$(BIN)/python bench/bulk_jobs.py
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
