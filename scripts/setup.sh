#!/usr/bin/env bash
# Installs what spmdlearn needs on a fresh Debian/Ubuntu machine (system packages + Python
# packages) and builds + installs the Python package from this checkout. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
need_apt=0
for p in libopenmpi-dev openmpi-bin libopenblas-dev liblapack-dev libgtest-dev cmake g++; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  echo "== apt-get: MPI, BLAS/LAPACK, GoogleTest, CMake"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    libopenmpi-dev openmpi-bin libopenblas-dev liblapack-dev libgtest-dev cmake g++ make >/dev/null
fi

PY=${PYTHON:-python3}
echo "== pip: build and test dependencies"
$PY -m pip install -q --disable-pip-version-check \
  "numpy>=1.23" "scipy" "scikit-learn>=1.6" "mpi4py>=3.1" "nanobind>=2.0" \
  "scikit-build-core>=0.10" pytest pandas matplotlib

echo "== pip: building spmdlearn (CPU; CMAKE_ARGS=${CMAKE_ARGS:-})"
CMAKE_ARGS="${CMAKE_ARGS:--DSPMDLEARN_ENABLE_CUDA=OFF}" \
  $PY -m pip install -q --disable-pip-version-check --no-build-isolation .
