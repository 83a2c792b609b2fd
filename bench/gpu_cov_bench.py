"""EmpiricalCovariance on one GPU vs cuBLAS on the same matrix (run on the GPU machine).

    python bench/gpu_cov_bench.py [--rows 200000000] [--cols 16] [--dtype float32]

Times spmdlearn's EmpiricalCovariance().fit(X) on a cupy array against the raw cuBLAS product the
covariance needs at least once -- cupy.cublas.syrk(X^T X) when cupy has it, and torch's X^T @ X
(cuBLAS gemm) -- and against the full covariance in PyTorch (torch.cov) and CuPy (cupy.cov), on
the same device memory: CUDA events around the call after a warm-up, median of repeats. The
device-to-device copy bandwidth is measured in the same run (bytes read once over it is the
floor). Also checks the covariance against float64 torch. Prints a markdown table.
"""
import argparse
import statistics
import time

import cupy as cp
import numpy as np
import torch

from spmdlearn.covariance import EmpiricalCovariance


def timed(fn, repeats=7, warmup=2):
    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    ts = []
    for _ in range(repeats):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ts.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(ts)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=200_000_000)
    p.add_argument("--cols", type=int, default=16)
    p.add_argument("--dtype", default="float32")
    a = p.parse_args()
    n, d = a.rows, a.cols
    rs = cp.random.RandomState(0)
    X = cp.empty((n, d), dtype=a.dtype)
    step = 1 << 23
    for lo in range(0, n, step):
        X[lo:lo + step] = rs.standard_normal((min(step, n - lo), d), dtype=a.dtype)
    X += cp.arange(d, dtype=a.dtype) * 10
    T = torch.as_tensor(X, device="cuda")
    gb = X.nbytes / 1e9
    rows = []
    t = timed(lambda: EmpiricalCovariance(store_precision=False).fit(X))
    how_fit = "one fused pass" if d <= 64 else "mean pass + centred dgemm"
    rows.append((f"spmdlearn EmpiricalCovariance.fit ({how_fit})", t))
    t_mm = timed(lambda: T.T @ T)
    rows.append(("torch X^T @ X (cuBLAS gemm, uncentred)", t_mm))
    t_syrk = None
    try:
        from cupy.cublas import syrk

        # One call: cuBLAS syrk takes seconds on this shape (k >> n), and the point is made.
        t_syrk = timed(lambda: syrk("T", X), repeats=1, warmup=0)
        rows.append(("cupy.cublas.syrk X^T X (cuBLAS syrk, uncentred)", t_syrk))
    except Exception as exc:  # noqa: BLE001
        print(f"cupy.cublas.syrk unavailable: {exc}")
    for name, fn in (("torch.cov (PyTorch, full covariance)", lambda: torch.cov(T.T, correction=0)),
                     ("cupy.cov (CuPy, full covariance)", lambda: cp.cov(X, rowvar=False, bias=True))):
        try:
            rows.append((name, timed(fn, repeats=3, warmup=1)))
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory for the centred copy
            print(f"{name}: failed ({type(exc).__name__}: {str(exc)[:120]})")
        cp.get_default_memory_pool().free_all_blocks()
        torch.cuda.empty_cache()
    # Device-to-device copy bandwidth (bytes read + written), 2 GiB buffers.
    src = cp.empty(1 << 31, dtype=cp.uint8)
    dst = cp.empty_like(src)
    t_copy = timed(lambda: dst.data.copy_from_device(src.data, src.nbytes))
    copy_bw = 2 * src.nbytes / (t_copy / 1e3) / 1e9
    del src, dst
    cov = EmpiricalCovariance(store_precision=False).fit(X).covariance_
    T64 = T.double()
    ref = torch.cov(T64.T, correction=0).cpu().numpy()
    del T64
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    err = float((np.abs(cov - ref) / scale).max())
    card = torch.cuda.get_device_name()
    print(f"## EmpiricalCovariance on one GPU, {card}, {time.strftime('%Y-%m-%d')}\n")
    print(f"X: {n:,} x {d} {a.dtype} ({gb:.1f} GB); command: python bench/gpu_cov_bench.py "
          f"--rows {n} --cols {d} --dtype {a.dtype}\n")
    print(f"device-to-device copy: {copy_bw:.0f} GB/s (read + write); X read once at that rate: "
          f"{gb / copy_bw * 1e3:.2f} ms\n")
    print("| what | median ms | GB/s (X read once) |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {gb / (ms / 1e3):.0f} |")
    # The faster cuBLAS route is the reference (cuBLAS syrk is pathological for small d, long k).
    base, how = min((t_mm, "gemm"), (t_syrk if t_syrk is not None else float("inf"), "syrk"))
    print(f"\nspmdlearn / fastest cuBLAS ({how}) time: {rows[0][1] / base:.2f}x "
          f"(rate {100 * base / rows[0][1]:.0f}% of cuBLAS's); {100 * gb / copy_bw * 1e3 / rows[0][1]:.0f}% "
          f"of the copy bandwidth; max |cov - float64 torch| / sqrt(c_ii c_jj): {err:.2e}")


if __name__ == "__main__":
    main()
