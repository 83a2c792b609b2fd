#!/usr/bin/env bash
# One quick round on a one-GPU lease (cheaper than the multi-GPU kinds): build, the CUDA C++ tests,
# tests/python/test_gpu.py, the one-GPU LinearRegression and KMeans benchmarks (also with
# SPMDLEARN_FP32_SIMT=1, the plain fp32 kernels, for comparison) and the CUPTI profiles.
#   bash scripts/gpu-round.sh OUTDIR        (on the device tool: bash scripts/gpu-round.sh $OUT)
# Writes build.log ctest.log pytest.log lin.md km.md linwall.md prof_km.txt prof_lin.txt into OUTDIR
# (8 files: the most the device tool brings back) and prints the headline lines.
# Knobs: ROUND_STEPS (default "build lin linwall km pytest ctest prof_km prof_lin"; "pyprof"
# writes pyprof.txt, the Python-side profile of a GPU LinearRegression fit; "ncu_gram" writes
# ncu_gram.txt, Nsight Compute on one launch of the Gram kernel; "kpp" writes kpp.md, the KMeans
# initialisation benchmark, fused and earlier candidate pass; "ncu_kpp" writes ncu_kpp.txt, Nsight
# Compute on one fused candidate launch), CTEST_FILTER
# (default 'Cuda*'), PYTEST_K (a pytest -k expression for test_gpu.py; default all).
set -u
OUTDIR=${1:-./gpu-round}
mkdir -p "$OUTDIR"
export NCCL_NVLS_ENABLE=0
PY=${PYTHON:-/opt/torch/.venv/bin/python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
S=$ROOT/build/gpu-check/site
STEPS=${ROUND_STEPS:-build lin linwall km pytest ctest prof_km prof_lin}
cd "$ROOT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
bench() { (cd bench && PYTHONPATH=$S timeout 150 "$@"); }
has() { [[ " $STEPS " == *" $1 "* ]]; }
if has build; then
  GPU_CHECK_STEPS=build PYTHON=$PY bash scripts/gpu-check.sh /tmp/gpu-round-check > "$OUTDIR/build.log" 2>&1
  tail -n 1 "$OUTDIR/build.log"
fi
if has ctest; then
  # The C++ tests are built before any benchmark, not beside them: a 16-job compile on the lease's
  # 16 cores made one LinearRegression benchmark 30x slower (its host syncs wait for a core).
  cmake -S . -B /tmp/gpu-round-ct -DCMAKE_BUILD_TYPE=Release -DSPMDLEARN_BUILD_TESTS=ON -DSPMDLEARN_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DSPMDLEARN_BUILD_PYTHON=OFF >/dev/null 2>&1 &&
    cmake --build /tmp/gpu-round-ct -j16 --target spmdlearn_tests >/tmp/gpu-round-ctb.log 2>&1 ||
    tail -n 30 /tmp/gpu-round-ctb.log
fi
if has lin; then
  {
    for dt in float32 float64; do bench "$PY" gpu_linear_bench.py --rows 2000000 --cols 100 --dtype $dt; done
    bench "$PY" gpu_linear_bench.py --rows 20000000 --cols 100 --dtype float32
    echo "### SPMDLEARN_FP32_SIMT=1"
    SPMDLEARN_FP32_SIMT=1 bench "$PY" gpu_linear_bench.py --rows 2000000 --cols 100 --dtype float32
  } > "$OUTDIR/lin.md" 2>&1
  grep -E "^\| spmdlearn|^\| torch: centred|^X:|SIMT|coef_" "$OUTDIR/lin.md"
fi
if has linwall; then
  PYTHONPATH=$S timeout 100 "$PY" bench/profile/linear_wall.py --repeats 7 > "$OUTDIR/linwall.md" 2>&1
  grep median "$OUTDIR/linwall.md"
fi
if has km; then
  {
    bench "$PY" gpu_kmeans_bench.py --rows 20000000 --cols 64 --k 256 --iters 20
    echo "### SPMDLEARN_FP32_SIMT=1"
    SPMDLEARN_FP32_SIMT=1 bench "$PY" gpu_kmeans_bench.py --rows 20000000 --cols 64 --k 256 --iters 20 --repeats 2
  } > "$OUTDIR/km.md" 2>&1
  grep -E "spmdlearn|PyTorch|peak|SIMT" "$OUTDIR/km.md"
fi
if has kpp; then
  # k-means++ / k-means|| initialisation: the fused candidate pass, then the earlier gemm pass.
  {
    bench "$PY" gpu_kmeans_init_bench.py --rows 20000000 --cols 64 --k 256
    SPMDLEARN_KPP_GEMM=1 bench "$PY" gpu_kmeans_init_bench.py --rows 20000000 --cols 64 --k 256 --repeats 2
    bench "$PY" gpu_kmeans_init_bench.py --rows 20000000 --cols 64 --k 256 --dtype float64 --repeats 2
  } > "$OUTDIR/kpp.md" 2>&1
  grep -E "^## |^\| (given|k-means)" "$OUTDIR/kpp.md"
fi
if has pytest; then
  PYTHONPATH=$S timeout 250 "$PY" -m pytest tests/python/test_gpu.py -q -rs -p no:cacheprovider ${PYTEST_K:+-k "$PYTEST_K"} \
    > "$OUTDIR/pytest.log" 2>&1
  tail -n 2 "$OUTDIR/pytest.log"
fi
if has ctest; then
  timeout 250 /tmp/gpu-round-ct/tests/cpp/spmdlearn_tests --gtest_filter="${CTEST_FILTER:-Cuda*}" > "$OUTDIR/ctest.log" 2>&1
  grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) +\]" "$OUTDIR/ctest.log"
  grep -B2 -A6 "Failure" "$OUTDIR/ctest.log" | head -40
fi
if has prof_km; then
  PYTHONPATH=$S timeout 150 "$PY" bench/profile/gpu_profile.py --what kmeans > "$OUTDIR/prof_km.txt" 2>&1
  grep -v "^---" "$OUTDIR/prof_km.txt" | cut -c1-64,140-215 | grep -A5 "## KMeans" | head -14
fi
if has prof_lin; then
  PYTHONPATH=$S timeout 100 "$PY" bench/profile/gpu_profile.py --what linear > "$OUTDIR/prof_lin.txt" 2>&1
  grep -v "^---" "$OUTDIR/prof_lin.txt" | cut -c1-64,140-215 | grep -A4 "## Linear" | head -6
fi
if has ncu_gram; then
  # One launch of the Gram kernel under Nsight Compute: throughput, warp stalls, instruction mix.
  (cd bench && PYTHONPATH=$S timeout 200 ncu --kernel-name-base demangled --kernel-name regex:gram_tc --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section InstructionStats --section MemoryWorkloadAnalysis \
    --section Occupancy "$PY" gpu_linear_bench.py --rows 2000000 --cols 100 --dtype float32) \
    > "$OUTDIR/ncu_gram.txt" 2>&1
  grep -E "Duration|Throughput|Issue Slots|Stall|Achieved Occupancy" "$OUTDIR/ncu_gram.txt" | head -20
fi
if has ncu_kpp; then
  # One k-means++ potentials launch (8 candidates) under Nsight Compute.
  (cd bench && PYTHONPATH=$S timeout 200 ncu --kernel-name-base demangled --kernel-name regex:few_candidates \
    --launch-skip 3 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis \
    --section Occupancy "$PY" gpu_kmeans_init_bench.py --rows 20000000 --cols 64 --k 256 --repeats 1) \
    > "$OUTDIR/ncu_kpp.txt" 2>&1
  grep -E "Duration|Throughput|Stall|Achieved Occupancy|Registers" "$OUTDIR/ncu_kpp.txt" | head -20
fi
if has pyprof; then
  PYTHONPATH=$S timeout 100 "$PY" bench/profile/linear_pyprof.py > "$OUTDIR/pyprof.txt" 2>&1
  head -n 30 "$OUTDIR/pyprof.txt"
fi
