"""What the collective agreement costs per public call (issue 16): run under mpirun, e.g.

    mpirun -n 2 python bench/guard_overhead.py            # this build
    mpirun -n 2 /path/to/other/venv/bin/python bench/guard_overhead.py   # another build

Times (median over repeats, microseconds per call, the slowest rank's) of: one bare agreement from
Python (`_core.agree`), and small fits where the agreement is a visible share of the call --
StandardScaler.fit on 10 x 4 rows per rank, LinearRegression.fit on 1000 x 10 -- plus
LinearRegression.score. Small shapes on purpose: the agreement is a fixed cost per call.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from mpi4py import MPI

import spmdlearn
from spmdlearn import _core
from spmdlearn._comm import resolve
from spmdlearn.linear_model import LinearRegression
from spmdlearn.preprocessing import StandardScaler


def timed(fn, calls, repeats, comm):
    out = []
    for _ in range(repeats):
        comm.Barrier()
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        dt = (time.perf_counter() - t) / calls
        out.append(comm.allreduce(dt, op=MPI.MAX))
    return 1e6 * float(np.median(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    _, addr = resolve(None)
    rng = np.random.default_rng(comm.rank)
    Xs = rng.normal(size=(10, 4))
    X = rng.normal(size=(1000, 10))
    y = X @ np.arange(10.0)
    reg = LinearRegression().fit(X, y)
    try:
        bare = lambda: _core.agree(addr, 0, "", "bench.agree", [], [])  # noqa: E731
        bare()
    except TypeError:  # builds before issue 16: agree(comm, kind, message, params)
        bare = lambda: _core.agree(addr, 0, "", -1)  # noqa: E731
    rows = [
        ("bare agreement (_core.agree)", bare),
        ("StandardScaler.fit 10 x 4", lambda: StandardScaler().fit(Xs)),
        ("LinearRegression.fit 1000 x 10", lambda: LinearRegression().fit(X, y)),
        ("LinearRegression.score 1000 x 10", lambda: reg.score(X, y)),
    ]
    res = [(name, timed(fn, a.calls, a.repeats, comm)) for name, fn in rows]
    if comm.rank == 0:
        print(f"# spmdlearn {spmdlearn.__file__}  ranks={comm.size}")
        for name, us in res:
            print(f"{name:40s} {us:9.1f} us")


if __name__ == "__main__":
    main()
