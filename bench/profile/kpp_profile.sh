#!/usr/bin/env bash
# The k-means++ candidate pass on one GPU: an Nsight Compute "full" report of one 8-candidate
# potentials launch (20M x 64 float32, k = 256), its per-instruction SASS page (stall samples by
# instruction) as CSV. Run after `ROUND_STEPS=build bash scripts/gpu-round.sh`.
#   bash bench/profile/kpp_profile.sh OUTDIR      -> OUTDIR/kpp.ncu-rep, kpp_source.csv
set -u
OUT=${1:-./kpp-profile}
mkdir -p "$OUT"
PY=${PYTHON:-/opt/torch/.venv/bin/python3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=$ROOT/build/gpu-check/site
cd "$ROOT/bench"
PYTHONPATH=$S timeout 150 ncu --set full --import-source yes --kernel-name-base demangled \
  --kernel-name regex:few_candidates --launch-skip 3 --launch-count 1 -f -o "$OUT/kpp" \
  "$PY" gpu_kmeans_init_bench.py --rows 20000000 --cols 64 --k 256 --repeats 1 > /tmp/kpp-ncu.log 2>&1
tail -n 3 /tmp/kpp-ncu.log
timeout 60 ncu -i "$OUT/kpp.ncu-rep" --page source --print-source sass --csv > "$OUT/kpp_source.csv" 2>&1
wc -l "$OUT/kpp_source.csv"
timeout 60 ncu -i "$OUT/kpp.ncu-rep" --page details --section WarpStateStats --section InstructionStats \
  --section ComputeWorkloadAnalysis --print-details all 2>&1 | grep -iE "stall|Duration|Instructions|Ipc" | head -40
