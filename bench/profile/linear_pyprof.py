"""The Python side of a GPU LinearRegression fit (run on the GPU machine).

    python bench/profile/linear_pyprof.py [--rows 2000000] [--cols 100] [--fits 200]

Fits repeatedly on cupy arrays under cProfile and prints the functions by own time and by
cumulative time: what the thin Python layer costs next to the C++ calls (_core.*). cProfile adds
its own overhead to every Python call, so read the shares, not the absolute times; the plain
per-fit wall time without the profiler comes first.
"""
import argparse
import cProfile
import io
import pstats
import time

import cupy as cp

from spmdlearn.linear_model import LinearRegression


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--cols", type=int, default=100)
    p.add_argument("--fits", type=int, default=200)
    a = p.parse_args()
    rs = cp.random.RandomState(0)
    X = rs.standard_normal((a.rows, a.cols), dtype=cp.float32)
    y = X @ cp.linspace(-1, 1, a.cols, dtype=cp.float32) + 5
    m = LinearRegression()
    for _ in range(10):
        m.fit(X, y)
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for _ in range(a.fits):
        m.fit(X, y)
    cp.cuda.Device().synchronize()
    print(f"{a.rows} x {a.cols} float32: {(time.perf_counter() - t0) / a.fits * 1e3:.3f} ms a fit "
          f"(mean of {a.fits}, no profiler)")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(a.fits):
        m.fit(X, y)
    prof.disable()
    for key in ("tottime", "cumulative"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(key).print_stats(22)
        print(f"## by {key}\n" + s.getvalue().split("\n", 6)[-1])


if __name__ == "__main__":
    main()
