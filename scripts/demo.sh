#!/usr/bin/env bash
# Sets up a fresh machine and runs the demo: statistics of scikit-learn's digits data fitted by
# 2 MPI ranks (uneven shards), printed next to the single-process result, with a verdict; then the
# linear models, PCA and KMeans examples on scikit-learn's built-in data sets, each compared with
# scikit-learn on all rows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for example in demo linear_models pca kmeans; do
  echo
  echo "== examples/python/$example.py on ${RANKS:-2} ranks"
  mpirun --oversubscribe -n "${RANKS:-2}" "${PYTHON:-python3}" "examples/python/$example.py"
done
