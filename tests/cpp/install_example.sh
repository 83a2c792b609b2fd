#!/usr/bin/env bash
# Builds spmdlearn, installs it into a temporary prefix, builds examples/cpp against the installed
# package (find_package(spmdlearn)) and runs the examples with mpirun -n 2 — the steps of
# examples/cpp/README.md. Used by the CTest entry `install_and_example`.
#
# usage: install_example.sh [SOURCE_DIR] [MPIEXEC]
set -euo pipefail

src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
mpiexec=${2:-mpirun}
jobs=${SPMDLEARN_EXAMPLE_JOBS:-2}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spmdlearn-example.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "== build and install the library into $tmp/install"
cmake -S "$src" -B "$tmp/build" -DSPMDLEARN_ENABLE_CUDA=OFF -DSPMDLEARN_BUILD_TESTS=OFF \
      -DSPMDLEARN_BUILD_PYTHON=OFF
cmake --build "$tmp/build" -j"$jobs"
cmake --install "$tmp/build" --prefix "$tmp/install"

echo "== build the example against the installed package"
cmake -S "$src/examples/cpp" -B "$tmp/example" -DCMAKE_PREFIX_PATH="$tmp/install"
cmake --build "$tmp/example" -j"$jobs"

echo "== run it on 2 ranks"
launch=("$mpiexec" -n 2)
if "$mpiexec" --version 2>&1 | grep -q -E "Open MPI|OpenRTE"; then
  launch+=(--oversubscribe)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
out=$("${launch[@]}" "$tmp/example/basic_statistics")
echo "$out"
for expected in "ranks: 2" "mean:" "variance:" "covariance row 0:" "check: ok"; do
  if ! grep -q -F "$expected" <<<"$out"; then
    echo "install_example.sh: the example's output lacks '$expected'" >&2
    exit 1
  fi
done
out=$("${launch[@]}" "$tmp/example/linear_models")
echo "$out"
for expected in "least squares:" "logistic:" "check: ok"; do
  if ! grep -q -F "$expected" <<<"$out"; then
    echo "install_example.sh: the linear models example's output lacks '$expected'" >&2
    exit 1
  fi
done
out=$("${launch[@]}" "$tmp/example/pca")
echo "$out"
if ! grep -q -F "check: ok" <<<"$out"; then
  echo "install_example.sh: the PCA example failed" >&2
  exit 1
fi
out=$("${launch[@]}" "$tmp/example/kmeans")
echo "$out"
if ! grep -q -F "check: ok" <<<"$out"; then
  echo "install_example.sh: the KMeans example failed" >&2
  exit 1
fi
echo "== install_and_example: passed"
