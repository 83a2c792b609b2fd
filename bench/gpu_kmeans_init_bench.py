"""KMeans initialisation on one GPU: k-means++ (scikit-learn's greedy variant, exact over all
rows) and k-means|| on device rows (run on the GPU machine).

    python bench/gpu_kmeans_init_bench.py [--rows 20000000] [--cols 64] [--k 256] [--dtype float32]

Each init is timed as a fit with max_iter=1 (init, one Lloyd iteration, the final E-step and
inertia) minus the same fit from given centres, so what is left is the initialisation alone.
Run it twice, once with SPMDLEARN_KPP_GEMM=1 in the environment, to time the earlier candidate
pass (a cuBLAS gemm and a separate distance kernel for every step) against the fused one.
Also printed: the inertia after one Lloyd iteration from each init (the fits draw the same random
numbers, so the paths should agree up to rounding of the distances), as a check of the output.
"""
import argparse
import os
import time
import warnings

import cupy as cp
from mpi4py import MPI

from _gpu_common import timed, use_local_gpu
from gpu_kmeans_bench import data

from spmdlearn.cluster import KMeans


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--cols", type=int, default=64)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    warnings.simplefilter("ignore")  # max_iter=1 from the first k rows: ConvergenceWarnings by design
    card = use_local_gpu(MPI.COMM_WORLD)
    X = data(a.rows, a.cols, a.k, a.dtype, seed=0)
    given = cp.asnumpy(X[: a.k])

    def fit(init):
        return KMeans(a.k, init=init, n_init=1, max_iter=1, tol=0.0, random_state=0).fit(X)

    base = timed(lambda: fit(given), repeats=a.repeats)
    path = "gemm pass (SPMDLEARN_KPP_GEMM=1)" if os.environ.get("SPMDLEARN_KPP_GEMM") == "1" else "fused pass"
    print(f"## KMeans initialisation on one GPU, {card}, {time.strftime('%Y-%m-%d')}, candidate {path}\n")
    print(f"X: {a.rows:,} x {a.cols} {a.dtype} (blobs), k = {a.k}; command: python bench/gpu_kmeans_init_bench.py "
          f"--rows {a.rows} --cols {a.cols} --k {a.k} --dtype {a.dtype}\n")
    print("| init | fit, max_iter=1 (ms) | init alone (ms) | inertia after one iteration |")
    print("|---|---:|---:|---:|")
    print(f"| given centres | {base:.1f} | — | {fit(given).inertia_:.6e} |")
    for init in ("k-means++", "k-means||"):
        t = timed(lambda: fit(init), repeats=a.repeats)
        print(f"| {init} | {t:.1f} | {t - base:.1f} | {fit(init).inertia_:.6e} |", flush=True)


if __name__ == "__main__":
    main()
