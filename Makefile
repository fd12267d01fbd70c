# phasef: `make run` runs the supervised cycle on the embedded default; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup run headless test test-fast lint typecheck bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py pipeline/traces/_summary_native.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/phasef

headless: setup
	$(BIN)/phasef run --headless

# the tests also run preference training (DPO), which needs the optional extra
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,dpo]'
	touch $(TEST_STAMP)

test: setup $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

test-fast: setup $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
