#!/usr/bin/env bash
# Sanitizer stage (docs/reliability.md, "Sanitizers"): builds the library, the C++ tests and the
# Python module with AddressSanitizer + UndefinedBehaviorSanitizer (+ float-cast-overflow and
# libstdc++'s bounds assertions; CPU only, -O1), then runs
#   1. ctest in that build: unit + thread-communicator suites (and the forced-ISA variants) and
#      the MPI suites under mpirun -n 1..4, with leak checking on;
#   2. pytest with the instrumented module: the single-process suite, and under mpirun -n 2 the
#      distributed modules that reach every estimator (bad input for all of them, the linear
#      models, logistic regression, PCA, KMeans).
# Any sanitizer report fails the run. Needs what scripts/setup.sh installs, and GCC.
#
# usage: scripts/sanitize.sh            (PYTHON=..., JOBS=... optional)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
PY=$(command -v "${PYTHON:-python3}")
BUILD=build/sanitize
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

echo "== sanitize: configure + build (ASan + UBSan, CPU, -O1) in $BUILD"
cmake -S . -B "$BUILD" -DSPMDLEARN_SANITIZE=ON -DSPMDLEARN_ENABLE_CUDA=OFF \
      -DSPMDLEARN_BUILD_TESTS=ON -DSPMDLEARN_BUILD_PYTHON=ON -DPython_EXECUTABLE="$PY" \
      -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" >/dev/null
cmake --build "$BUILD" -j"${JOBS:-$(nproc)}" --target spmdlearn_tests _core

echo "== sanitize: ctest (unit, thread communicator, mpirun -n 1..4; leak checking on)"
# The runtime options and suppressions of these entries are set in tests/cpp/CMakeLists.txt.
# install_and_example builds its own uninstrumented library: the normal stage runs it.
(cd "$BUILD" && ctest --output-on-failure --timeout 600 -E install_and_example)

echo "== sanitize: pytest with the instrumented module"
# The package as pip would install it, with the instrumented _core, ahead of any installed one.
site="$BUILD/site"
rm -rf "$site" && mkdir -p "$site"
cp -r python/spmdlearn "$site/"
cp "$BUILD"/_core*.so "$site/spmdlearn/"
core=$(ls "$site"/spmdlearn/_core*.so)
# python itself is not instrumented, so the ASan runtime must be loaded first (LD_PRELOAD);
# libstdc++ with it, or ASan's __cxa_throw interceptor finds no real __cxa_throw and every C++
# exception the module throws aborts the process. Both taken from the module's own links.
lib_of() { ldd "$core" | awk -v l="$1" 'index($1, l) == 1 {print $3}'; }
asan=$(lib_of libasan.so)
[ -n "$asan" ] || { echo "sanitize: $core does not link a shared ASan runtime (GCC needed)"; exit 1; }
preload="$asan $(lib_of libstdc++.so)"
# Leak checking off here: CPython and numpy keep interned objects and caches until exit by
# design; the C++ run above checks spmdlearn's own allocations for leaks. PYTHONMALLOC=malloc
# sends Python's small objects through ASan's malloc, so an overrun from C++ into one is caught.
pyenv=(ASAN_OPTIONS=detect_leaks=0:check_initialization_order=1:strict_string_checks=1
       UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
       LD_PRELOAD="$preload" PYTHONMALLOC=malloc PYTHONPATH="$PWD/$site" PYTHONUNBUFFERED=1)
env "${pyenv[@]}" "$PY" -c "
import spmdlearn, sys
sys.exit(0 if spmdlearn.__file__.startswith('$PWD/$site/') else 'spmdlearn imported from ' + spmdlearn.__file__)"
timeout -k 30 900 env "${pyenv[@]}" "$PY" -m pytest tests/python/test_single_process.py \
  tests/python/test_reliability_restores.py -q -p no:cacheprovider -x
# Every estimator: bad input and empty ranks for all (test_spmd_bad_input), parity of the linear
# models, logistic regression, every PCA solver and KMeans init; KMeans' digits quality test
# (30 s of scikit-learn reference fits) is left to the normal stage. The reliability modules: the
# agreement of calls/parameters/state, threads, intercommunicators, and damaged state on one rank.
timeout -k 30 900 mpirun -n 2 --oversubscribe env "${pyenv[@]}" "$PY" -m pytest \
  tests/python/spmd/test_reliability.py tests/python/spmd/test_reliability_restores_spmd.py \
  tests/python/spmd/test_spmd_bad_input.py tests/python/spmd/test_spmd_linear_model.py \
  tests/python/spmd/test_spmd_logistic.py tests/python/spmd/test_spmd_pca.py \
  tests/python/spmd/test_spmd_kmeans.py -k "not digits_quality" \
  -q -x -p no:cacheprovider --color=no

echo "== sanitize: clean, in $(( $(date +%s) - start )) s"
