#!/usr/bin/env bash
# Sets up a fresh machine and runs the demo: statistics of scikit-learn's digits data fitted by
# 2 MPI ranks (uneven shards), printed next to the single-process result, with a verdict.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe -n "${RANKS:-2}" "${PYTHON:-python3}" examples/python/demo.py
