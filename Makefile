# The two commands of the README: `make demo` (the main job) and `make test` (everything CI runs).
# Both create .venv and install what they need first (scripts/setup_venv.sh, idempotent).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint bench

setup:
	bash scripts/setup_venv.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/hsic.py
	$(PY) benchmarks/capture.py
