# Set-up and entry points. `make run` and `make test` are the two commands of the README.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev

.PHONY: setup run run-seeds report dry-run progress cluster test test-slow lint clean clean-work

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

# What users type, each runnable in a fresh shell (no activation needed):
#   make run                          the embedded default, one seed, in results/
#   make run-seeds                    the same over seeds 15-19
#   make run CONFIG=config/X.yaml     another benchmark or real data, in a folder of its own: runs/X/results/
#                                     (ARGS='--config dataset="{kind: voc, root: /data/VOC2012}"' adds options)
#   make report                       the run's HTML report (results/report.html, or runs/X/results/report.html)
#   make dry-run                      what `make run` would do, without doing it
#   make progress                     what each running job is doing
#   make cluster CONFIG=...           through profiles/slurm (sbatch)
# After a killed run: a lock no Snakemake process holds any more is removed first, so `make run` just continues.
CONFIG ?=
ARGS ?=
RUN_DIR ?= $(if $(CONFIG),runs/$(basename $(notdir $(CONFIG))),.)
SNAKEMAKE := PATH="$(abspath $(BIN)):$$PATH" $(abspath $(BIN))/snakemake -s $(abspath Snakefile) -d $(RUN_DIR) \
	$(if $(CONFIG),--configfile $(abspath $(CONFIG)))

run: $(STAMP)
	mkdir -p $(RUN_DIR) && cd $(RUN_DIR) && $(abspath $(BIN))/python -m rpc unlock-stale
	$(SNAKEMAKE) --cores all $(ARGS)

run-seeds: $(STAMP)
	mkdir -p $(RUN_DIR) && cd $(RUN_DIR) && $(abspath $(BIN))/python -m rpc unlock-stale
	$(SNAKEMAKE) --cores all $(if $(CONFIG),,--configfile $(abspath config/seeds.yaml)) $(ARGS)

report: run
	$(SNAKEMAKE) --report $(abspath $(RUN_DIR))/results/report.html $(ARGS)

dry-run: $(STAMP)
	$(SNAKEMAKE) --cores all -n $(ARGS)

# The same on a SLURM cluster (profiles/slurm; run it on a login node inside tmux/screen)
cluster: $(STAMP)
	mkdir -p $(RUN_DIR) && cd $(RUN_DIR) && $(abspath $(BIN))/python -m rpc unlock-stale
	$(SNAKEMAKE) --profile $(abspath profiles/slurm) $(ARGS)

progress: $(STAMP)
	cd $(RUN_DIR) && $(abspath $(BIN))/python -m rpc progress --watch 30

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
