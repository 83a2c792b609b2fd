"""Bad input under MPI, for every estimator: the fault is on one rank only (the last) or on every
rank. Every rank must raise ValueError (the same message, naming the faulty rank when one rank is
at fault) instead of some ranks hanging in a collective; afterwards a good collective fit on the
same estimator must work, proving that no rank is stuck or out of step."""
import functools

import numpy as np
import pytest

from spmdlearn.basic_statistics import BasicStatistics, IncrementalBasicStatistics
from spmdlearn.cluster import KMeans
from spmdlearn.covariance import EmpiricalCovariance, IncrementalEmpiricalCovariance
from spmdlearn.decomposition import PCA, IncrementalPCA
from spmdlearn.preprocessing import MaxAbsScaler, StandardScaler
from spmd_helpers import (
    WORLD,
    assert_close,
    assert_every_rank_raises,
    check_replicated,
    collective_error,
    load,
    shard,
    skip_unless_several_ranks,
)

# name: (class, collective fitting method, takes sample_weight, a fitted attribute of the mean or
# the column scale to check a good fit with)
ESTIMATORS = {
    "BasicStatistics": (BasicStatistics, "fit", True, "mean_"),
    "IncrementalBasicStatistics": (IncrementalBasicStatistics, "partial_fit", True, "mean_"),
    "EmpiricalCovariance": (EmpiricalCovariance, "fit", False, "location_"),
    "IncrementalEmpiricalCovariance": (IncrementalEmpiricalCovariance, "partial_fit", False, "location_"),
    "StandardScaler": (StandardScaler, "fit", True, "mean_"),
    "MaxAbsScaler": (MaxAbsScaler, "fit", False, "max_abs_"),
    "PCA": (PCA, "fit", False, "mean_"),
    "IncrementalPCA": (IncrementalPCA, "partial_fit", False, "mean_"),
    # one cluster: its centre is the mean of all rows
    "KMeans": (functools.partial(KMeans, n_clusters=1), "fit", True, "cluster_centers_"),
}

# case: (where the fault can be, a word the message must contain)
CASES = {
    "nan": (("last", "all"), "nan"),
    "inf": (("last", "all"), "inf"),
    "n_features": (("last",), "features"),
    "float32": (("last",), "float32"),
    "empty": (("all",), "sample"),
    "sample_weight_length": (("last", "all"), "sample_weight"),
    "sample_weight_negative": (("last", "all"), "negative"),
    "result_options_bogus": (("last", "all"), "bogus"),
}
WEIGHT_CASES = {"sample_weight_length", "sample_weight_negative"}


def _params():
    out = []
    for est, (_, _, weighted, _) in ESTIMATORS.items():
        for case, (wheres, _) in CASES.items():
            if case in WEIGHT_CASES and not weighted:
                continue
            if case == "result_options_bogus" and "BasicStatistics" not in est:
                continue
            for where in wheres:
                out.append(pytest.param(est, case, where, id=f"{est}-{case}-{where}"))
    return out


def _good_data(comm):
    X = load("wine")
    return X, shard(X, comm, empty_rank=False, seed=8)


def _fit(est, method, X, w=None):
    if w is None:
        return getattr(est, method)(X)
    return getattr(est, method)(X, sample_weight=w)


def _expected_value(name, X):
    if name == "cluster_centers_":
        return X.mean(axis=0)[None]
    return np.abs(X).max(axis=0) if name == "max_abs_" else X.mean(axis=0)


def _check_good_fit(est, method, attr, comm):
    """A successful collective fit of the same estimator after the failure: every rank in step,
    the right answer (for partial_fit: the failed call left no state behind)."""
    X, Xl = _good_data(comm)
    _fit(est, method, Xl)
    check_replicated(est, [attr, "n_features_in_"], comm)
    assert_close(getattr(est, attr), _expected_value(attr, X), np.float64,
                 atol=1e-7 * np.abs(X).max(axis=0), what=f"good fit after the error: {attr}")


@pytest.mark.parametrize("estimator,case,where", _params())
def test_bad_input_every_rank_raises(comm, estimator, case, where):
    if case in ("n_features", "float32"):
        skip_unless_several_ranks(comm)  # a mismatch needs two ranks (same decision on every rank)
    cls, method, weighted, attr = ESTIMATORS[estimator]
    size, rank = comm.Get_size(), comm.Get_rank()
    last = size - 1
    faulty = where == "all" or rank == last
    X, Xl = _good_data(comm)
    Xl = Xl.copy()
    w = np.ones(len(Xl)) if weighted else None
    params = {}
    if faulty:
        if case == "nan":
            Xl[len(Xl) // 2, 1] = np.nan
        elif case == "inf":
            Xl[-1, 0] = -np.inf
        elif case == "n_features":
            Xl = Xl[:, :-1]
        elif case == "float32":
            Xl = Xl.astype(np.float32)
        elif case == "empty":
            Xl = Xl[:0]
            w = None if w is None else w[:0]
        elif case == "sample_weight_length":
            w = np.ones(len(Xl) + 1)
        elif case == "sample_weight_negative":
            w[len(w) // 2] = -1.0
        elif case == "result_options_bogus":
            params["result_options"] = "bogus"
    est = cls(**params)
    assert_every_rank_raises(
        lambda: _fit(est, method, Xl, w),
        rank=last if where == "last" else None,
        match=CASES[case][1],
    )
    if case == "result_options_bogus":
        est.set_params(result_options="all")
    _check_good_fit(est, method, attr, comm)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_bad_input_on_first_rank_is_named(comm, estimator):
    # the odd one out is named even when it is rank 0
    skip_unless_several_ranks(comm)
    cls, method, _, attr = ESTIMATORS[estimator]
    X, Xl = _good_data(comm)
    if comm.Get_rank() == 0:
        Xl = Xl[:, :-2]
    est = cls()
    _, outcomes = collective_error(lambda: _fit(est, method, Xl))
    assert all(o is not None and o[1] for o in outcomes), outcomes
    if comm.Get_size() > 2:  # with 2 ranks, 1 vs 1: either may be named
        assert all("rank 0" in o[2] for o in outcomes), outcomes
    _check_good_fit(est, method, attr, comm)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_bad_parameter_on_one_rank(comm, estimator):
    # a parameter scikit-learn rejects: every rank raises scikit-learn's InvalidParameterError
    # (a ValueError and a TypeError) where the estimator has parameter constraints, else ValueError
    cls, method, _, attr = ESTIMATORS[estimator]
    bad = {
        "BasicStatistics": {"result_options": 3.5},
        "IncrementalBasicStatistics": {"result_options": []},
        "EmpiricalCovariance": {"assume_centered": "yes"},
        "IncrementalEmpiricalCovariance": {"store_precision": "no"},
        "StandardScaler": {"with_mean": "bogus"},
        "MaxAbsScaler": {"clip": "bogus"},
        "PCA": {"svd_solver": "bogus"},
        "IncrementalPCA": {"whiten": "bogus"},
        "KMeans": {"algorithm": "bogus"},
    }[estimator]
    last = comm.Get_size() - 1
    est = cls(**(bad if comm.Get_rank() == last else {}))
    _, outcomes = collective_error(lambda: _fit(est, method, _good_data(comm)[1]))
    for r, o in enumerate(outcomes):
        assert o is not None, f"rank {r} did not raise: {outcomes}"
        expected = "ValueError" if estimator.endswith("BasicStatistics") else "InvalidParameterError"
        assert o[0] == expected, outcomes
        assert f"rank {last}" in o[2], outcomes
    assert len({o[2] for o in outcomes}) == 1, outcomes
    est = cls()
    _check_good_fit(est, method, attr, comm)


INCREMENTAL = ["IncrementalBasicStatistics", "IncrementalEmpiricalCovariance", "StandardScaler",
               "MaxAbsScaler"]


@pytest.mark.parametrize("case", ["nan", "n_features", "empty"])
@pytest.mark.parametrize("estimator", INCREMENTAL)
def test_bad_round_keeps_partial_fit_state(comm, estimator, case):
    # round 1 good, round 2 bad (every rank raises), round 3 good: the result is rounds 1 + 3
    if case == "n_features":
        skip_unless_several_ranks(comm)
    cls, _, _, attr = ESTIMATORS[estimator]
    X = load("wine")
    first, second = X[:100], X[100:]
    est = cls()
    est.partial_fit(shard(first, comm, seed=1))
    bad = shard(second, comm, empty_rank=False, seed=2).copy()
    last = comm.Get_size() - 1
    if case == "empty":
        bad = bad[:0]
    elif comm.Get_rank() == last:
        bad = bad[:, 1:] if case == "n_features" else bad
        if case == "nan":
            bad[0, 0] = np.nan
    assert_every_rank_raises(lambda: est.partial_fit(bad), rank=None if case == "empty" else last)
    est.partial_fit(shard(second, comm, seed=3))
    check_replicated(est, [attr, "n_features_in_"], comm)
    assert_close(getattr(est, attr), _expected_value(attr, X), np.float64,
                 atol=1e-7 * np.abs(X).max(axis=0), what=f"{estimator} after a bad round")


@pytest.mark.parametrize("shape", ["0xd", "0x0"])
@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_rank_without_rows_is_not_an_error(comm, estimator, shape):
    cls, method, weighted, attr = ESTIMATORS[estimator]
    X = load("wine")
    holds = comm.Get_size() == 1 or comm.Get_rank() != 1  # rank 1 (not the last) holds nothing
    Xl = shard(X, _Without(comm, 1)) if holds else (X[:0] if shape == "0xd" else np.empty((0, 0)))
    w = np.ones(len(Xl)) if weighted else None
    est = _fit(cls(), method, Xl, w)
    check_replicated(est, [attr, "n_features_in_"], comm)
    assert est.n_features_in_ == X.shape[1]
    assert_close(getattr(est, attr), _expected_value(attr, X), np.float64,
                 atol=1e-7 * np.abs(X).max(axis=0), what=f"{estimator} with an empty rank")


class _Without:
    """The world's ranks except one, renumbered: shards for the ranks that hold rows."""

    def __init__(self, comm, skip):
        size, rank = comm.Get_size(), comm.Get_rank()
        self._size = size - 1 if size > 1 else 1
        self._rank = rank - (rank > skip) if size > 1 else 0

    def Get_size(self):
        return self._size

    def Get_rank(self):
        return self._rank


@pytest.mark.parametrize("case", ["too_many_clusters", "init_rows", "init_features", "nan_kmeans++",
                                  "n_features"])
def test_kmeans_bad_input(comm, case):
    # KMeans-specific faults: every rank raises ValueError, none hangs
    if case == "n_features":
        skip_unless_several_ranks(comm)
    X, Xl = _good_data(comm)
    Xl = Xl.copy()
    last = comm.Get_size() - 1
    kw, named, match = {"n_clusters": 3}, None, None
    if case == "too_many_clusters":
        kw["n_clusters"] = len(X) + 1  # more than the rows of all ranks together
        match = "n_clusters"
    elif case == "init_rows":
        kw["init"] = X[:2]  # 2 centres for n_clusters=3
        match = "shape of the initial centers"
    elif case == "init_features":
        kw["init"] = X[:3, :-1]
        match = "shape of the initial centers"
    elif case == "nan_kmeans++":
        if comm.Get_rank() == last:
            Xl[0, 3] = np.nan
        named, match = last, "nan"
    elif case == "n_features":
        if comm.Get_rank() == last:
            Xl = Xl[:, :-1]
        named, match = last, "features"
    est = KMeans(**kw)
    assert_every_rank_raises(lambda: est.fit(Xl), rank=named, match=match)
    good = KMeans(n_clusters=3, random_state=0).fit(_good_data(comm)[1])
    check_replicated(good, ["cluster_centers_", "inertia_"], comm)


def test_world_is_still_in_step():
    # the last test of the module: one plain collective on every rank
    assert WORLD.allreduce(1) == WORLD.Get_size()
