# The verbs people type. `make up` runs the service on MovieLens-100K; `make test` runs the tests.
# Both create .venv (pinned stack, constraints.txt) on first use.

PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
PYTHON = $(BIN)/python
STAMP = $(VENV)/.installed-stamp

.PHONY: install data train compare serve test test-slow lint bench-tutorial bench-load bench-data bench-default bench-baselines bench-scale clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(PYTHON) -m training fetch --dataset ml-100k --data-dir data

train: data
	$(PYTHON) -m training train --data-dir data --models-dir models

compare: data
	$(PYTHON) -m training compare --data-dir data --models-dir models --preset tutorial \
		--layers 32 --layers 64,32 --layers 128,64,32

serve: $(STAMP)
	$(PYTHON) -m service --models-dir models

test: $(STAMP)
	$(PYTHON) -m pytest -q

test-slow: $(STAMP)
	$(PYTHON) -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check contract training service tests benchmarks
	$(BIN)/mypy

bench-tutorial: data
	$(PYTHON) benchmarks/tutorial_depths.py --preset tutorial
	$(PYTHON) benchmarks/tutorial_depths.py --preset default

bench-load: $(STAMP)
	$(PYTHON) benchmarks/load_recommend.py --models-dir models --duration 10

bench-data: $(STAMP)
	$(PYTHON) benchmarks/load_data.py

bench-default: data
	$(PYTHON) benchmarks/default_model.py --data-dir data

bench-baselines: data
	$(PYTHON) benchmarks/classical_baselines.py --data-dir data

bench-scale: $(STAMP)
	$(PYTHON) benchmarks/scale_train.py
	$(PYTHON) benchmarks/index_scale.py
	$(PYTHON) benchmarks/store_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

include deploy/Makefile.deploy.mk

# The deployment verbs need the environment too.
up retrain: $(STAMP)
