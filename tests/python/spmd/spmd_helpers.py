"""Shared helpers of the distributed tests (imported by conftest.py and the test modules).

Every rank runs the same tests in the same order. Every rank loads or generates the SAME full
data set, keeps its own contiguous block of rows (``shard``), fits on it collectively, and compares
the fitted model with numpy / scikit-learn computed locally on the full data.

Rule for writing a test: do every collective call (fit, partial_fit, score, allgather) before any
assertion that could fail on one rank only; the conftest then makes every rank fail together.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from mpi4py import MPI

WORLD = MPI.COMM_WORLD

FLOAT_DTYPES = [np.float64, np.float32]
RTOL = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-4}


def rtol_of(dtype):
    return RTOL[np.dtype(dtype)]


# --- sharding ---------------------------------------------------------------------------------

def shard_bounds(n, comm, empty_rank=True, seed=0):
    """(lo, hi) of this rank's contiguous, uneven block of n rows.

    Split points come from a fixed RNG (the same on every rank). With ``empty_rank`` and more than
    one rank, the last rank gets 0 rows; every other rank gets at least one row while n allows.
    """
    size, rank = comm.Get_size(), comm.Get_rank()
    holders = size - 1 if (empty_rank and size > 1) else size
    rng = np.random.default_rng(12345 + 7919 * seed + 31 * size + n)
    if holders <= 1:
        cuts = [0, n]
    elif n >= holders:
        inner = np.sort(rng.choice(np.arange(1, n), size=holders - 1, replace=False))
        cuts = [0, *inner.tolist(), n]
    else:  # fewer rows than holders: some ranks get nothing, still contiguous
        inner = np.sort(rng.integers(0, n + 1, size=holders - 1))
        cuts = [0, *inner.tolist(), n]
    cuts += [n] * (size + 1 - len(cuts))  # the empty last rank
    return int(cuts[rank]), int(cuts[rank + 1])


def shard(X, comm, empty_rank=True, seed=0):
    """This rank's contiguous uneven block of the rows of X (see ``shard_bounds``)."""
    if X is None:
        return None
    lo, hi = shard_bounds(len(X), comm, empty_rank, seed)
    return X[lo:hi]


def round_blocks(n, comm, n_rounds, seed):
    """partial_fit rounds: the rows 0..n-1 cut into ``n_rounds`` consecutive ranges, each split
    unevenly over the ranks; in every odd round one rank (a different one each time) gets nothing.
    Returns this rank's row indices for each round."""
    rng = np.random.default_rng(500 + seed)
    cuts = np.sort(rng.choice(np.arange(1, n), size=n_rounds - 1, replace=False))
    bounds = [0, *cuts.tolist(), n]
    out = []
    for k in range(n_rounds):
        lo, hi = bounds[k], bounds[k + 1]
        # rotate which rank is empty between rounds; round 0 keeps every rank non-empty
        idx = np.arange(lo, hi)
        empty = k % 2 == 1
        sub = shard(idx, _Rotated(comm, k), empty_rank=empty, seed=seed * 10 + k)
        out.append(sub)
    return out


class _Rotated:
    """A stand-in communicator for ``shard``: rank numbering rotated by k, so that a different
    rank gets the empty block in each round."""

    def __init__(self, comm, k):
        self._size = comm.Get_size()
        self._rank = (comm.Get_rank() + k) % self._size

    def Get_size(self):
        return self._size

    def Get_rank(self):
        return self._rank


# --- data -------------------------------------------------------------------------------------

DATASETS = ["iris", "wine", "breast_cancer", "diabetes", "digits", "normal", "mean1e4"]


@functools.lru_cache(maxsize=None)
def _load64(name):
    import sklearn.datasets as ds

    if name == "normal":
        rng = np.random.default_rng(2024)
        scales = np.array([1.0, 0.1, 10.0, 3.0, 0.5])
        X = rng.normal(size=(331, 5)) * scales + np.array([0.2, -1.0, 5.0, 0.0, 100.0])
    elif name == "mean1e4":  # large mean, tiny spread: catches naive sum-of-squares
        rng = np.random.default_rng(7)
        X = 1e4 + 0.01 * rng.normal(size=(293, 4))
    else:
        X = getattr(ds, f"load_{name}")(return_X_y=True)[0]
    X = np.ascontiguousarray(X, dtype=np.float64)
    X.setflags(write=False)
    return X


def load(name, dtype=np.float64):
    """The full data set (every rank gets the same array); read-only, cached."""
    X = _load64(name)
    if np.dtype(dtype) != X.dtype:
        X = _load_cast(name, np.dtype(dtype).name)
    return X


@functools.lru_cache(maxsize=None)
def _load_cast(name, dtype_name):
    X = np.ascontiguousarray(_load64(name), dtype=dtype_name)
    X.setflags(write=False)
    return X


def int_weights(n, seed=0):
    """Integer weights 0..3 (zeros included) so that weight k == row repeated k times."""
    return np.random.default_rng(99 + seed).integers(0, 4, size=n)


def frac_weights(n, seed=0):
    return np.random.default_rng(199 + seed).uniform(0.0, 2.5, size=n)


# --- comparisons ------------------------------------------------------------------------------

def assert_close(actual, desired, dtype, atol=0.0, what=""):
    """|actual - desired| <= atol + rtol * |desired| elementwise, rtol from ``dtype`` (float64 1e-7,
    float32 1e-4); ``atol`` may be an array (per-column scale). NaN must match NaN."""
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    assert a.shape == d.shape, f"{what}: shape {a.shape} != {d.shape}"
    rtol = rtol_of(dtype)
    tol = np.broadcast_to(np.asarray(atol, dtype=np.float64), d.shape) + rtol * np.abs(d)
    nan_a, nan_d = np.isnan(a), np.isnan(d)
    with np.errstate(invalid="ignore"):
        bad = (nan_a != nan_d) | (~nan_d & ~(np.abs(a - d) <= tol))
        bad &= ~(np.isinf(a) & (a == d))
    if bad.any():
        idx = np.argwhere(bad)[:5]
        detail = "; ".join(
            f"at {tuple(i)}: got {a[tuple(i)]!r}, expected {d[tuple(i)]!r} (tol {tol[tuple(i)]:.3g})"
            for i in idx
        )
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values differ (rtol {rtol:g}); {detail} "
            f"[rank {WORLD.Get_rank()} of {WORLD.Get_size()}]"
        )


def _fingerprint(value):
    """What must be bitwise equal across ranks: type, dtype, shape and bytes."""
    if value is None:
        return ("None",)
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, np.ascontiguousarray(value).tobytes())
    if isinstance(value, np.generic):
        return (type(value).__name__, value.dtype.str, value.tobytes())
    return (type(value).__name__, repr(value))


def gather_attributes(est, names, comm):
    """Collective: every rank's fingerprint of each attribute, gathered on every rank."""
    mine = {n: _fingerprint(getattr(est, n, "<missing>")) for n in names}
    return comm.allgather(mine)


def assert_same_on_all_ranks(gathered, names):
    for name in names:
        ref = gathered[0][name]
        for r, g in enumerate(gathered):
            assert g[name] == ref, f"attribute {name} differs between rank 0 and rank {r}"


def check_replicated(est, names, comm):
    """Collective then local: every fitted attribute in ``names`` is bitwise equal on every rank."""
    assert_same_on_all_ranks(gather_attributes(est, names, comm), names)


def collective_error(fn, comm=WORLD):
    """Run ``fn()`` on every rank; return (this rank's exception or None, all ranks' outcomes).

    Outcomes are gathered on every rank (type name, message) so that every rank can assert on
    every other rank's behaviour and all ranks fail (or pass) together.
    """
    exc = None
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        exc = e
    outcome = None if exc is None else (type(exc).__name__, isinstance(exc, ValueError), str(exc))
    return exc, comm.allgather(outcome)


def assert_every_rank_raises(fn, *, rank=None, match=None, comm=WORLD):
    """Every rank of ``comm`` raises ValueError from fn(); with ``rank``, each message names it."""
    _, outcomes = collective_error(fn, comm)
    for r, o in enumerate(outcomes):
        assert o is not None, f"rank {r} did not raise (others: {outcomes})"
        assert o[1], f"rank {r} raised {o[0]}, not ValueError: {o[2]}"
        if rank is not None:
            assert f"rank {rank}" in o[2], f"rank {r}'s message does not name rank {rank}: {o[2]!r}"
        if match is not None:
            assert match.lower() in o[2].lower(), f"rank {r}'s message lacks {match!r}: {o[2]!r}"
    # the same message on every rank
    assert len({o[2] for o in outcomes}) == 1, f"messages differ between ranks: {outcomes}"


def skip_unless_several_ranks(comm=WORLD):
    """For tests that need ranks to disagree; the size is the same on every rank, so every rank
    skips together."""
    if comm.Get_size() < 2:
        pytest.skip("needs at least 2 ranks")


# --- BasicStatistics reference (numpy, on the full data, in float64) --------------------------

BS_NAMES = [
    "min", "max", "sum", "mean", "variance", "standard_deviation", "sum_squares",
    "sum_squares_centered", "second_order_raw_moment", "variation",
]


def ref_basic_statistics(X, sample_weight=None):
    """The statistics of include/spmdlearn/basic_statistics.hpp, computed with numpy.

    Integer weights: the rows repeated (weight k == row repeated k times); other weights: the
    np.average formulas. Returns (dict of statistics, dict of absolute tolerances per unit rtol).
    """
    X = np.asarray(X, dtype=np.float64)
    if sample_weight is not None:
        w = np.asarray(sample_weight)
        if np.issubdtype(w.dtype, np.integer):
            return ref_basic_statistics(np.repeat(X, w, axis=0))
        w = w.astype(np.float64)
        W = w.sum()
        mean = np.average(X, axis=0, weights=w)
        m2 = (w[:, None] * (X - mean) ** 2).sum(axis=0)
        sum_squares = (w[:, None] * X**2).sum(axis=0)
        total = (w[:, None] * X).sum(axis=0)
        pos = X[w > 0]
        var = m2 / (W - 1.0)
    else:
        W = float(len(X))
        mean = X.mean(axis=0)
        m2 = ((X - mean) ** 2).sum(axis=0)
        sum_squares = (X**2).sum(axis=0)
        total = X.sum(axis=0)
        pos = X
        with np.errstate(divide="ignore", invalid="ignore"):
            var = X.var(axis=0, ddof=1) if len(X) > 1 else np.full(X.shape[1], np.nan)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        variation = std / mean
    ref = {
        "min": pos.min(axis=0),
        "max": pos.max(axis=0),
        "sum": total,
        "mean": mean,
        "variance": var,
        "standard_deviation": std,
        "sum_squares": sum_squares,
        "sum_squares_centered": m2,
        "second_order_raw_moment": sum_squares / W,
        "variation": variation,
    }
    # Rounding of a value near 0 is relative to the column's scale, not to the value: the
    # absolute tolerance (per unit of rtol) of each statistic, per column.
    # Centred statistics get no absolute slack: pure rtol, also for the 1e4-mean data (a constant
    # column's are exactly 0 on both sides).
    c = np.abs(pos).max(axis=0)  # raw scale
    zero = np.zeros_like(c)
    unit = {
        "min": c, "max": c, "mean": c, "sum": W * c,
        "variance": zero, "standard_deviation": zero, "sum_squares_centered": zero,
        "sum_squares": W * c**2, "second_order_raw_moment": c**2,
        "variation": zero,
    }
    return ref, unit


def assert_basic_statistics(est, X, sample_weight, dtype, names=BS_NAMES, what=""):
    """Compare a fitted (Incremental)BasicStatistics with the numpy reference on the full X."""
    ref, unit = ref_basic_statistics(X, sample_weight)
    rtol = rtol_of(dtype)
    mean = ref["mean"]
    for name in names:
        got = getattr(est, name + "_")
        assert isinstance(got, np.ndarray), name
        assert got.dtype == np.dtype(dtype), f"{name}_ has dtype {got.dtype}, expected {np.dtype(dtype)}"
        assert got.shape == (X.shape[1],), name
        exp = ref[name]
        if name == "variation":
            # std / mean: meaningful only where the mean is not rounding noise
            ok = np.abs(mean) > 1e-3 * unit["mean"]
            assert_close(got[ok], exp[ok], dtype, what=f"{what} {name}_")
            continue
        assert_close(got, exp, dtype, atol=rtol * unit[name], what=f"{what} {name}_")
    for name in set(BS_NAMES) - set(names):
        assert not hasattr(est, name + "_"), f"{name}_ was not requested but is set"
    assert est.n_features_in_ == X.shape[1]
    assert est.n_samples_seen_ == X.shape[0]
