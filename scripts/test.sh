#!/usr/bin/env bash
# The full test suite, from nothing: starts the local SLURM cluster, runs pytest, stops the cluster
# whatever happened. Extra arguments go to pytest. Called by `make test` (after scripts/install.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
export CHORDFLOW_REQUIRE_SLURM=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
slurm/cluster.sh install || exit 1
trap 'slurm/cluster.sh stop' EXIT
slurm/cluster.sh start || exit 1
.venv/bin/python -m pytest "$@"
