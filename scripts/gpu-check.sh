#!/usr/bin/env bash
# CUDA checks, run ON the GPU machine from the repository root (a copied tree, no network):
#
#   build     pip-installs spmdlearn with CUDA for sm_90 into a scratch prefix (--target), no network
#   ctest     builds the C++ suite with CUDA (-DSPMDLEARN_BUILD_TESTS=ON) and runs ctest
#             (skipped, with a message, when GoogleTest is not installed)
#   pytest    python -m pytest tests/python/test_gpu.py (must run, not skip)
#   pytest-cpu  tests/python/test_single_process.py on the CUDA build (only if pandas imports)
#   spmd      tests/python/gpu_spmd_check.py under mpirun -n 2, 4, 8 ... (every power of two up to
#             the GPUs present; GPU_CHECK_RANKS overrides), -n 2 on one GPU
#   empty     tests/python/gpu_empty_check.py under mpirun -n 2 (sharing one GPU if need be): one
#             rank passes an empty (0, 0) or (0, d) block to every estimator's GPU path
#   bench     bench/gpu_bench.py on one GPU (copy bandwidth; spmdlearn vs PyTorch vs CuPy)
#   covbench  bench/gpu_cov_bench.py: EmpiricalCovariance on one GPU vs cuBLAS (cov-1gpu.md)
#   linbench  bench/gpu_linear_bench.py, gpu_logistic_bench.py, gpu_pca_bench.py: LinearRegression,
#             LogisticRegression and PCA vs PyTorch, weak scaling at every rank count (lin-1gpu.md)
#   kmbench   bench/gpu_kmeans_bench.py: KMeans vs a PyTorch Lloyd loop on one GPU, weak and strong
#             scaling at every rank count (km-1gpu.md)
#   scaletables  only the multi-GPU tables of kmbench and linbench (KMeans weak and strong,
#             LinearRegression weak), for a multi-GPU lease whose one-GPU numbers came from a
#             cheaper one-GPU lease (scale-tables.md)
#   scaling   bench/gpu_bench.py weak and strong scaling at 1, 2, 4, 8 ... GPUs (as many as there are)
#
# usage: bash scripts/gpu-check.sh [OUTDIR]      OUTDIR default: $OUT if set, else ./gpu-results
#
# Writes into OUTDIR: SUMMARY.md (card, date, versions, every step with its status, time and
# commands, the tail of each failing log, the benchmark tables), gpu-check.log (everything this
# script printed), logs.tar.gz (one log per step), bench-1gpu.md/.json, cov-1gpu.md, scaling.jsonl,
# scaling.md (8 files: the most the device tool brings back).
# Per-step logs live in OUTDIR/logs, except when OUTDIR is the device tool's $OUT (at most 8 files
# come back from there): then they stay in /tmp and only logs.tar.gz (refreshed after every step)
# is in OUTDIR. A failing step does not stop the later ones; the exit status is 1 if any failed.
#
# Knobs (environment):
#   PYTHON                 interpreter (default python3; on the GPU machine /opt/torch/.venv/bin/python3)
#   GPU_CHECK_STEPS        steps to run, in order (default "build ctest pytest pytest-cpu spmd empty bench scaling")
#   GPU_CHECK_DEADLINE     seconds after the start at which steps still to come are skipped and the
#                          summary is written (default 560 when $OUT is set -- the device tool
#                          stops a command at 600 s -- otherwise none)
#   GPU_CHECK_WORK         scratch folder for the builds (default build/gpu-check; kept between
#                          runs so a second run on the same machine rebuilds incrementally)
#   GPU_CHECK_JOBS         build parallelism (default nproc)
#   GPU_CHECK_RANKS        rank counts of the multi-GPU steps (default 1 2 4 ... up to the GPUs)
#   CTEST_EXCLUDE          ctest -E regex (default install_and_example: a CPU-only install test)
#   MPIRUN_ARGS            extra mpirun options (default "--bind-to none" for Open MPI)
#   BENCH_ARGS             extra arguments for the single-GPU benchmark
#   SCALING_ROWS_PER_GPU   weak scaling rows per GPU (default 200000000: 12.8 GB of float32 a card)
#   SCALING_TOTAL_ROWS     strong scaling rows in total (default 400000000)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
T0=$(date +%s)

OUTDIR=${1:-${OUT:-./gpu-results}}
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
if [[ -n ${OUT:-} && -d ${OUT:-/nonexistent} && $(cd "$OUT" && pwd) == "$OUTDIR" ]]; then
  LOGDIR=$(mktemp -d /tmp/gpu-check-logs.XXXXXX)
  : "${GPU_CHECK_DEADLINE:=560}"
else
  LOGDIR=$OUTDIR/logs
  rm -rf "$LOGDIR"
  mkdir -p "$LOGDIR"
fi
rm -f "$OUTDIR/SUMMARY.md" "$OUTDIR/gpu-check.log" "$OUTDIR/logs.tar.gz" "$OUTDIR/scaling.jsonl" \
      "$OUTDIR/scaling.md" "$OUTDIR/bench-1gpu.md" "$OUTDIR/bench-1gpu.json" "$OUTDIR/cov-1gpu.md" \
      "$OUTDIR/lin-1gpu.md" "$OUTDIR/km-1gpu.md"
exec > >(tee -a "$OUTDIR/gpu-check.log") 2>&1

# Never let NCCL, PyTorch or NVSHMEM use NVLink multicast on the lent machines (KINDS.md).
if [[ -n ${NCCL_NVLS_ENABLE:-} && ${NCCL_NVLS_ENABLE} != 0 ]]; then
  echo "note: NCCL_NVLS_ENABLE was '${NCCL_NVLS_ENABLE}'; forcing 0"
fi
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PYTHONDONTWRITEBYTECODE=1
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi

export ROOT OUTDIR LOGDIR
export PY=${PYTHON:-python3}
export WORK=${GPU_CHECK_WORK:-$ROOT/build/gpu-check}
export SITE=$WORK/site
export JOBS=${GPU_CHECK_JOBS:-$(nproc)}
export CTEST_EXCLUDE=${CTEST_EXCLUDE:-install_and_example}
export SCALING_ROWS_PER_GPU=${SCALING_ROWS_PER_GPU:-200000000}
export SCALING_TOTAL_ROWS=${SCALING_TOTAL_ROWS:-400000000}
# CuPy's axis-0 reductions on 200M x 16 take ~23 s a call: bench/gpu_bench.py times it at 1/16 of
# the rows and skips it (with the estimate, in the table) when it would exceed --cupy-budget-s.
export BENCH_ARGS=${BENCH_ARGS:---libs spmdlearn torch cupy}
STEPS=${GPU_CHECK_STEPS:-build ctest pytest pytest-cpu spmd empty bench covbench linbench scaling}

NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
NGPU=${NGPU:-0}
# Rank counts of the multi-GPU steps: 1, 2, 4, 8, ... up to the GPUs present (GPU_CHECK_RANKS
# overrides, e.g. "1 2 4 8"); one rank per GPU.
if [[ -n "${GPU_CHECK_RANKS:-}" ]]; then
  RANK_COUNTS=$GPU_CHECK_RANKS
else
  RANK_COUNTS=""
  for ((r = 1; r <= (NGPU > 0 ? NGPU : 1); r *= 2)); do RANK_COUNTS+="$r "; done
fi
export RANK_COUNTS
export NGPU

MPIRUN=(mpirun)
if mpirun --version 2>&1 | grep -q -E "Open MPI|OpenRTE"; then
  read -r -a _extra <<<"${MPIRUN_ARGS:---bind-to none}"
  MPIRUN+=(--oversubscribe "${_extra[@]}" -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST
           -x NVSHMEM_DISABLE_NVLS -x PYTHONPATH)
else
  read -r -a _extra <<<"${MPIRUN_ARGS:-}"
  MPIRUN+=("${_extra[@]}")
fi
export MPIRUN_LINE="${MPIRUN[*]}"

# --- step bookkeeping ---------------------------------------------------------------------------

STEP_NAMES=() STEP_STATUS=() STEP_SECS=() STEP_CMDS=() STEP_LOGS=() STEP_NOTES=()
ANY_FAILED=0

elapsed() { echo $(( $(date +%s) - T0 )); }

# run_step NAME TIMEOUT_S "commands, for the summary" FUNCTION [ARGS...]
# Runs FUNCTION in a fresh bash under `timeout`, tees its output into the step's log. Exit 0 is
# PASS, 77 is SKIP (the function printed why), anything else FAIL (124/137: timed out).
run_step() {
  local name=$1 limit=$2 cmds=$3
  shift 3
  local idx=${#STEP_NAMES[@]}
  local log
  log=$LOGDIR/$(printf '%02d' "$idx")-$name.log
  local status note="" secs=0
  if [[ -n ${GPU_CHECK_DEADLINE:-} ]]; then
    local left=$(( GPU_CHECK_DEADLINE - $(elapsed) ))
    if (( left < 30 )); then
      echo "== [$name] SKIP: time budget spent (GPU_CHECK_DEADLINE=${GPU_CHECK_DEADLINE}s)" | tee "$log"
      record "$name" SKIP 0 "$cmds" "$log" "time budget (GPU_CHECK_DEADLINE=${GPU_CHECK_DEADLINE}s) spent"
      return 0
    fi
    (( limit > left - 10 )) && limit=$(( left - 10 ))
  fi
  echo
  echo "== [$name] $(date -u +%H:%M:%S) timeout ${limit}s: $cmds" | tee "$log"
  local t
  t=$(date +%s)
  timeout --kill-after=20 "$limit" bash -o pipefail -c '"$@"' "$name" "$@" 2>&1 | tee -a "$log"
  local rc=$?
  secs=$(( $(date +%s) - t ))
  case $rc in
    0) status=PASS ;;
    77) status=SKIP; note=$(grep -m1 '^SKIP: ' "$log" | cut -c7- || true) ;;
    124|137) status=FAIL; note="timed out after ${limit}s" ;;
    *) status=FAIL; note="exit status $rc" ;;
  esac
  [[ $status == FAIL ]] && ANY_FAILED=1
  echo "== [$name] $status after ${secs}s${note:+ ($note)}" | tee -a "$log"
  record "$name" "$status" "$secs" "$cmds" "$log" "$note"
}

record() {
  STEP_NAMES+=("$1") STEP_STATUS+=("$2") STEP_SECS+=("$3") STEP_CMDS+=("$4") STEP_LOGS+=("$5")
  STEP_NOTES+=("${6:-}")
  write_summary
  tar czf "$OUTDIR/logs.tar.gz" -C "$(dirname "$LOGDIR")" "$(basename "$LOGDIR")" 2>/dev/null || true
}

# x CMD...: print the command, then run it (so every log shows exactly what ran).
x() { echo "+ $*"; "$@"; }

# --- steps (each runs in its own bash under timeout; exit 77 = skipped) -------------------------

step_build() {
  set -e
  cd "$ROOT"
  command -v nvcc >/dev/null || { echo "nvcc not found"; exit 1; }
  x nvcc --version | tail -n 2
  rm -rf "$SITE"
  mkdir -p "$WORK"
  echo "+ CMAKE_ARGS='-DSPMDLEARN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90' CMAKE_BUILD_PARALLEL_LEVEL=$JOBS"
  CMAKE_ARGS="-DSPMDLEARN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90" CMAKE_BUILD_PARALLEL_LEVEL=$JOBS \
    x "$PY" -m pip install --no-build-isolation --no-deps --no-index -v \
      --config-settings=build-dir="$WORK/wheel-build" --target "$SITE" .
  cd /tmp  # import the installed package, not anything from the tree
  x env PYTHONPATH="$SITE" "$PY" -c "
import sys, spmdlearn
from spmdlearn import _core
print('spmdlearn', spmdlearn.__version__, 'from', spmdlearn.__file__)
print('built_with_cuda', spmdlearn.built_with_cuda(), 'cuda_device_count', _core.cuda_device_count())
assert spmdlearn.__file__.startswith('$SITE'), 'imported spmdlearn from the wrong place'
sys.exit(0 if spmdlearn.built_with_cuda() else 1)"
}

have_gtest() {
  [[ -e /usr/include/gtest/gtest.h || -e /usr/local/include/gtest/gtest.h ]] || return 1
  local d
  d=$(mktemp -d)
  printf 'cmake_minimum_required(VERSION 3.16)\nproject(gtest_probe CXX)\nfind_package(GTest REQUIRED)\n' \
    >"$d/CMakeLists.txt"
  cmake -S "$d" -B "$d/b" >"$d/log" 2>&1
  local rc=$?
  rm -rf "$d"
  return $rc
}

step_ctest() {
  set -e
  cd "$ROOT"
  if ! have_gtest; then
    echo "SKIP: GoogleTest not found (no gtest/gtest.h under /usr/include or /usr/local/include, or find_package(GTest) fails); C++ tests not built"
    exit 77
  fi
  local gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  [[ -f $WORK/ctest/CMakeCache.txt ]] && gen=()  # keep the generator an earlier run chose
  x cmake -S . -B "$WORK/ctest" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSPMDLEARN_BUILD_TESTS=ON \
    -DSPMDLEARN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DSPMDLEARN_BUILD_PYTHON=OFF
  x cmake --build "$WORK/ctest" -j"$JOBS"
  cd "$WORK/ctest"
  x ctest --output-on-failure --timeout 300 ${CTEST_EXCLUDE:+-E "$CTEST_EXCLUDE"}
  # The CUDA tests by name, so the log shows they ran (not skipped): one process, then NCCL at
  # every multi-rank count (one GPU each).
  local t=$WORK/ctest/tests/cpp/spmdlearn_tests out rc np
  out=$(mktemp)
  rc=0
  echo "+ $t --gtest_filter='Cuda*'"
  "$t" --gtest_filter='Cuda*' >"$out" 2>&1 || rc=$?
  grep -E '^\[ +(OK|FAILED|SKIPPED|PASSED) +\]' "$out" || true
  if (( rc != 0 )); then tail -60 "$out"; exit 1; fi
  if grep -q SKIPPED "$out"; then echo "CUDA tests were skipped on the GPU machine"; exit 1; fi
  for np in $RANK_COUNTS; do
    (( np >= 2 && NGPU >= np )) || continue
    echo "+ timeout 300 $MPIRUN_LINE -n $np $t --gtest_filter='MpiCuda*'"
    rc=0
    timeout 300 $MPIRUN_LINE -n "$np" "$t" --gtest_filter='MpiCuda*' >"$out" 2>&1 || rc=$?
    grep -E '^\[ +(OK|FAILED|SKIPPED) +\]' "$out" | sed 's/ (.*//' | sort | uniq -c || true
    tail -4 "$out"
    if (( rc != 0 )); then tail -80 "$out"; exit 1; fi
  done
  rm -f "$out"
}

step_pytest() {
  cd "$ROOT"
  local log
  log=$(mktemp)
  PYTHONPATH="$SITE" x "$PY" -m pytest tests/python/test_gpu.py -q -rs -p no:cacheprovider 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if ! grep -q -E '[0-9]+ passed' "$log"; then
    echo "test_gpu.py ran no test (module skipped: see the reason above); on the GPU machine that is a failure"
    (( rc == 0 )) && rc=1
  fi
  rm -f "$log"
  exit "$rc"
}

step_pytest_cpu() {
  cd "$ROOT"
  if ! PYTHONPATH="$SITE" "$PY" -c "import pandas" 2>/dev/null; then
    echo "SKIP: pandas is not importable; tests/python/test_single_process.py imports it"
    exit 77
  fi
  PYTHONPATH="$SITE" x "$PY" -m pytest tests/python/test_single_process.py -q -p no:cacheprovider
}

step_spmd() {
  local n=$1
  cd "$ROOT"
  if (( NGPU < n )); then
    echo "SKIP: $NGPU GPU(s) here; the $n-rank GPU check needs $n"
    exit 77
  fi
  local log
  log=$(mktemp)
  # shellcheck disable=SC2086
  PYTHONPATH="$SITE" x $MPIRUN_LINE -n "$n" "$PY" tests/python/gpu_spmd_check.py 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if (( rc == 0 )) && ! grep -q "GPU SPMD CHECK OK ranks=$n" "$log"; then
    echo "no 'GPU SPMD CHECK OK ranks=$n' line"
    rc=1
  fi
  # The README's GPU example, with cupy and with torch shards.
  for kind in cupy torch; do
    # shellcheck disable=SC2086
    PYTHONPATH="$SITE" x $MPIRUN_LINE -n "$n" "$PY" examples/python/gpu_demo.py "$kind" 2>&1 | tee "$log"
    local rc2=${PIPESTATUS[0]}
    if (( rc2 != 0 )) || ! grep -q "RESULT: AGREE" "$log"; then
      echo "examples/python/gpu_demo.py $kind did not agree"
      rc=1
    fi
  done
  rm -f "$log"
  exit "$rc"
}

step_empty() {
  cd "$ROOT"
  local log
  log=$(mktemp)
  # shellcheck disable=SC2086
  PYTHONPATH="$SITE" x $MPIRUN_LINE -n 2 "$PY" tests/python/gpu_empty_check.py 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if (( rc == 0 )) && ! grep -q "GPU EMPTY CHECK OK ranks=2" "$log"; then
    echo "no 'GPU EMPTY CHECK OK ranks=2' line"
    rc=1
  fi
  rm -f "$log"
  exit "$rc"
}

step_bench() {
  cd "$ROOT"
  if (( NGPU < 1 )); then echo "nvidia-smi lists no GPU"; exit 1; fi
  # shellcheck disable=SC2086
  PYTHONPATH="$SITE" x "$PY" bench/gpu_bench.py --out "$OUTDIR/bench-1gpu.md" \
    --json "$OUTDIR/bench-1gpu.json" $BENCH_ARGS
}

step_covbench() {
  cd "$ROOT"
  if (( NGPU < 1 )); then echo "nvidia-smi lists no GPU"; exit 1; fi
  # The issue's shape, a wider one (fused 64-wide tiles) and float64.
  PYTHONPATH="$SITE" x "$PY" bench/gpu_cov_bench.py | tee "$OUTDIR/cov-1gpu.md"
  PYTHONPATH="$SITE" x "$PY" bench/gpu_cov_bench.py --rows 20000000 --cols 64 | tee -a "$OUTDIR/cov-1gpu.md"
  PYTHONPATH="$SITE" x "$PY" bench/gpu_cov_bench.py --rows 100000000 --cols 16 --dtype float64 \
    | tee -a "$OUTDIR/cov-1gpu.md"
}

# A scaling table: "### $title", the header line "$head" and its separator "$sep", then
# `mpirun -n N python <bench args>` at every rank count (each run prints its own row).
rank_table() {
  local title=$1 head=$2 sep=$3 n
  shift 3
  echo
  echo "### $title"
  echo
  echo "$head"
  echo "$sep"
  for n in $RANK_COUNTS; do
    (( NGPU >= n )) || continue
    PYTHONPATH="$SITE" $MPIRUN_LINE -n "$n" "$PY" "$@"
  done
  echo
}
# The weak-scaling table of the linear models and PCA.
weak_table() {
  local title=$1
  shift
  rank_table "$title" "| GPUs | rows a GPU | rows | dtype | median ms | card |" "|---:|---:|---:|---|---:|---|" "$@"
}

linear_weak_table() {
  weak_table "LinearRegression weak scaling (20,000,000 x 100 float32 a GPU; max over ranks)" \
    bench/gpu_linear_bench.py --rows-per-gpu 20000000 --cols 100
}
kmeans_scaling_tables() {
  local mode
  for mode in "rows-per-gpu 20000000" "total-rows 20000000"; do
    rank_table "KMeans ${mode%% *} scaling (${mode##* } rows; 64 columns float32, k = 256, 20 iterations; max over ranks)" \
      "| GPUs | rows a GPU | rows | dtype | fit ms | ms per iteration | card |" "|---:|---:|---:|---|---:|---:|---|" \
      bench/gpu_kmeans_bench.py --"${mode%% *}" "${mode##* }"
  done
}

# Only the multi-GPU tables of kmbench and linbench (KMeans weak/strong, LinearRegression weak):
# for a multi-GPU lease whose one-GPU tables were taken on a cheaper one-GPU lease.
step_scaletables() {
  cd "$ROOT"
  if (( NGPU < 1 )); then echo "nvidia-smi lists no GPU"; exit 1; fi
  { kmeans_scaling_tables; linear_weak_table; } | tee "$OUTDIR/scale-tables.md"
}

step_linbench() {
  cd "$ROOT"
  if (( NGPU < 1 )); then echo "nvidia-smi lists no GPU"; exit 1; fi
  {
    PYTHONPATH="$SITE" x "$PY" bench/gpu_linear_bench.py --rows 2000000 --cols 100 --dtype float32
    PYTHONPATH="$SITE" x "$PY" bench/gpu_linear_bench.py --rows 2000000 --cols 100 --dtype float64
    PYTHONPATH="$SITE" x "$PY" bench/gpu_linear_bench.py --rows 20000000 --cols 100 --dtype float32
    linear_weak_table
    PYTHONPATH="$SITE" x "$PY" bench/gpu_logistic_bench.py --rows 1000000 --cols 50 --classes 5
    weak_table "LogisticRegression weak scaling (5,000,000 x 50 float32 a GPU, 5 classes; max over ranks)" \
      bench/gpu_logistic_bench.py --rows-per-gpu 5000000
    PYTHONPATH="$SITE" x "$PY" bench/gpu_pca_bench.py --rows 1000000 --cols 256 --k 16
    weak_table "PCA (covariance_eigh) weak scaling (4,000,000 x 256 float32 a GPU; max over ranks)" \
      bench/gpu_pca_bench.py --rows-per-gpu 4000000
  } | tee "$OUTDIR/lin-1gpu.md"
}

step_kmbench() {
  cd "$ROOT"
  if (( NGPU < 1 )); then echo "nvidia-smi lists no GPU"; exit 1; fi
  {
    PYTHONPATH="$SITE" x "$PY" bench/gpu_kmeans_bench.py --rows 20000000 --cols 64 --k 256 --iters 20
    kmeans_scaling_tables
  } | tee "$OUTDIR/km-1gpu.md"
}

step_scaling() {
  local mode=$1 n=$2
  cd "$ROOT"
  if (( NGPU < n )); then
    echo "SKIP: $NGPU GPU(s) here; $n needed"
    exit 77
  fi
  # shellcheck disable=SC2086
  PYTHONPATH="$SITE" x $MPIRUN_LINE -n "$n" "$PY" bench/gpu_bench.py --mode "$mode" \
    --rows-per-gpu "$SCALING_ROWS_PER_GPU" --total-rows "$SCALING_TOTAL_ROWS" --jsonl "$OUTDIR/scaling.jsonl"
}

step_scaling_table() {
  cd "$ROOT"
  [[ -s $OUTDIR/scaling.jsonl ]] || { echo "SKIP: no scaling results"; exit 77; }
  x "$PY" bench/gpu_bench.py --assemble "$OUTDIR/scaling.jsonl" --out "$OUTDIR/scaling.md"
}

# --- summary ------------------------------------------------------------------------------------

ENV_MD=""
collect_env() {
  local smi nvcc_v cmake_v mpi_v pyinfo commit
  if command -v nvidia-smi >/dev/null 2>&1; then
    smi=$(nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "nvidia-smi failed")
  else
    smi="nvidia-smi not found"
  fi
  nvcc_v=$(nvcc --version 2>/dev/null | tail -n 1 || echo "nvcc not found")
  cmake_v=$(cmake --version 2>/dev/null | head -n 1)
  mpi_v=$(mpirun --version 2>&1 | head -n 1)
  pyinfo=$("$PY" - <<'EOF' 2>&1
import platform
parts = [f"python {platform.python_version()} ({__import__('sys').executable})"]
for m in ("numpy", "scikit-learn:sklearn", "torch", "cupy", "mpi4py", "nanobind", "scikit-build-core:scikit_build_core", "pytest", "pandas"):
    name, _, mod = m.partition(":")
    try:
        parts.append(f"{name} {__import__(mod or name).__version__}")
    except Exception as e:
        parts.append(f"{name} missing ({type(e).__name__})")
try:
    from mpi4py import MPI
    parts.append("MPI library: " + MPI.Get_library_version().splitlines()[0].strip())
except Exception as e:
    parts.append(f"MPI library: ? ({type(e).__name__})")
print("; ".join(parts))
EOF
)
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no git checkout (copied tree)")
  ENV_MD=$(cat <<EOF
- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')
- Host: $(hostname), $(uname -sr), $(nproc) CPU cores
- GPUs ($NGPU, nvidia-smi): $(echo "$smi" | sed 's/^/`/; s/$/`/' | paste -sd ';' - | sed 's/;/; /g')
- Toolchain: $nvcc_v; $cmake_v; $mpi_v
- Python: $pyinfo
- Source: $ROOT, git $commit
- Environment: NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST=$TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS=$NVSHMEM_DISABLE_NVLS; mpirun line: \`$MPIRUN_LINE -n N\`
- Command: \`bash scripts/gpu-check.sh ${1:-}\` with GPU_CHECK_STEPS="$STEPS"${GPU_CHECK_DEADLINE:+, GPU_CHECK_DEADLINE=$GPU_CHECK_DEADLINE}
EOF
)
}

write_summary() {
  local f=$OUTDIR/SUMMARY.md i failed=0 skipped=0 passed=0
  for s in "${STEP_STATUS[@]}"; do
    case $s in PASS) passed=$((passed + 1)) ;; FAIL) failed=$((failed + 1)) ;; SKIP) skipped=$((skipped + 1)) ;; esac
  done
  {
    echo "# spmdlearn GPU check"
    echo
    echo "$ENV_MD"
    echo "- Result: $passed passed, $failed failed, $skipped skipped; $(elapsed) s in all"
    echo
    echo "## Steps"
    echo
    echo "| # | step | status | s | commands | log |"
    echo "|---:|---|---|---:|---|---|"
    for i in "${!STEP_NAMES[@]}"; do
      local st=${STEP_STATUS[$i]}
      [[ $st == FAIL ]] && st="**FAIL**"
      echo "| $i | ${STEP_NAMES[$i]} | $st${STEP_NOTES[$i]:+ (${STEP_NOTES[$i]//|/\\|})} | ${STEP_SECS[$i]} | \`${STEP_CMDS[$i]//|/\\|}\` | $(basename "${STEP_LOGS[$i]}") |"
    done
    for i in "${!STEP_NAMES[@]}"; do
      if [[ ${STEP_STATUS[$i]} == FAIL ]]; then
        echo
        echo "### ${STEP_NAMES[$i]}: last 60 lines of $(basename "${STEP_LOGS[$i]}")"
        echo
        echo '```'
        tail -n 60 "${STEP_LOGS[$i]}" 2>/dev/null | cut -c1-400
        echo '```'
      fi
    done
    if [[ -s $OUTDIR/bench-1gpu.md ]]; then
      echo
      echo "## Single-GPU benchmark (bench-1gpu.md)"
      echo
      sed 's/^#/##/' "$OUTDIR/bench-1gpu.md"
    fi
    if [[ -s $OUTDIR/scaling.md ]]; then
      echo
      echo "## Scaling (scaling.md)"
      echo
      sed 's/^#/##/' "$OUTDIR/scaling.md"
    fi
    echo
    echo "Logs: logs.tar.gz (one file per step), gpu-check.log (the whole run)."
  } >"$f"
}

# --- run ----------------------------------------------------------------------------------------

collect_env "${1:-}"
echo "spmdlearn GPU check: $NGPU GPU(s); steps: $STEPS; output in $OUTDIR; step logs in $LOGDIR"
echo "$ENV_MD"
write_summary

export -f x have_gtest rank_table weak_table linear_weak_table kmeans_scaling_tables step_scaletables step_build step_ctest step_pytest step_pytest_cpu step_spmd step_empty step_bench \
  step_covbench step_linbench step_kmbench step_scaling step_scaling_table
for step in $STEPS; do
  case $step in
    build)
      run_step build 420 "CMAKE_ARGS='-DSPMDLEARN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90' $PY -m pip install --no-build-isolation --no-deps --no-index -v --target $SITE ." step_build ;;
    ctest)
      run_step ctest 480 "cmake -S . -B $WORK/ctest -DSPMDLEARN_BUILD_TESTS=ON -DSPMDLEARN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DSPMDLEARN_BUILD_PYTHON=OFF && cmake --build && ctest --output-on-failure -E '$CTEST_EXCLUDE'" step_ctest ;;
    pytest)
      run_step pytest 300 "PYTHONPATH=$SITE $PY -m pytest tests/python/test_gpu.py -q -rs" step_pytest ;;
    pytest-cpu)
      run_step pytest-cpu 300 "PYTHONPATH=$SITE $PY -m pytest tests/python/test_single_process.py -q" step_pytest_cpu ;;
    spmd)
      # every multi-rank count; at least 2 ranks (sharing one GPU if need be: host staging)
      spmd_counts=""
      for n in $RANK_COUNTS; do (( n >= 2 )) && spmd_counts+="$n "; done
      for n in ${spmd_counts:-2}; do
        run_step "spmd-np$n" 240 "$MPIRUN_LINE -n $n $PY tests/python/gpu_spmd_check.py" step_spmd "$n"
      done ;;
    empty)
      run_step empty 240 "$MPIRUN_LINE -n 2 $PY tests/python/gpu_empty_check.py" step_empty ;;
    bench)
      run_step bench 300 "$PY bench/gpu_bench.py --out bench-1gpu.md --json bench-1gpu.json $BENCH_ARGS" step_bench ;;
    covbench)
      run_step covbench 240 "$PY bench/gpu_cov_bench.py > cov-1gpu.md" step_covbench ;;
    linbench)
      run_step linbench 240 "$PY bench/gpu_linear_bench.py ... > lin-1gpu.md" step_linbench ;;
    kmbench)
      run_step kmbench 300 "$PY bench/gpu_kmeans_bench.py ... > km-1gpu.md" step_kmbench ;;
    scaletables)
      run_step scaletables 300 "mpirun -n 1,2,4.. bench/gpu_kmeans_bench.py, gpu_linear_bench.py > scale-tables.md" step_scaletables ;;
    scaling)
      for n in $RANK_COUNTS; do
        (( n == 1 || NGPU >= n )) || continue
        for mode in weak strong; do
          run_step "scaling-$mode-np$n" 180 "$MPIRUN_LINE -n $n $PY bench/gpu_bench.py --mode $mode --rows-per-gpu $SCALING_ROWS_PER_GPU --total-rows $SCALING_TOTAL_ROWS --jsonl scaling.jsonl" step_scaling "$mode" "$n"
        done
      done
      run_step scaling-table 60 "$PY bench/gpu_bench.py --assemble scaling.jsonl --out scaling.md" step_scaling_table ;;
    *)
      echo "unknown step '$step' (known: build ctest pytest pytest-cpu spmd empty bench covbench linbench kmbench scaletables scaling)"
      record "$step" FAIL 0 "" "/dev/null" "unknown step"
      ANY_FAILED=1 ;;
  esac
done

write_summary
echo
echo "================================================================================"
cat "$OUTDIR/SUMMARY.md"
echo "================================================================================"
echo "gpu-check: $( ((ANY_FAILED)) && echo FAILED || echo OK ) after $(elapsed) s; results in $OUTDIR"
exit "$ANY_FAILED"
