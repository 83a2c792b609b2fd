"""Where the time of one GPU fit goes: kernels, cuBLAS/cuSOLVER calls, copies and runtime API
calls of spmdlearn's own code, as seen by CUPTI through torch.profiler (it records every kernel
and runtime call in the process, not only PyTorch's).

    python bench/profile/gpu_profile.py [--what linear|pca|kmeans|all]
"""
import argparse

import cupy as cp
import torch
from torch.profiler import ProfilerActivity, profile

from spmdlearn.cluster import KMeans
from spmdlearn.decomposition import PCA
from spmdlearn.linear_model import LinearRegression


def report(name, fn, reps=3):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    print(f"\n## {name} ({reps} fits)\n")
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=60))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--what", default="all")
    a = p.parse_args()
    rs = cp.random.RandomState(0)
    if a.what in ("linear", "all"):
        X = rs.standard_normal((2_000_000, 100), dtype=cp.float32)
        y = X @ cp.arange(100, dtype=cp.float32) / 100 + 1
        report("LinearRegression 2M x 100 float32", lambda: LinearRegression().fit(X, y))
        del X, y
    if a.what in ("pca", "all"):
        X = rs.standard_normal((1_000_000, 256), dtype=cp.float32) + 5
        report("PCA(covariance_eigh) 1M x 256 float32",
               lambda: PCA(n_components=16, svd_solver="covariance_eigh").fit(X))
        report("PCA(full) 1M x 256 float32", lambda: PCA(n_components=16, svd_solver="full").fit(X), reps=1)
        del X
    if a.what in ("kmeans", "all"):
        X = rs.standard_normal((20_000_000, 64), dtype=cp.float32)
        init = cp.asnumpy(X[:256])
        report("KMeans 20M x 64 float32, k = 256, 5 Lloyd iterations",
               lambda: KMeans(256, init=init, n_init=1, max_iter=5, tol=0.0).fit(X), reps=1)
        # The benchmark's blobs (bench/gpu_kmeans_bench.py): empty clusters get relocated.
        X += (rs.standard_normal((256, 64), dtype=cp.float32) * 10)[rs.randint(0, 256, X.shape[0])]
        init = cp.asnumpy(X[:256])
        report("KMeans 20M x 64 float32 blobs, k = 256, 10 Lloyd iterations",
               lambda: KMeans(256, init=init, n_init=1, max_iter=10, tol=0.0).fit(X), reps=1)


if __name__ == "__main__":
    main()
