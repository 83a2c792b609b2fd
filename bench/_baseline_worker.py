"""Single-process baselines for one benchmark case (launched by bench/run.py as a subprocess).

    python bench/_baseline_worker.py --estimator BasicStatistics --rows 4000000 --cols 16

Generates the whole matrix exactly as the spmd ranks generate their shards (concatenated), then
times, with the library's default threading (all cores of the machine):
  * numpy   -- the same statistics written the plain numpy way,
  * sklearn -- scikit-learn's estimator (where scikit-learn has one),
  * sklearnex -- scikit-learn-intelex's estimator (where it has one and is installed).
Each: `warmup` untimed calls, then the median of `repeats`. Prints one JSON line prefixed with
_common.RESULT_MARK.  `--info` instead prints library versions and thread settings.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

# ---------------------------------------------------------------------------------------------
# numpy: what a user would write to get the same numbers


def numpy_basic_statistics(X):
    n = X.shape[0]
    mean = X.mean(axis=0)
    std = X.std(axis=0, ddof=1)
    sum_squares = (X**2).sum(axis=0)
    return {
        "min": X.min(axis=0),
        "max": X.max(axis=0),
        "sum": X.sum(axis=0),
        "mean": mean,
        "variance": X.var(axis=0, ddof=1),
        "standard_deviation": std,
        "sum_squares": sum_squares,
        "sum_squares_centered": ((X - mean) ** 2).sum(axis=0),
        "second_order_raw_moment": sum_squares / n,
        "variation": std / mean,
    }


def numpy_covariance(X):
    return {"location": X.mean(axis=0), "covariance": np.cov(X, rowvar=False, bias=True)}


def numpy_standard_scaler(X):
    return {"mean": X.mean(axis=0), "var": X.var(axis=0)}


def numpy_max_abs(X):
    return {"max_abs": np.abs(X).max(axis=0)}


NUMPY = {
    "BasicStatistics": numpy_basic_statistics,
    "EmpiricalCovariance": numpy_covariance,
    "StandardScaler": numpy_standard_scaler,
    "MaxAbsScaler": numpy_max_abs,
}


def sklearn_estimator(name):
    return C.make_estimator("sklearn", name)  # None for BasicStatistics: scikit-learn has none


# Where scikit-learn-intelex keeps each estimator (it moved between releases; first hit wins).
SKLEARNEX_CANDIDATES = {
    "BasicStatistics": ["sklearnex.basic_statistics", "sklearnex.preview.basic_statistics"],
    "EmpiricalCovariance": ["sklearnex.covariance", "sklearnex.preview.covariance"],
    "StandardScaler": ["sklearnex.preprocessing", "sklearnex.preview.preprocessing"],
    "MaxAbsScaler": ["sklearnex.preprocessing", "sklearnex.preview.preprocessing"],
}


def sklearnex_estimator(name):
    """(estimator, 'module.Class') or (None, reason)."""
    import importlib

    try:
        import sklearnex  # noqa: F401
    except ImportError:
        return None, "not installed"
    for mod in SKLEARNEX_CANDIDATES[name]:
        try:
            cls = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
        est = cls(result_options="all") if name == "BasicStatistics" else cls()
        return est, f"{mod}.{name}"
    return None, "no such estimator in this sklearnex"


class _DispatchLog(logging.Handler):
    """Collects sklearnex's dispatch messages ('running accelerated version' / 'fallback')."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


LOADS = {}


def timed(fn, repeats, warmup, lib):
    """Median seconds; also records the CPU other processes used meanwhile in LOADS[lib]."""
    meter = C.LoadMeter().start()
    t = C.median(C.time_repeats(fn, repeats, warmup))
    m = meter.stop()
    ext, steal = C.external_load(m["wall"], m["busy"], m["steal"], m["own"])
    LOADS[lib] = {"external_load": ext, "steal": steal}
    return t


def versions():
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("spmdlearn", "numpy", "scikit-learn", "scikit-learn-intelex", "daal", "mpi4py",
                "threadpoolctl", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        from threadpoolctl import threadpool_info

        import sklearn.covariance  # noqa: F401  (loads scipy's BLAS too)

        out["threadpools"] = [
            {k: d.get(k) for k in ("user_api", "internal_api", "num_threads", "version", "filepath")}
            for d in threadpool_info()
        ]
    except Exception as e:  # noqa: BLE001
        out["threadpools"] = str(e)
    out["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS") if os.environ.get(k)}
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--info", action="store_true")
    p.add_argument("--estimator", choices=C.ESTIMATORS)
    p.add_argument("--rows", type=int)
    p.add_argument("--cols", type=int)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--libs", nargs="+", default=["numpy", "sklearn", "sklearnex"])
    a = p.parse_args()
    if a.info:
        C.emit(versions())
        return

    X = C.make_rows(0, a.rows, a.cols, a.dtype, a.seed)
    res = {"estimator": a.estimator, "rows": a.rows, "cols": a.cols, "dtype": a.dtype,
           "repeats": a.repeats, "warmup": a.warmup, "times": {}, "fingerprints": {}, "notes": {}}

    if "numpy" in a.libs:
        fn = NUMPY[a.estimator]
        res["times"]["numpy"] = timed(lambda: fn(X), a.repeats, a.warmup, "numpy")
        res["fingerprints"]["numpy"] = C.fingerprint(a.estimator, fn(X))

    if "sklearn" in a.libs:
        est = sklearn_estimator(a.estimator)
        if est is None:
            res["notes"]["sklearn"] = "scikit-learn has no such estimator"
        else:
            res["times"]["sklearn"] = timed(lambda: est.fit(X), a.repeats, a.warmup, "sklearn")
            res["fingerprints"]["sklearn"] = C.fingerprint(a.estimator, est)

    if "sklearnex" in a.libs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est, where = sklearnex_estimator(a.estimator)
        if est is None:
            res["notes"]["sklearnex"] = where
        else:
            log = _DispatchLog()
            logger = logging.getLogger("sklearnex")
            old = (logger.level, logger.propagate, logger.handlers[:])
            logger.setLevel(logging.INFO)
            logger.propagate = False
            logger.handlers[:] = [log]
            try:
                est.fit(X)
            finally:
                logger.setLevel(old[0])
                logger.propagate = old[1]
                logger.handlers[:] = old[2]
            dispatch = [m for m in log.messages if "running" in m or "fallback" in m.lower()]
            res["times"]["sklearnex"] = timed(lambda: est.fit(X), a.repeats, a.warmup, "sklearnex")
            res["fingerprints"]["sklearnex"] = C.fingerprint(a.estimator, est)
            res["notes"]["sklearnex"] = where + (f" [{dispatch[-1].strip()}]" if dispatch else "")

    res["loads"] = LOADS
    C.emit(res)


if __name__ == "__main__":
    main()
