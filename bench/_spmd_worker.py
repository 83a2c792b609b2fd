"""One spmdlearn benchmark case under MPI (launched by bench/run.py via mpirun).

    mpirun --oversubscribe -n R python bench/_spmd_worker.py --estimator BasicStatistics \
        --rows 4000000 --cols 16 --dtype float64 --repeats 7 --warmup 1

Every rank generates only its own rows (see _common.make_rows), then times
  * the floor: one streaming pass over the local block with numpy (np.add.reduce over the flat
    block, and over axis 0; the faster of the two is the floor), and
  * `fit` of the spmdlearn estimator,
  * for compute-bound estimators (EmpiricalCovariance), a flop floor: the method's minimum flops
    on the rank's rows over the FP64 rate that rank reaches in a 1536^3 dgemm (numpy's BLAS),
each repeat as: Barrier; t0; work; t1; then the max over ranks of (t1 - t0) is that repeat's time.
The reported number is the median over repeats (after `warmup` untimed calls). Rank 0 prints
one JSON line prefixed with _common.RESULT_MARK.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import _common as C  # noqa: E402


def make_estimator(name):
    params = {"result_options": "all"} if name == "BasicStatistics" else {}
    return C.make_estimator("spmdlearn", name, **params)


def timed_max(comm, fn, repeats, warmup):
    """Per repeat: max over ranks of the local wall time of fn (barrier before each call)."""
    local = C.time_repeats(fn, repeats, warmup, before=comm.Barrier)
    per_repeat = np.empty(len(local))
    comm.Allreduce(np.asarray(local, dtype=np.float64), per_repeat, op=MPI.MAX)
    all_local = comm.gather(local, root=0)
    return [float(t) for t in per_repeat], all_local


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--estimator", required=True, choices=C.ESTIMATORS)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--cols", type=int, required=True)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    a = p.parse_args()

    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    lo, hi = C.row_range(a.rows, rank, size)
    X = C.make_rows(lo, hi, a.cols, a.dtype, a.seed)
    est = make_estimator(a.estimator)
    comm.Barrier()

    meter = C.LoadMeter().start()
    flat = X.reshape(-1)
    floor_flat, _ = timed_max(comm, lambda: np.add.reduce(flat), a.repeats, a.warmup)
    floor_cols, _ = timed_max(comm, lambda: np.add.reduce(X, axis=0), a.repeats, a.warmup)
    fit, fit_local = timed_max(comm, lambda: est.fit(X), a.repeats, a.warmup)
    load = meter.stop()

    # Compute-bound estimators also get a flop floor (DESIGN.md 6: flops over the measured peak):
    # the minimum flops of the method over the FP64 rate one rank reaches in a large dgemm.
    flop_floor = peak = None
    flops_local = C.min_flops(a.estimator, hi - lo, a.cols)
    if flops_local:
        m = 1536
        A = np.random.default_rng(rank).standard_normal((m, m))
        gemm, _ = timed_max(comm, lambda: A @ A, 5, 1)
        peak = 2.0 * m**3 / C.median(gemm)  # flop/s of the slowest rank (max time per repeat)
        flop_floor = comm.allreduce(flops_local, op=MPI.MAX) / peak
    own_all = comm.reduce(load["own"], op=MPI.SUM, root=0)

    blas = None
    try:
        from threadpoolctl import threadpool_info

        blas = [
            {k: d.get(k) for k in ("internal_api", "num_threads", "filepath")}
            for d in threadpool_info() if d.get("user_api") == "blas"
        ]
    except Exception:  # noqa: BLE001 - informational only
        pass
    info = comm.gather({"rank": rank, "rows": hi - lo, "affinity": sorted(os.sched_getaffinity(0)),
                        "blas": blas}, root=0)

    if rank == 0:
        f_flat, f_cols = C.median(floor_flat), C.median(floor_cols)
        C.emit({
            "estimator": a.estimator, "rows": a.rows, "cols": a.cols, "dtype": a.dtype,
            "ranks": size, "repeats": a.repeats, "warmup": a.warmup,
            "fit_median": C.median(fit), "fit_times": fit,
            "fit_rank_medians": [C.median(t) for t in fit_local],
            "floor_flat_median": f_flat, "floor_cols_median": f_cols,
            "floor_median": min(f_flat, f_cols),
            "flop_floor": flop_floor, "peak_gflops_per_rank": None if peak is None else peak / 1e9,
            "bytes_per_rank_max": int(max(r["rows"] for r in info) * a.cols * np.dtype(a.dtype).itemsize),
            "ranks_info": info,
            # CPU other processes used while this case was being timed (floor + fit), in cores
            "external_load": C.external_load(load["wall"], load["busy"], load["steal"], own_all)[0],
            "steal": C.external_load(load["wall"], load["busy"], load["steal"], own_all)[1],
            "fingerprint": C.fingerprint(a.estimator, est),
        })


if __name__ == "__main__":
    main()
