# Set-up and entry points. `make run` and `make test` are the two commands of the README.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev

.PHONY: setup run run-seeds test test-slow lint clean clean-work

# One pinned set (requirements.txt) + the project itself, into a fresh virtual environment.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade "pip>=24"
	$(BIN)/pip install -r requirements.txt -e .
	touch $(STAMP)

# The tests and the linter on top (requirements-dev.txt): only `make test` and `make test-slow` need them.
$(DEV): $(STAMP) requirements-dev.txt
	$(BIN)/pip install -r requirements-dev.txt
	touch $(DEV)

setup: $(STAMP)

# The embedded default: the whole pipeline on the synthetic dataset, on CPU (one seed).
# After a killed run: a lock no Snakemake process holds any more is removed first, so `make run` just continues.
run: $(STAMP)
	$(BIN)/python -m rpc unlock-stale
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores all

# The same over seeds 15-19 (mean +- std, 95% intervals and verdicts in results/summary.md).
run-seeds: $(STAMP)
	$(BIN)/python -m rpc unlock-stale
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores all --configfile config/seeds.yaml

# The suite (CI also runs test-slow: the SLURM stand-in run, the real VOC/COCO configs end to end, ...).
# One test process per core (pytest-xdist), each taking whole test files, so that a file's shared workflow run is
# made once; --durations shows where the time went.
PYTEST := $(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15

test: $(DEV)
	$(BIN)/ruff check rpc tests benchmarks
	$(PYTEST) -m "not slow"

test-slow: $(DEV)
	$(PYTEST) -m slow

lint: $(DEV)
	$(BIN)/ruff check rpc tests benchmarks

# work/ of finished trainings (checkpoints no rerun needs); unfinished runs keep their resume point
clean-work: $(STAMP)
	$(BIN)/python -m rpc clean-work --work work

clean:
	rm -rf results logs benchmarks/out .snakemake
