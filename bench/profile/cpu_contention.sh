#!/usr/bin/env bash
# Does host CPU contention explain the rare slow GPU LinearRegression benchmarks? The same
# one-GPU benchmark alone, then with every core busy (one `yes` per core). Run from the repository
# root on the GPU machine after a build (PYTHONPATH=build/gpu-check/site).
PY=${PYTHON:-/opt/torch/.venv/bin/python3}
cd bench || exit 1
echo "### alone"
PYTHONPATH=../build/gpu-check/site "$PY" gpu_linear_bench.py --rows 2000000 --cols 100 --dtype float32 | grep -E "^\| (spmdlearn|torch: centred)"
echo "### every core busy ($(nproc) x yes)"
pids=()
for _ in $(seq "$(nproc)"); do yes >/dev/null & pids+=($!); done
PYTHONPATH=../build/gpu-check/site "$PY" gpu_linear_bench.py --rows 2000000 --cols 100 --dtype float32 | grep -E "^\| (spmdlearn|torch: centred)"
kill "${pids[@]}"
