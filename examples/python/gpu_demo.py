"""spmdlearn on GPUs: each rank's rows live on its own GPU (cupy or torch), fitted in place.

    mpirun -n 4 python examples/python/gpu_demo.py            # cupy shards
    mpirun -n 4 python examples/python/gpu_demo.py torch      # torch CUDA tensor shards

Rank r uses GPU (local rank % visible GPUs) and holds an uneven block of a synthetic 2M x 16
float32 matrix there. BasicStatistics and StandardScaler are fitted collectively on the device
arrays, without copying them to the host; rank 0 compares with numpy on all rows and prints a
verdict. Exits non-zero (on every rank) if anything disagrees.
"""
import os
import sys

import numpy as np
from mpi4py import MPI

from spmdlearn.basic_statistics import BasicStatistics
from spmdlearn.preprocessing import StandardScaler

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
kind = sys.argv[1] if len(sys.argv) > 1 else "cupy"

local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", os.environ.get("SLURM_LOCALID", rank)))
n, d = 2_000_000, 16
rng = np.random.default_rng(7)
X = (rng.standard_normal((n, d)) * np.linspace(1, 4, d) + np.arange(d) * 100).astype(np.float32)
bounds = np.round(np.cumsum([0] + [r + 1 for r in range(size)]) / (size * (size + 1) / 2) * n)
lo, hi = int(bounds[rank]), int(bounds[rank + 1])

if kind == "torch":
    import torch

    dev = local % torch.cuda.device_count()
    X_local = torch.as_tensor(X[lo:hi], device=f"cuda:{dev}")
else:
    import cupy

    dev = local % cupy.cuda.runtime.getDeviceCount()
    with cupy.cuda.Device(dev):
        X_local = cupy.asarray(X[lo:hi])

stats = BasicStatistics().fit(X_local)     # collective, on this rank's GPU
scaler = StandardScaler().fit(X_local)     # collective, on this rank's GPU

mine = np.concatenate([stats.mean_, stats.variance_, stats.min_, stats.max_, scaler.scale_])
same = all(np.array_equal(mine, o) for o in comm.allgather(mine))
ok = same
if rank == 0:
    X64 = X.astype(np.float64)
    ref = {"mean": X64.mean(0), "variance": X64.var(0, ddof=1), "min": X64.min(0), "max": X64.max(0)}
    print(f"{size} ranks, {kind} shards on GPUs, {n} x {d} float32 in total")
    spread = X64.std(0)
    for name, want in ref.items():
        got = getattr(stats, name + "_").astype(np.float64)
        # relative to the value, or to the column's spread for values near 0 (a mean of ~0)
        err = np.max(np.abs(got - want) / np.maximum(np.abs(want), spread))
        ok &= bool(err < 1e-5)
        print(f"  {name:<9} max rel diff vs numpy float64: {err:.1e}")
    err = np.max(np.abs(scaler.scale_ - X64.std(0)) / X64.std(0))
    ok &= bool(err < 1e-5)
    print(f"  scale_    max rel diff vs numpy float64: {err:.1e}")
    print(f"  identical model on every rank: {same}")
    print("RESULT:", "AGREE" if ok else "DIFFER")
ok = comm.bcast(ok, root=0)
sys.exit(0 if ok else 1)
