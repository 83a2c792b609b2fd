"""PCA on GPUs: spmdlearn (covariance_eigh on cupy arrays) vs PyTorch on the same device memory
(run on the GPU machine).

    python bench/gpu_pca_bench.py [--rows 1000000] [--cols 256] [--k 16] [--dtype float32]
    mpirun -n N python bench/gpu_pca_bench.py --rows-per-gpu 4000000    # weak scaling

spmdlearn's three solvers (covariance_eigh, full = TSQR by cuSOLVER QR of centred chunks,
randomized = the range finder with 7 power iterations for k < 0.1 d) against
torch.linalg.svd of the centred matrix (full_matrices=False), torch.pca_lowrank (k,
niter=2), and the covariance route in PyTorch (centred X^T X, torch.linalg.eigh). Reported: wall
time (synchronised, median of repeats) and the largest relative difference of the top-k
explained variances from a float64 reference.
"""
import argparse
import time

import cupy as cp
import numpy as np
import torch
from mpi4py import MPI

from _gpu_common import timed, use_local_gpu

from spmdlearn.decomposition import PCA


def data(n, d, dtype, seed):
    rs = cp.random.RandomState(seed)
    return rs.standard_normal((n, d), dtype=dtype) * cp.logspace(0, -2, d, dtype=dtype) + 5


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=256)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rows-per-gpu", type=int, default=0)
    a = p.parse_args()
    comm = MPI.COMM_WORLD
    card = use_local_gpu(comm)
    fit = lambda X: PCA(n_components=a.k, svd_solver="covariance_eigh").fit(X)  # noqa: E731
    if a.rows_per_gpu:
        X = data(a.rows_per_gpu, a.cols, a.dtype, seed=comm.rank)
        t = timed(lambda: fit(X), comm=comm)
        if comm.rank == 0:
            print(f"| {comm.size} | {a.rows_per_gpu:,} | {a.rows_per_gpu * comm.size:,} | {a.dtype} | "
                  f"{t:.2f} | {card} |", flush=True)
        return
    X = data(a.rows, a.cols, a.dtype, seed=0)
    T = torch.as_tensor(X, device="cuda")
    ev_sl = fit(X).explained_variance_
    T64 = T.double()
    Tc = T64 - T64.mean(0)
    ref = torch.linalg.eigvalsh(Tc.T @ Tc).flip(0)[: a.k].cpu().numpy() / (a.rows - 1)
    del T64, Tc

    def svd():
        Xc = T - T.mean(0)
        return torch.linalg.svd(Xc, full_matrices=False)

    def lowrank():
        return torch.pca_lowrank(T, q=a.k, center=True, niter=2)

    def cov_eigh():
        Xc = T - T.mean(0)
        return torch.linalg.eigh(Xc.T @ Xc)

    rows = [("spmdlearn PCA(covariance_eigh).fit (cupy, in place)", timed(lambda: fit(X)), ev_sl)]
    for solver in ("full", "randomized"):
        est = lambda: PCA(n_components=a.k, svd_solver=solver, random_state=0).fit(X)  # noqa: E731
        rows.append((f"spmdlearn PCA({solver}).fit (cupy, in place)", timed(est), est().explained_variance_))
    for name, fn, ev in (
        ("torch.linalg.svd (centred, full_matrices=False)", svd,
         lambda r: (r[1][: a.k] ** 2 / (a.rows - 1)).double().cpu().numpy()),
        (f"torch.pca_lowrank (q={a.k}, niter=2)", lowrank,
         lambda r: (r[1][: a.k] ** 2 / (a.rows - 1)).double().cpu().numpy()),
        ("torch covariance route (centred XᵀX + linalg.eigh)", cov_eigh,
         lambda r: (r[0].flip(0)[: a.k] / (a.rows - 1)).double().cpu().numpy()),
    ):
        try:
            rows.append((name, timed(fn), ev(fn())))
        except Exception as exc:  # noqa: BLE001 - memory or cuSOLVER limits at this size
            rows.append((f"{name}: failed ({type(exc).__name__}: {str(exc)[:60]})", float("nan"), None))
        torch.cuda.empty_cache()
    print(f"## PCA on one GPU, {card}, {time.strftime('%Y-%m-%d')}\n")
    print(f"X: {a.rows:,} x {a.cols} {a.dtype}, {a.k} components; command: python bench/gpu_pca_bench.py "
          f"--rows {a.rows} --cols {a.cols} --k {a.k} --dtype {a.dtype}\n")
    print("| what | median ms | max rel. error of the top-k explained variances |")
    print("|---|---:|---:|")
    for name, ms, ev in rows:
        err = "" if ev is None else f"{float(np.max(np.abs(np.asarray(ev) - ref) / ref)):.1e}"
        print(f"| {name} | {ms:.2f} | {err} |")


if __name__ == "__main__":
    main()
