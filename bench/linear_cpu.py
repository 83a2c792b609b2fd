#!/usr/bin/env python
"""CPU benchmark of the linear models and PCA: spmdlearn under mpirun against scikit-learn and
scikit-learn-intelex in one process on the same cores.

    python bench/linear_cpu.py [--quick] [--ranks 1 2] [--repeats 3]

Cases: LinearRegression on 2,000,000 x 100 float64 and LogisticRegression (lbfgs, tol=1e-4,
max_iter=100, C=1) on 1,000,000 x 50 with 5 classes (issue 4); PCA(n_components=16) on
1,000,000 x 256 (issue 5; the "coef" column compares explained_variance_). Data: X ~ N(0, 1) with a random
mean per column, y from a fixed linear model (+ noise; classes by argmax of a noisy softmax
score), generated block by block so that every rank draws only its own rows and the ranks'
rows concatenate to the one-process matrix. Each timing: median of --repeats fits after one
warm-up; spmdlearn's time is the slowest rank's (Barrier; fit; Barrier). The parity column
compares spmdlearn's model with scikit-learn's on the same rows. Writes
bench/results/cpu_linear_<date>[_quick].md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

MARK = "@@LINEAR_RESULT "
BLOCK = 1 << 15
CASES = {"LinearRegression": (2_000_000, 100), "LogisticRegression": (1_000_000, 50),
         "PCA": (1_000_000, 256)}
N_CLASSES = 5


def make(case, lo, hi, d, seed=0):
    """Rows [lo, hi) of the case's data (block-wise deterministic)."""
    rng0 = np.random.default_rng([seed, d, 999])
    mu = rng0.normal(size=d) * 3.0
    beta = rng0.normal(size=(d, N_CLASSES)) / np.sqrt(d)
    Xs, ys = [], []
    for b in range(lo // BLOCK, (hi - 1) // BLOCK + 1 if hi > lo else lo // BLOCK):
        r = np.random.default_rng([seed, d, b])
        Xb = r.normal(size=(BLOCK, d)) + mu
        if case == "PCA":  # a decaying spectrum: column scales 1 .. 0.01
            Xb = (Xb - mu) * np.logspace(0, -2, d) + mu
            yb = np.zeros(BLOCK)
        elif case == "LinearRegression":
            yb = (Xb - mu) @ beta[:, 0] + 0.1 * r.normal(size=BLOCK) + 5.0
        else:
            score = (Xb - mu) @ beta * 2.0 + r.gumbel(size=(BLOCK, N_CLASSES))
            yb = np.argmax(score, axis=1)
        s, e = max(lo, b * BLOCK) - b * BLOCK, min(hi, (b + 1) * BLOCK) - b * BLOCK
        Xs.append(Xb[s:e])
        ys.append(yb[s:e])
    if not Xs:
        return np.empty((0, d)), np.empty(0)
    return np.ascontiguousarray(np.vstack(Xs)), np.concatenate(ys)


def estimator(lib, case):
    if case == "PCA":
        if lib == "spmdlearn":
            from spmdlearn.decomposition import PCA
        elif lib == "sklearnex":
            from sklearnex.decomposition import PCA
        else:
            from sklearn.decomposition import PCA
        return PCA(n_components=16)
    if lib == "spmdlearn":
        from spmdlearn import linear_model as m
    elif lib == "sklearnex":
        from sklearnex import linear_model as m
    else:
        from sklearn import linear_model as m
    if case == "LinearRegression":
        return m.LinearRegression()
    return m.LogisticRegression(tol=1e-4, max_iter=100, C=1.0)


def summary(est, case):
    if case == "PCA":
        return {"coef": est.explained_variance_.tolist()}
    if case == "LinearRegression":
        return {"coef": est.coef_.tolist(), "intercept": float(est.intercept_)}
    return {"coef": est.coef_.tolist(), "intercept": est.intercept_.tolist(), "n_iter": int(est.n_iter_[0])}


def worker(a):
    """One process (baselines) or one MPI rank (spmdlearn)."""
    import warnings

    warnings.simplefilter("ignore")
    n, d = CASES[a.case]
    comm, rank, lo, hi = my_rows(a.lib, n // 10 if a.quick else n)
    X, y = make(a.case, lo, hi, d)
    fit = (lambda: estimator(a.lib, a.case).fit(X)) if a.case == "PCA" else (lambda: estimator(a.lib, a.case).fit(X, y))
    times, est = timed_fits(fit, comm, a.repeats)
    if rank == 0:
        print(MARK + json.dumps({"median_s": statistics.median(times), "times": times,
                                 "model": summary(est, a.case)}), flush=True)


def my_rows(lib, n):
    """(comm, rank, lo, hi): this process's rows [lo, hi) of n -- all of them in one process, an
    even block per rank under mpirun for spmdlearn."""
    if lib != "spmdlearn":
        return None, 0, 0, n
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    return comm, rank, rank * n // size, (rank + 1) * n // size


def timed_fits(fit, comm, repeats):
    """(times of `repeats` fits after one warm-up, the last fitted estimator); under MPI each time
    is the slowest rank's (Barrier; fit; Barrier)."""
    times, est = [], None
    for i in range(repeats + 1):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        est = fit()
        if comm is not None:
            comm.Barrier()
        dt = time.perf_counter() - t0
        if comm is not None:
            from mpi4py import MPI

            dt = comm.allreduce(dt, op=MPI.MAX)
        if i > 0:
            times.append(dt)
    return times, est


def cpu_model():
    """The CPU's model name (lscpu's, else /proc/cpuinfo's)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def worker_command(script, a):
    """The command line of a worker process of `script` with the parent's --repeats / --quick."""
    return [sys.executable, os.path.abspath(script), "--worker", "--repeats", str(a.repeats)] + (
        ["--quick"] if a.quick else [])


def run(cmd):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    print(p.stdout[-2000:], p.stderr[-3000:], file=sys.stderr)
    return None


def parity(case, model, ref):
    a, b = np.asarray(model["coef"]), np.asarray(ref["coef"])
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=list(CASES))
    p.add_argument("--worker", action="store_true")
    p.add_argument("--case")
    p.add_argument("--lib")
    p.add_argument("--name", default="linear", help="results file: results/cpu_<name>_<date>.md")
    a = p.parse_args()
    if a.worker:
        return worker(a)
    me = worker_command(__file__, a)
    rows = []
    for case in a.cases:
        n, d = CASES[case]
        n = n // 10 if a.quick else n
        res = {}
        for lib in ("sklearn", "sklearnex"):
            print(f"{case}: {lib} ...", flush=True)
            res[lib] = run(me + ["--case", case, "--lib", lib])
        for R in a.ranks:
            print(f"{case}: spmdlearn {R} rank(s) ...", flush=True)
            res[f"spmdlearn x{R}"] = run(["mpirun", "--oversubscribe", "-n", str(R)] + me +
                                         ["--case", case, "--lib", "spmdlearn"])
        rows.append((case, n, d, res))
    cpu = cpu_model()
    date = datetime.date.today().isoformat()
    out = [f"## {', '.join(a.cases)} on CPU, {date}", "",
           f"- Command: `python bench/linear_cpu.py {' '.join(sys.argv[1:])}`",
           f"- CPU: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}",
           "- sklearn / sklearnex: one process, their default threading on all cores; spmdlearn: "
           "`mpirun -n R`, BLAS threads = cores / R. Median of the repeats after a warm-up.", "",
           "| case | shape | library | median s | vs scikit-learn | vs sklearnex | n_iter | coef vs scikit-learn |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for case, n, d, res in rows:
        sk, skx = res.get("sklearn"), res.get("sklearnex")
        for lib, r in res.items():
            if r is None:
                out.append(f"| {case} | {n:,} x {d} | {lib} | failed | | | | |")
                continue
            t = r["median_s"]
            vs = lambda ref: f"{ref['median_s'] / t:.2f}x" if ref else "n/a"  # noqa: E731
            it = r["model"].get("n_iter", "")
            par = f"{parity(case, r['model'], sk['model']):.1e}" if sk else ""
            out.append(f"| {case} | {n:,} x {d} | {lib} | {t:.3f} | {vs(sk)} | {vs(skx)} | {it} | {par} |")
    text = "\n".join(out) + "\n"
    print(text)
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results",
                        f"cpu_{a.name}_{date}{'_quick' if a.quick else ''}.md")
    with open(path, "w") as f:
        f.write(text)
    print("wrote", path)


if __name__ == "__main__":
    main()
