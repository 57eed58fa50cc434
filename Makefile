# chordflow — the two commands a new user needs:
#   make demo   render the demo corpus and run the whole pipeline (`dvc repro`), from nothing
#   make test   run the test suite, from nothing (installs, starts a local SLURM cluster)
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 2
PYTEST_ARGS ?=
# DeepSalience weights (MIT): taken from ../shared when present, else `make demo` fetches them once
# (online) into ~/.cache/chordflow/deepsalience with their SHA-256 checked.
ifneq ($(wildcard ../shared/weights/deepsalience/multif0.h5),)
export CHORDFLOW_DEEPSALIENCE_WEIGHTS ?= $(abspath ../shared/weights/deepsalience)
endif

.PHONY: install demo test test-fast slurm-up slurm-down bench bench-report bench-curve clean-demo

install:
	scripts/install.sh

demo: install
	@if [ -z "$$CHORDFLOW_DEEPSALIENCE_WEIGHTS" ]; then chordflow melody fetch-weights; fi
	dvc repro

# The full suite, SLURM included. The cluster is stopped whatever the test outcome.
test: install
	scripts/test.sh $(PYTEST_ARGS)

# Everything that needs no SLURM cluster (quick local loop).
test-fast: install
	$(BIN)/python -m pytest -m "not slurm" $(PYTEST_ARGS)

slurm-up:
	slurm/cluster.sh install && slurm/cluster.sh start

slurm-down:
	slurm/cluster.sh stop

# Every benchmark prints a markdown table (and writes JSON where it takes --json).
bench: install
	for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# One benchmark report in bench/report/ (README.md + PNGs + planning.md) from every bench/bench_*.py at
# quick settings, ~15 min on 2 cores; starts the local SLURM cluster for the executor figures if it is down.
bench-report: install
	$(BIN)/python bench/report.py --out bench/report --start-slurm $(BENCH_REPORT_ARGS)

# Adherence and realism against training steps (bench/report/curve.md), on the outputs of `make demo`:
# ~40 min on 2 cores for the tiny preset (8,800 steps); CURVE_ARGS="--presets tiny small" on a GPU (train.device).
bench-curve: install
	$(BIN)/python bench/bench_curve.py --work bench/results/curve --json bench/report/json/curve.json \
		--plot bench/report/curve.png $(CURVE_ARGS)

clean-demo:
	rm -rf data/corpus manifests/demo.parquet manifests/demo.rejects.parquet
