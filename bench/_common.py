"""Shared pieces of the CPU benchmark: cases, deterministic data, timing, result fingerprints.

Imported by bench/run.py (parent, light: no numpy-heavy work there), bench/_spmd_worker.py
(under mpirun) and bench/_baseline_worker.py (one process). Keep it free of spmdlearn / sklearn
imports at module level so every process imports only what it times.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import time

import numpy as np

# Estimators and their default (issue target) shapes. --quick divides the rows by 10.
ESTIMATORS = ["BasicStatistics", "EmpiricalCovariance", "StandardScaler", "MaxAbsScaler"]
DEFAULT_SHAPES = {
    "BasicStatistics": (4_000_000, 16),
    "EmpiricalCovariance": (1_000_000, 64),
    "StandardScaler": (4_000_000, 16),
    "MaxAbsScaler": (4_000_000, 16),
}

# Data is generated in fixed global blocks of BLOCK rows; block b is drawn from its own
# generator seeded by (seed, n_cols, b). A rank that owns rows [lo, hi) draws only the blocks that
# overlap its range, so the concatenation over ranks is exactly the matrix one process draws.
BLOCK = 1 << 16
RESULT_MARK = "@@BENCH_RESULT "


def row_range(n_rows, rank, size):
    """Rows [lo, hi) of `rank` when n_rows are split as evenly as possible over `size` ranks."""
    base, extra = divmod(n_rows, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def make_rows(lo, hi, n_cols, dtype, seed):
    """Rows [lo, hi) of the global benchmark matrix (deterministic, independent of the split).

    Column j is N(j + 1, (1 + 0.1 j)^2): non-zero means (so `variation` and the centred sums are
    not degenerate) and distinct scales per column.
    """
    dtype = np.dtype(dtype)
    out = np.empty((hi - lo, n_cols), dtype=dtype)
    if hi <= lo:
        return out
    offset = (np.arange(n_cols) + 1.0).astype(dtype)
    scale = (1.0 + 0.1 * np.arange(n_cols)).astype(dtype)
    for b in range(lo // BLOCK, (hi - 1) // BLOCK + 1):
        b_lo, b_hi = b * BLOCK, (b + 1) * BLOCK
        rng = np.random.default_rng([seed, n_cols, b])
        block = rng.standard_normal((BLOCK, n_cols), dtype=np.float64).astype(dtype, copy=False)
        s_lo, s_hi = max(lo, b_lo), min(hi, b_hi)
        dst = out[s_lo - lo : s_hi - lo]
        dst[...] = block[s_lo - b_lo : s_hi - b_lo]
    out *= scale
    out += offset
    return out


def time_repeats(fn, repeats, warmup, before=None, after=None):
    """Run fn warmup times untimed, then `repeats` timed; returns the list of seconds.

    `before` / `after` (e.g. MPI barriers) run around every call but outside the timed region
    except as the caller arranges (the spmd worker puts a barrier before t0 only).
    """
    for _ in range(warmup):
        if before:
            before()
        fn()
        if after:
            after()
    times = []
    for _ in range(repeats):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        if after:
            after()
        times.append(t1 - t0)
    return times


class LoadMeter:
    """Machine-wide CPU use during a timed section, to tell how much *other* processes used.

    external cores = (busy CPU seconds of the whole machine from /proc/stat - CPU seconds of the
    measured processes themselves) / wall seconds. Also the hypervisor's steal time. Linux only;
    elsewhere every field is None.
    """

    def __init__(self):
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @staticmethod
    def _stat():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = v
        return user + nice + system + irq + softirq, steal

    @staticmethod
    def self_cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def start(self):
        self._t0, self._s0, self._c0 = time.perf_counter(), self._stat(), self.self_cpu()
        return self

    def stop(self):
        """(wall seconds, machine busy CPU-seconds, steal CPU-seconds, this process CPU-seconds)."""
        wall, s1, c1 = time.perf_counter() - self._t0, self._stat(), self.self_cpu()
        if self._s0 is None or s1 is None:
            return {"wall": wall, "busy": None, "steal": None, "own": c1 - self._c0}
        return {"wall": wall, "busy": (s1[0] - self._s0[0]) / self._hz,
                "steal": (s1[1] - self._s0[1]) / self._hz, "own": c1 - self._c0}


def external_load(wall, busy, steal, own):
    """Cores used by other processes on average, and steal in cores (None if unknown)."""
    if busy is None or wall <= 0:
        return None, None
    return max(0.0, (busy - own) / wall), steal / wall


def min_flops(estimator_name, n_rows, n_cols):
    """Minimum floating-point operations of `fit` on n_rows x n_cols, where they bound the time.

    EmpiricalCovariance: the cross-product X^T X, lower triangle, n d (d + 1) flops (one FMA = 2).
    The other estimators do a few flops per element and are bound by reading the data: None.
    """
    if estimator_name == "EmpiricalCovariance":
        return float(n_rows) * n_cols * (n_cols + 1)
    return None


def median(xs):
    return float(statistics.median(xs))


# ---------------------------------------------------------------------------------------------
# Fingerprints: the fitted values, so the parent can check spmdlearn against the baselines.

BS_NAMES = [
    "min", "max", "sum", "mean", "variance", "standard_deviation", "sum_squares",
    "sum_squares_centered", "second_order_raw_moment", "variation",
]


FINGERPRINT_ATTRS = {
    "BasicStatistics": {n: n + "_" for n in BS_NAMES},
    "EmpiricalCovariance": {"location": "location_", "covariance": "covariance_"},
    "StandardScaler": {"mean": "mean_", "var": "var_"},
    "MaxAbsScaler": {"max_abs": "max_abs_"},
}


def fingerprint(estimator_name, obj):
    """Key results as plain lists. `obj` is a fitted estimator or a dict {key: array}."""
    spec = FINGERPRINT_ATTRS[estimator_name]
    if isinstance(obj, dict):
        vals = {k: obj[k] for k in spec if k in obj}
    else:
        vals = {k: getattr(obj, a) for k, a in spec.items() if getattr(obj, a, None) is not None}
    return {k: np.asarray(v, dtype=np.float64).ravel().tolist() for k, v in vals.items()}


def compare_fingerprints(a, b):
    """Largest normwise relative difference max|a-b| / max|b| over the common keys (None if none)."""
    worst = None
    for k in set(a) & set(b):
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.shape != y.shape:
            return float("inf")
        d = float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-300)) if x.size else 0.0
        worst = d if worst is None else max(worst, d)
    return worst


def emit(result):
    """Print the machine-readable result line (parsed by run.py)."""
    print(RESULT_MARK + json.dumps(result), flush=True)


# Where each estimator lives; spmdlearn mirrors scikit-learn's module names.
ESTIMATOR_MODULE = {
    "BasicStatistics": "basic_statistics",
    "EmpiricalCovariance": "covariance",
    "StandardScaler": "preprocessing",
    "MaxAbsScaler": "preprocessing",
}


def make_estimator(package, name, **params):
    """package.<module>.<name>(**params), or None when the package has no such estimator."""
    import importlib

    try:
        module = importlib.import_module(f"{package}.{ESTIMATOR_MODULE[name]}")
    except ImportError:
        return None
    cls = getattr(module, name, None)
    return None if cls is None else cls(**params)
