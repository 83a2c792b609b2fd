"""KMeans on GPUs: spmdlearn (Lloyd on cupy arrays) vs a PyTorch Lloyd loop on the same device
memory (run on the GPU machine).

    python bench/gpu_kmeans_bench.py [--rows 20000000] [--cols 64] [--k 256] [--iters 20]
    mpirun -n N python bench/gpu_kmeans_bench.py --rows-per-gpu 20000000     # weak scaling
    mpirun -n N python bench/gpu_kmeans_bench.py --total-rows 20000000       # strong scaling

Both start from the same k rows as centres and run `iters` Lloyd iterations (spmdlearn: tol=0,
max_iter=iters, n_init=1; it stops early only if no label changes). Reported:
  - the card's measured fp32 peak (an 8192^3 sgemm, TF32 off);
  - the bare distance gemm X Cᵀ in PyTorch (TF32 off) and its share of that peak;
  - the PyTorch Lloyd iteration: ‖c‖² − 2 X Cᵀ, argmin, index_add_ of the rows, bincount;
  - spmdlearn's whole fit (centred copy, iterations, final E-step and exact inertia) divided by
    n_iter_, and that per-iteration time as a rate of the distance gemm's flops (a lower bound
    on the gemm's own rate), with the relative difference of the final inertia from PyTorch's.
"""
import argparse
import time

import cupy as cp
import torch
from mpi4py import MPI

from _gpu_common import timed, use_local_gpu

from spmdlearn.cluster import KMeans


def data(n, d, k, dtype, seed):
    """Gaussian blobs around k random centres (spread 10), unit noise: on the GPU."""
    rs = cp.random.RandomState(seed)
    centres = rs.standard_normal((k, d), dtype=dtype) * 10
    X = rs.standard_normal((n, d), dtype=dtype)
    X += centres[rs.randint(0, k, n)]
    return X


def torch_lloyd(T, C0, iters):
    C = C0.clone()
    for _ in range(iters):
        csq = (C * C).sum(1)
        lab = (csq[None, :] - 2 * (T @ C.T)).argmin(1)
        sums = torch.zeros_like(C).index_add_(0, lab, T)
        cnt = torch.bincount(lab, minlength=C.shape[0]).to(T.dtype)
        C = torch.where(cnt[:, None] > 0, sums / cnt.clamp(min=1)[:, None], C)
    return C, lab


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--cols", type=int, default=64)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rows-per-gpu", type=int, default=0)
    p.add_argument("--total-rows", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    comm = MPI.COMM_WORLD
    card = use_local_gpu(comm)
    flops = lambda n: 2.0 * n * a.cols * a.k  # noqa: E731 - the distance gemm of one iteration

    def est(init):
        return KMeans(a.k, init=init, n_init=1, max_iter=a.iters, tol=0.0)

    if a.rows_per_gpu or a.total_rows:
        n = a.rows_per_gpu or (a.total_rows * (comm.rank + 1) // comm.size - a.total_rows * comm.rank // comm.size)
        X = data(n, a.cols, a.k, a.dtype, seed=comm.rank)
        init = comm.bcast(cp.asnumpy(X[: a.k]) if comm.rank == 0 else None)
        it = est(init).fit(X).n_iter_
        t = timed(lambda: est(init).fit(X), repeats=a.repeats, comm=comm)
        total = comm.allreduce(n)
        if comm.rank == 0:
            print(f"| {comm.size} | {n if a.rows_per_gpu else total // comm.size:,} | {total:,} | {a.dtype} | "
                  f"{t:.1f} | {t / it:.2f} | {card} |", flush=True)
        return

    X = data(a.rows, a.cols, a.k, a.dtype, seed=0)
    T = torch.as_tensor(X, device="cuda")
    C0 = T[: a.k].clone()
    init = cp.asnumpy(X[: a.k])
    # The card's fp32 rate and the bare distance gemm.
    A = torch.randn(8192, 8192, device="cuda", dtype=torch.float32)
    t_peak = timed(lambda: A @ A)
    peak = 2 * 8192.0**3 / t_peak / 1e9  # TFLOP/s
    del A
    t_gemm = timed(lambda: T @ C0.T)
    torch.cuda.empty_cache()
    t_torch = timed(lambda: torch_lloyd(T, C0, a.iters), repeats=a.repeats)
    Ct, _ = torch_lloyd(T, C0, a.iters)
    lab = ((Ct * Ct).sum(1)[None, :] - 2 * (T @ Ct.T)).argmin(1)  # the final E-step, as scikit-learn
    inertia_t = float(((T - Ct[lab]) ** 2).sum(dtype=torch.float64))
    del lab
    torch.cuda.empty_cache()
    km = est(init).fit(X)
    t_sl = timed(lambda: est(init).fit(X), repeats=a.repeats)
    per = t_sl / km.n_iter_
    kpp = KMeans(a.k, n_init=1, max_iter=a.iters, tol=0.0, random_state=0)
    t_kpp = timed(lambda: kpp.fit(X), repeats=1)
    rate = lambda ms: flops(a.rows) / ms / 1e9  # noqa: E731 - TFLOP/s
    print(f"## KMeans on one GPU, {card}, {time.strftime('%Y-%m-%d')}\n")
    print(f"X: {a.rows:,} x {a.cols} {a.dtype} (blobs), k = {a.k}, {a.iters} Lloyd iterations from the same "
          f"k rows; command: python bench/gpu_kmeans_bench.py --rows {a.rows} --cols {a.cols} --k {a.k} "
          f"--iters {a.iters} --dtype {a.dtype}\n")
    print(f"Measured fp32 peak (8192^3 sgemm, TF32 off): {peak:.1f} TFLOP/s\n")
    print("| what | total ms | ms per iteration | distance-gemm TFLOP/s (share of peak) | final inertia rel. diff |")
    print("|---|---:|---:|---:|---:|")
    print(f"| PyTorch X Cᵀ alone (one gemm) | {t_gemm:.2f} | {t_gemm:.2f} | {rate(t_gemm):.1f} "
          f"({rate(t_gemm) / peak:.0%}) | |")
    print(f"| PyTorch Lloyd loop | {t_torch:.1f} | {t_torch / a.iters:.2f} | "
          f"{rate(t_torch / a.iters):.1f} ({rate(t_torch / a.iters) / peak:.0%}) | |")
    print(f"| spmdlearn KMeans.fit (n_iter_={km.n_iter_}) | {t_sl:.1f} | {per:.2f} | {rate(per):.1f} "
          f"({rate(per) / peak:.0%}) | {abs(km.inertia_ - inertia_t) / inertia_t:.1e} |")
    print(f"| spmdlearn KMeans.fit, init='k-means++' (n_iter_={kpp.n_iter_}) | {t_kpp:.1f} | | | |")
    print(f"\nspmdlearn vs PyTorch per iteration: {t_torch / a.iters / per:.2f}x\n")


if __name__ == "__main__":
    main()
