"""LogisticRegression on GPUs: spmdlearn vs an L-BFGS logistic regression in PyTorch on the same
device memory (run on the GPU machine).

    python bench/gpu_logistic_bench.py [--rows 1000000] [--cols 50] [--classes 5] [--dtype float32]
    mpirun -n N python bench/gpu_logistic_bench.py --rows-per-gpu 5000000     # weak scaling

PyTorch baseline: the same objective as scikit-learn's (mean log-loss + ||W||^2 / (2 C n)),
multinomial, minimised by torch.optim.LBFGS (history 10, strong-Wolfe line search) for the same
number of iterations spmdlearn used (tol=1e-4, max_iter=100 by default). Reported: wall time
(synchronised, median of repeats), iterations, and the largest difference in predict_proba.
Under mpirun every rank fits its own rows; a repeat's time is the max over ranks.
"""
import argparse
import time
import warnings

import cupy as cp
import numpy as np
import torch
from mpi4py import MPI

from _gpu_common import timed, use_local_gpu

from spmdlearn.linear_model import LogisticRegression


def data(n, d, k, dtype, seed):
    rs = cp.random.RandomState(seed)
    X = rs.standard_normal((n, d), dtype=dtype)
    W = cp.random.RandomState(99).standard_normal((d, k), dtype=dtype) / np.sqrt(d) * 2
    score = X @ W + rs.gumbel(size=(n, k)).astype(dtype)
    return X, cp.argmax(score, axis=1)


def torch_lbfgs(X, y, k, C, iters):
    n, d = X.shape
    W = torch.zeros(d, k, dtype=X.dtype, device=X.device, requires_grad=True)
    b = torch.zeros(k, dtype=X.dtype, device=X.device, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=iters, history_size=10,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-4, tolerance_change=0)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ W + b, y) + (W * W).sum() / (2 * C * n)
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=50)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rows-per-gpu", type=int, default=0)
    a = p.parse_args()
    warnings.simplefilter("ignore")
    comm = MPI.COMM_WORLD
    card = use_local_gpu(comm)
    if a.rows_per_gpu:
        X, y = data(a.rows_per_gpu, a.cols, a.classes, a.dtype, seed=comm.rank)
        t = timed(lambda: LogisticRegression().fit(X, y), repeats=3, comm=comm)
        if comm.rank == 0:
            n = a.rows_per_gpu * comm.size
            print(f"| {comm.size} | {a.rows_per_gpu:,} | {n:,} | {a.dtype} | {t:.1f} | {card} |", flush=True)
        return
    X, y = data(a.rows, a.cols, a.classes, a.dtype, seed=0)
    est = LogisticRegression().fit(X, y)
    iters = int(est.n_iter_[0])
    t_sl = timed(lambda: LogisticRegression().fit(X, y), repeats=3)
    Xt, yt = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")
    t_pt = timed(lambda: torch_lbfgs(Xt, yt, a.classes, 1.0, iters), repeats=3)
    W, b = torch_lbfgs(Xt, yt, a.classes, 1.0, iters)
    p_pt = torch.softmax(Xt @ W + b, dim=1).cpu().numpy()
    p_sl = cp.asnumpy(est.predict_proba(X))
    print(f"## LogisticRegression on one GPU, {card}, {time.strftime('%Y-%m-%d')}\n")
    print(f"X: {a.rows:,} x {a.cols} {a.dtype}, {a.classes} classes; command: python "
          f"bench/gpu_logistic_bench.py --rows {a.rows} --cols {a.cols} --classes {a.classes} --dtype {a.dtype}\n")
    print("| what | median ms (wall, synchronised) | iterations |")
    print("|---|---:|---:|")
    print(f"| spmdlearn LogisticRegression().fit (lbfgs, tol 1e-4) | {t_sl:.1f} | {iters} |")
    print(f"| torch.optim.LBFGS, same objective, {iters} iterations | {t_pt:.1f} | {iters} |")
    print(f"\nmax |predict_proba difference|: {np.abs(p_sl - p_pt).max():.2e} (both stop early at tol 1e-4)")


if __name__ == "__main__":
    main()
