"""Where the wall time of a GPU LinearRegression fit goes, call by call (run on the GPU machine).

    python bench/profile/linear_wall.py [--rows 2000000] [--cols 100] [--repeats 15]

Wraps the C++ entry points the Python layer calls (_core.lr_partial_fit, _core.lr_solve,
_core.allreduce) with synchronised timers, fits repeatedly on cupy arrays, and prints per repeat
the whole fit, each wrapped call and the rest (Python), next to PyTorch's centred normal
equations on the same arrays, interleaved so that both see the same machine state. Then the
same fits with the small solve forced to the host (LAPACK) instead of cuSOLVER.
"""
import argparse
import statistics
import time

import cupy as cp
import torch

from spmdlearn import _core
from spmdlearn.linear_model import LinearRegression
from spmdlearn.linear_model import _linear

spent = {}


def wrap(name):
    fn = getattr(_core, name)

    def timed_call(*args, **kw):
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        cp.cuda.Device().synchronize()
        spent[name] = spent.get(name, 0.0) + (time.perf_counter() - t0) * 1e3
        return out

    setattr(_core, name, timed_call)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--cols", type=int, default=100)
    p.add_argument("--repeats", type=int, default=15)
    a = p.parse_args()
    rs = cp.random.RandomState(0)
    X = rs.standard_normal((a.rows, a.cols), dtype=cp.float32) + cp.linspace(-3, 3, a.cols, dtype=cp.float32)
    y = X @ cp.linspace(-1, 1, a.cols, dtype=cp.float32) + 5
    Xt, yt = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")

    def torch_normal():
        mx, my = Xt.mean(0), yt.mean()
        Xc = Xt - mx
        return torch.linalg.solve(Xc.T @ Xc, Xc.T @ (yt - my))

    for name in ("lr_partial_fit", "lr_solve", "allreduce", "agree"):
        wrap(name)
    for label, host_solve in (("cuSOLVER solve (default)", False), ("host LAPACK solve", True)):
        orig = _linear.all_ranks_on_gpu
        if host_solve:
            _linear.all_ranks_on_gpu = lambda addr, flag: False
        print(f"\n## {a.rows:,} x {a.cols} float32, {label}, {torch.cuda.get_device_name()}\n")
        print("| repeat | fit ms | lr_partial_fit | lr_solve | allreduce | rest (Python) | torch normal eq. ms |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        LinearRegression().fit(X, y)
        torch_normal()
        fits, tts = [], []
        for r in range(a.repeats):
            spent.clear()
            cp.cuda.Device().synchronize()
            t0 = time.perf_counter()
            LinearRegression().fit(X, y)
            cp.cuda.Device().synchronize()
            fit = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            torch_normal()
            torch.cuda.synchronize()
            tt = (time.perf_counter() - t0) * 1e3
            parts = [spent.get(k, 0.0) for k in ("lr_partial_fit", "lr_solve", "allreduce")]
            fits.append(fit)
            tts.append(tt)
            print(f"| {r} | {fit:.2f} | {parts[0]:.2f} | {parts[1]:.2f} | {parts[2]:.2f} | "
                  f"{fit - sum(parts):.2f} | {tt:.2f} |")
        print(f"\nmedian fit {statistics.median(fits):.2f} ms, torch {statistics.median(tts):.2f} ms")
        _linear.all_ranks_on_gpu = orig


if __name__ == "__main__":
    main()
