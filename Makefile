# Two commands on a fresh machine with Python 3.10+ and make:
#   make demo   set up .venv, then run the workflow on the built-in demo set up to its predictions
#   make test   set up .venv, then run every test: fast, slow (end to end), and the real-SLURM cluster test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Per-test limits, in seconds: the fast loop, the slow end-to-end tests, the cluster test.
FAST_TIMEOUT ?= 300
SLOW_TIMEOUT ?= 900

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

# torch is pinned to the CPU wheel (pyproject.toml): a fresh install never pulls CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: setup
	$(BIN)/snakemake --cores all predictions

test: setup
	$(BIN)/python -m pytest -q --timeout=$(FAST_TIMEOUT)
	$(BIN)/python -m pytest -q -m slow --timeout=$(SLOW_TIMEOUT)
	timeout -k 30 1200 $(BIN)/python -m pytest -q -m slurm --timeout=1100

test-fast: setup
	$(BIN)/python -m pytest -q --timeout=$(FAST_TIMEOUT)

clean:
	rm -rf results logs .snakemake report.html
