# Set-up and entry points. `make run` and `make test` are the two commands of the README.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint clean

# One pinned set (requirements.txt) + the project itself, into a fresh virtual environment.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade "pip>=24"
	$(BIN)/pip install -r requirements.txt -e .
	touch $(STAMP)

setup: $(STAMP)

# The embedded default: the whole pipeline on the synthetic dataset, on CPU.
run: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores all

test: $(STAMP)
	$(BIN)/ruff check rpc tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check rpc tests benchmarks

clean:
	rm -rf results logs benchmarks/out .snakemake
