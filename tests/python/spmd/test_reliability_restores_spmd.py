"""Checked restores under MPI: a model whose state is damaged on ONE rank (the last) makes every
collective method that reads the state raise the same ValueError on every rank -- naming that rank
and the attribute -- instead of crashing that rank or leaving the others waiting in a collective.
Afterwards the last rank puts the intact state back and the same call succeeds on every rank with
the same result as before the damage (no rank stuck, nothing left behind by the failed call).

The last rank is also the one without rows in the "empty_rank" variant: it must check its state
even though it has nothing to compute.

A second set of cases calls the C++ bindings directly with a damaged state or fitted array on the
last rank (the Python checks bypassed): the C++ reader's error is agreed in the bindings' first
collective, so every rank raises there too.
"""
import functools
import pickle

import numpy as np
import pytest

import spmdlearn
from spmdlearn import _core
from spmdlearn.basic_statistics import IncrementalBasicStatistics
from spmdlearn.cluster import KMeans
from spmdlearn.covariance import EmpiricalCovariance, IncrementalEmpiricalCovariance
from spmdlearn.decomposition import PCA, IncrementalPCA
from spmdlearn.linear_model import (
    IncrementalLinearRegression,
    IncrementalRidge,
    LinearRegression,
    LogisticRegression,
)
from spmdlearn.preprocessing import MaxAbsScaler, StandardScaler
from spmd_helpers import assert_every_rank_raises, load, shard


def _data(comm, empty_rank):
    X = load("wine")
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # scaled: the logistic fits converge
    y = X @ np.linspace(-1.0, 1.0, X.shape[1])
    labels = np.digitize(X[:, 0], np.quantile(X[:, 0], [1 / 3, 2 / 3]))
    return tuple(shard(a, comm, empty_rank=empty_rank, seed=3) for a in (X, y, labels))


def _truncate_state(key):
    def damage(est):
        est._partial_state[key] = est._partial_state[key][:-1].copy()
    return damage


def _set(attr, make):
    def damage(est):
        setattr(est, attr, make(getattr(est, attr)))
    return damage


# name: (make, fit(est, X, y, labels), call(est, X, y, labels), damage(est), attribute named,
#        what the call's result is compared by)
CASES = {
    "IncrementalBasicStatistics.partial_fit": (
        IncrementalBasicStatistics, lambda e, X, y, c: e.partial_fit(X), lambda e, X, y, c: e.partial_fit(X),
        _truncate_state("m2"), "_partial_state", "variance_"),
    "StandardScaler.partial_fit": (
        StandardScaler, lambda e, X, y, c: e.fit(X), lambda e, X, y, c: e.partial_fit(X),
        _truncate_state("mean"), "_partial_state", "scale_"),
    "MaxAbsScaler.partial_fit": (
        MaxAbsScaler, lambda e, X, y, c: e.fit(X), lambda e, X, y, c: e.partial_fit(X),
        _set("_partial_state", lambda s: {k: v for k, v in s.items() if k != "max"}), "_partial_state",
        "max_abs_"),
    "IncrementalEmpiricalCovariance.partial_fit": (
        IncrementalEmpiricalCovariance, lambda e, X, y, c: e.fit(X), lambda e, X, y, c: e.partial_fit(X),
        _truncate_state("cross"), "_partial_state", "covariance_"),
    "EmpiricalCovariance.score": (
        EmpiricalCovariance, lambda e, X, y, c: e.fit(X), lambda e, X, y, c: e.score(X),
        _set("precision_", lambda p: p[:, :-1].copy()), "precision_", None),
    "IncrementalLinearRegression.partial_fit": (
        IncrementalLinearRegression, lambda e, X, y, c: e.fit(X, y), lambda e, X, y, c: e.partial_fit(X, y),
        _set("_partial_state", lambda s: {**s, "n_targets": 3}), "_partial_state", "coef_"),
    "IncrementalRidge.partial_fit": (
        IncrementalRidge, lambda e, X, y, c: e.fit(X, y), lambda e, X, y, c: e.partial_fit(X, y),
        _set("_partial_state", lambda s: {**s, "cross": np.asfortranarray(s["cross"])}), "_partial_state",
        "coef_"),
    "LinearRegression.score": (
        LinearRegression, lambda e, X, y, c: e.fit(X, y), lambda e, X, y, c: e.score(X, y),
        _set("coef_", lambda a: a.astype(object)), "coef_", None),
    "LogisticRegression.score": (
        functools.partial(LogisticRegression, max_iter=500), lambda e, X, y, c: e.fit(X, c),
        lambda e, X, y, c: e.score(X, c), _set("coef_", lambda a: a[:-1].copy()), "coef_", None),
    "LogisticRegression.fit(warm_start)": (
        functools.partial(LogisticRegression, max_iter=500, warm_start=True), lambda e, X, y, c: e.fit(X, c),
        lambda e, X, y, c: e.fit(X, c), _set("intercept_", lambda a: np.full_like(a, np.nan)), "intercept_",
        "coef_"),
    "PCA.score": (
        PCA, lambda e, X, y, c: e.fit(X), lambda e, X, y, c: e.score(X),
        _set("components_", lambda a: a.T[:-1].copy()), "components_", None),
    "IncrementalPCA.partial_fit": (
        IncrementalPCA, lambda e, X, y, c: e.fit(X), lambda e, X, y, c: e.partial_fit(X),
        _set("_partial_state", lambda s: {**s, "n_rows": -1}), "_partial_state", "components_"),
    "KMeans.score": (
        functools.partial(KMeans, n_clusters=3, random_state=0), lambda e, X, y, c: e.fit(X),
        lambda e, X, y, c: e.score(X), _set("cluster_centers_", lambda a: a[:0].copy()), "cluster_centers_",
        None),
}


def _result(out, est, attr):
    return float(out) if attr is None else np.array(getattr(est, attr))


@pytest.mark.parametrize("case", list(CASES))
def test_state_damaged_on_one_rank_raises_on_every_rank(comm, empty_rank, case):
    make, fit, call, damage, named, compare = CASES[case]
    X, y, labels = _data(comm, empty_rank)
    est = fit(make(), X, y, labels)
    intact = pickle.dumps(est)
    last = comm.Get_size() - 1
    if comm.Get_rank() == last:
        damage(est)
    assert_every_rank_raises(lambda: call(est, X, y, labels), rank=last, match=named)
    # the last rank repairs its model; the same call then works everywhere, as on the intact model
    if comm.Get_rank() == last:
        est = pickle.loads(intact)
    out = call(est, X, y, labels)
    ref_est = pickle.loads(intact)
    ref = call(ref_est, X, y, labels)
    got, want = _result(out, est, compare), _result(ref, ref_est, compare)
    everyone = comm.allgather(np.array(got).tobytes())
    assert np.array_equal(got, want, equal_nan=True), f"{case}: {got!r} != {want!r}"
    assert len(set(everyone)) == 1, f"{case}: the ranks disagree after the repair"


# --- the C++ bindings without the Python checks -----------------------------------------------

def _addr():
    return spmdlearn._comm.resolve(None)[1]


def _bind_cases(X, y, labels):
    """name: (call with the good arguments, call with the last rank's damaged ones, word named)."""
    Xc = np.ascontiguousarray(X)
    Y = np.ascontiguousarray(y.reshape(-1, 1))
    bs = _core.bs_partial_fit(_addr(), None, Xc, None, "IncrementalBasicStatistics", False)
    cov = _core.cov_partial_fit(_addr(), None, Xc, False, "IncrementalEmpiricalCovariance")
    lr = _core.lr_partial_fit(_addr(), None, Xc, Y, None, "IncrementalLinearRegression", False)
    d = X.shape[1]
    centers = np.ascontiguousarray(X[:3] if len(X) >= 3 else np.zeros((3, d)))
    y_idx = np.ascontiguousarray(labels.astype(np.int32))
    init = np.zeros(3 * (d + 1))

    def logreg(start):
        return _core.logreg_fit(_addr(), Xc, y_idx, 3, None, 1.0, True, True, 1e-4, 5, "lbfgs", 0, start, False)

    return {
        "bs_partial_fit": (lambda s=bs: _core.bs_partial_fit(_addr(), s, Xc, None, "IncrementalBasicStatistics", False),
                           {**bs, "min": bs["min"][:1].copy()}, "min"),
        "cov_partial_fit": (lambda s=cov: _core.cov_partial_fit(_addr(), s, Xc, False, "IncrementalEmpiricalCovariance"),
                            {**cov, "n_features": d + 1}, "mean"),
        "lr_partial_fit": (lambda s=lr: _core.lr_partial_fit(_addr(), s, Xc, Y, None, "IncrementalLinearRegression", False),
                           {**lr, "weight": float("nan")}, "weight"),
        "cov_score": (lambda p=np.eye(d): _core.cov_score(_addr(), np.zeros(d), p, Xc), np.eye(d)[:-1].copy(),
                      "precision_"),
        "kmeans_inertia": (lambda c=centers: _core.kmeans_inertia(_addr(), Xc, None, c), centers[:0].copy(),
                           "cluster_centers_"),
        "logreg_fit(init)": (lambda s=init: logreg(s), init[:-2].copy(), "warm start"),
    }


@pytest.mark.parametrize("binding", ["bs_partial_fit", "cov_partial_fit", "lr_partial_fit", "cov_score",
                                     "kmeans_inertia", "logreg_fit(init)"])
def test_binding_agrees_on_a_damaged_state(comm, empty_rank, binding):
    X, y, labels = _data(comm, empty_rank)
    last = comm.Get_size() - 1
    good, bad_arg, named = _bind_cases(X, y, labels)[binding]
    arg = bad_arg if comm.Get_rank() == last else None
    if arg is None:
        assert_every_rank_raises(good, rank=last, match=named)
    else:
        assert_every_rank_raises(lambda: good(arg), rank=last, match=named)
    good()  # every rank in step again: the same collective with good arguments works
