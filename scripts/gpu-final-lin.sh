#!/usr/bin/env bash
# Session 6's closing GPU call (kept as a record of what ran): build, the whole ctest suite
# (mpi_np3 on a 2-GPU host exercises the shared-GPU fallback), the Gram test's printed errors, and
# the one-GPU LinearRegression benchmarks on the final code.
#   bash scripts/gpu-final-lin.sh $OUT      (on the device tool, kind nvidia-h100-x2)
set -u
cd "$(dirname "$0")/.." || exit 2
O=${1:-./gpu-final}
mkdir -p "$O"
PY=${PYTHON:-/opt/torch/.venv/bin/python3}
GPU_CHECK_STEPS="build ctest" GPU_CHECK_DEADLINE=400 PYTHON=$PY bash scripts/gpu-check.sh "$O" 2>&1 | grep -E "^\| [0-9]+ \||gpu-check:"
build/gpu-check/ctest/tests/cpp/spmdlearn_tests --gtest_filter='CudaGram*' | grep -E "weighted_cross|OK|FAILED" > "$O/gram.txt"
cat "$O/gram.txt"
S=$(pwd)/build/gpu-check/site
{
  for dt in float32 float32 float64; do (cd bench && CUDA_VISIBLE_DEVICES=0 PYTHONPATH=$S timeout 120 "$PY" gpu_linear_bench.py --rows 2000000 --cols 100 --dtype $dt); done
  (cd bench && CUDA_VISIBLE_DEVICES=0 PYTHONPATH=$S timeout 120 "$PY" gpu_linear_bench.py --rows 20000000 --cols 100 --dtype float32)
  CUDA_VISIBLE_DEVICES=0 PYTHONPATH=$S timeout 100 "$PY" bench/profile/linear_wall.py --repeats 7
} > "$O/lin.md" 2>&1
grep -E "^\| spmdlearn|^\| torch: centred|^X:|coef_|median" "$O/lin.md"
