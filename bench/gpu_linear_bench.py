"""LinearRegression on GPUs: spmdlearn vs PyTorch on the same device memory (run on the GPU machine).

    python bench/gpu_linear_bench.py [--rows 2000000] [--cols 100] [--dtype float32]
    mpirun -n N python bench/gpu_linear_bench.py --rows-per-gpu 20000000   # scaling, one GPU a rank

One process: spmdlearn LinearRegression().fit(X, y) on cupy arrays against the same model in
PyTorch -- centred normal equations (X^T X, X^T y on the centred data, torch.linalg.solve) and
torch.linalg.lstsq on the centred data -- CUDA events after a warm-up, median of repeats; the
coefficients are compared with a float64 solve. Under mpirun (N ranks): every rank fits its own
rows (weak scaling: --rows-per-gpu each); a repeat's time is the max over ranks of
sync; Barrier; fit; sync. Prints markdown.
"""
import argparse
import time

import cupy as cp
import numpy as np
import torch
from mpi4py import MPI

from _gpu_common import timed, use_local_gpu

from spmdlearn.linear_model import LinearRegression


def data(n, d, dtype, seed):
    rs = cp.random.RandomState(seed)
    X = rs.standard_normal((n, d), dtype=dtype) + cp.linspace(-3, 3, d, dtype=dtype)
    beta = cp.linspace(-1, 1, d, dtype=dtype)
    y = X @ beta + 0.1 * rs.standard_normal(n, dtype=dtype) + 5
    return X, y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--cols", type=int, default=100)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rows-per-gpu", type=int, default=0)
    a = p.parse_args()
    comm = MPI.COMM_WORLD
    card = use_local_gpu(comm)
    if a.rows_per_gpu:
        X, y = data(a.rows_per_gpu, a.cols, a.dtype, seed=comm.rank)
        t = timed(lambda: LinearRegression().fit(X, y), comm=comm)
        if comm.rank == 0:
            n = a.rows_per_gpu * comm.size
            print(f"| {comm.size} | {a.rows_per_gpu:,} | {n:,} | {a.dtype} | {t:.2f} | {card} |", flush=True)
        return
    n, d = a.rows, a.cols
    X, y = data(n, d, a.dtype, seed=0)
    Xt, yt = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")

    def torch_normal():
        mx, my = Xt.mean(0), yt.mean()
        Xc = Xt - mx
        A = Xc.T @ Xc
        b = Xc.T @ (yt - my)
        return torch.linalg.solve(A, b)

    def torch_lstsq():
        mx, my = Xt.mean(0), yt.mean()
        return torch.linalg.lstsq(Xt - mx, (yt - my)[:, None]).solution

    rows = [("spmdlearn LinearRegression().fit (cupy, in place)", timed(lambda: LinearRegression().fit(X, y)))]
    rows.append(("torch: centred normal equations + linalg.solve", timed(torch_normal)))
    try:
        rows.append(("torch: linalg.lstsq on centred data", timed(torch_lstsq)))
    except Exception as exc:  # noqa: BLE001 - cuSOLVER refuses some shapes
        rows.append((f"torch: linalg.lstsq failed ({type(exc).__name__}: {str(exc)[:80]})", float("nan")))
    coef = LinearRegression().fit(X, y).coef_
    X64 = Xt.double()
    Xc = X64 - X64.mean(0)
    ref = torch.linalg.solve(Xc.T @ Xc, Xc.T @ (yt.double() - yt.double().mean())).cpu().numpy()
    err = float(np.linalg.norm(coef - ref) / np.linalg.norm(ref))
    print(f"## LinearRegression on one GPU, {card}, {time.strftime('%Y-%m-%d')}\n")
    print(f"X: {n:,} x {d} {a.dtype}; command: python bench/gpu_linear_bench.py --rows {n} --cols {d} --dtype {a.dtype}\n")
    print("| what | median ms (wall, synchronised) |")
    print("|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")
    print(f"\nspmdlearn coef_ vs a float64 solve: {err:.2e} (relative)")


if __name__ == "__main__":
    main()
