#!/usr/bin/env python
"""CPU benchmark of KMeans: spmdlearn under mpirun against scikit-learn and scikit-learn-intelex
in one process on the same cores.

    python bench/kmeans_cpu.py [--quick] [--ranks 2] [--repeats 3]

Case (issue 6): 2,000,000 x 32 float64, k = 64, 20 Lloyd iterations from the same given centres
(init = the first 64 rows, n_init=1, max_iter=20, tol=0). Data: 64 Gaussian blobs (unit spread,
centres ~ N(0, 3^2)), generated block by block so that every rank draws only its own rows and
the ranks' rows concatenate to the one-process matrix. Each timing: median of --repeats fits
after one warm-up; spmdlearn's time is the slowest rank's (Barrier; fit; Barrier). The parity
column is |inertia - scikit-learn's| / scikit-learn's. Writes bench/results/cpu_kmeans_<date>.md.

    python bench/kmeans_cpu.py --init k-means++ --max-iter 1

times the default initialisation instead (scikit-learn's greedy k-means++, random_state=0; each
library draws its own random numbers, so the inertia column compares quality, not parity), with
one Lloyd iteration; writes cpu_kmeans_<date>_kmeans++_iter1.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linear_cpu import MARK, cpu_model, my_rows, run, timed_fits, worker_command  # noqa: E402

BLOCK = 1 << 15
N, D, K, ITERS = 2_000_000, 32, 64, 20


def make(lo, hi, d=D, seed=0):
    """Rows [lo, hi) of the data set (block-wise deterministic)."""
    centres = np.random.default_rng([seed, d, 999]).normal(size=(K, d)) * 3.0
    parts = []
    for b in range(lo // BLOCK, (hi - 1) // BLOCK + 1 if hi > lo else lo // BLOCK):
        r = np.random.default_rng([seed, d, b])
        Xb = r.normal(size=(BLOCK, d)) + centres[r.integers(0, K, size=BLOCK)]
        s, e = max(lo, b * BLOCK) - b * BLOCK, min(hi, (b + 1) * BLOCK) - b * BLOCK
        parts.append(Xb[s:e])
    return np.ascontiguousarray(np.vstack(parts)) if parts else np.empty((0, d))


def estimator(lib, init, max_iter=ITERS):
    if lib == "spmdlearn":
        from spmdlearn.cluster import KMeans
    elif lib == "sklearnex":
        from sklearnex.cluster import KMeans
    else:
        from sklearn.cluster import KMeans
    seed = {} if isinstance(init, np.ndarray) else {"random_state": 0}
    return KMeans(n_clusters=K, init=init, n_init=1, max_iter=max_iter, tol=0.0, **seed)


def worker(a):
    import warnings

    warnings.simplefilter("ignore")
    comm, rank, lo, hi = my_rows(a.lib, N // 10 if a.quick else N)
    X = make(lo, hi)
    init = make(0, K) if a.init == "given" else a.init
    times, est = timed_fits(lambda: estimator(a.lib, init, a.max_iter).fit(X), comm, a.repeats)
    if rank == 0:
        print(MARK + json.dumps({"median_s": statistics.median(times), "times": times,
                                 "inertia": float(est.inertia_), "n_iter": int(est.n_iter_)}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--ranks", type=int, nargs="+", default=[2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--libs", nargs="+", default=["sklearn", "sklearnex"])
    p.add_argument("--worker", action="store_true")
    p.add_argument("--lib")
    p.add_argument("--init", default="given", choices=["given", "k-means++"])
    p.add_argument("--max-iter", type=int, default=ITERS)
    a = p.parse_args()
    if a.worker:
        return worker(a)
    me = worker_command(__file__, a) + ["--init", a.init, "--max-iter", str(a.max_iter)]
    n = N // 10 if a.quick else N
    res = {}
    for lib in a.libs:
        print(f"KMeans: {lib} ...", flush=True)
        res[lib] = run(me + ["--lib", lib])
    for R in a.ranks:
        print(f"KMeans: spmdlearn {R} rank(s) ...", flush=True)
        # --bind-to none: OpenMPI binds 1-2 ranks to one core each, which would leave a single rank
        # one core of the two; unbound, each rank takes cores / ranks worker threads.
        res[f"spmdlearn x{R}"] = run(["mpirun", "--oversubscribe", "--bind-to", "none", "-n", str(R)] + me +
                                     ["--lib", "spmdlearn"])
    cpu = cpu_model()
    date = datetime.date.today().isoformat()
    sk, skx = res.get("sklearn"), res.get("sklearnex")
    out = [f"## KMeans on CPU, {date}", "",
           f"- Command: `python bench/kmeans_cpu.py {' '.join(sys.argv[1:])}`",
           f"- CPU (lscpu model): {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}",
           (f"- {n:,} x {D} float64, k = {K}, init = the first {K} rows, n_init=1, max_iter={a.max_iter}, "
            f"tol=0 (all fits run the same {a.max_iter} Lloyd iterations)." if a.init == "given" else
            f"- {n:,} x {D} float64, k = {K}, init = k-means++ (random_state=0, each library's own random "
            f"numbers), n_init=1, max_iter={a.max_iter}, tol=0; the last column compares quality, not parity."),
           "- sklearn / sklearnex: one process, their default threading on all cores; spmdlearn: "
           "`mpirun --bind-to none -n R` on the same cores, worker and BLAS threads = cores / R. Median of the "
           "repeats after a warm-up.", "",
           "| library | median s | vs scikit-learn | vs sklearnex | n_iter | inertia vs scikit-learn |",
           "|---|---:|---:|---:|---:|---:|"]
    for lib, r in res.items():
        if r is None:
            out.append(f"| {lib} | failed | | | | |")
            continue
        t = r["median_s"]
        vs = lambda ref: f"{ref['median_s'] / t:.2f}x" if ref else "n/a"  # noqa: E731
        par = f"{abs(r['inertia'] - sk['inertia']) / sk['inertia']:.1e}" if sk else ""
        out.append(f"| {lib} | {t:.3f} | {vs(sk)} | {vs(skx)} | {r['n_iter']} | {par} |")
    text = "\n".join(out) + "\n"
    print(text)
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    tag = ("_quick" if a.quick else "") + ("" if a.init == "given" else f"_{a.init}_iter{a.max_iter}")
    path = os.path.join(os.path.dirname(__file__), "results", f"cpu_kmeans_{date}{tag}.md")
    with open(path, "w") as f:
        f.write(text)
    print("wrote", path)


if __name__ == "__main__":
    main()
