# Quick start on a fresh machine: `make train` and `make test` (each creates .venv, installs, gets the data).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
ARGS ?=
# Every optional feature is installed so the tests exercise it (sweeps and their dashboard, ONNX export, SLURM launcher,
# MLflow and W&B).
EXTRAS ?= dev,sweep,dashboard,export,cluster,loggers

.PHONY: install data system-data train test test-slow lint results clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	touch $@

install: $(INSTALLED)

# Local files first (data/ or Debian's copy); else install Debian's package when root; else download.
data: $(INSTALLED)
	@$(BIN)/python -m fmnist.data --no-download >/dev/null 2>&1 || $(MAKE) --no-print-directory system-data
	$(BIN)/python -m fmnist.data

system-data:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	  || echo "fmnist: could not install dataset-fashion-mnist; trying the download"; \
	else echo "fmnist: not root or no apt-get, so no Debian package; trying the download"; fi

train: data
	$(BIN)/python -m fmnist.train $(ARGS)

# Lint first, so CI (.ci/run runs `make test` alone) fails on what ruff finds too. pytest-xdist: one worker per
# core (two on a 2-core machine, at most 4), one torch thread each; an idle worker takes tests queued on the other.
test: lint data
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal $(ARGS)

test-slow: data
	$(BIN)/python -m pytest -q -m slow $(ARGS)

# Rebuild every study's report and the all-studies tables (README.md, docs/models.md) from docs/results/ alone.
results: $(INSTALLED)
	$(BIN)/python -m fmnist.report.studies docs/results

lint: $(INSTALLED)
	$(BIN)/ruff check fmnist tests tools

clean:
	rm -rf outputs lightning_logs .pytest_cache
