"""Reliability under MPI misuse (issue 16): the ranks agree on the call, the parameters (by exact
value) and the state a call reads; intercommunicators and two threads on one communicator are
refused with a clear error. Every case must make every rank raise the same error -- never hang,
never leave ranks with different models -- and a good collective call afterwards must work
(the ranks are back in step).

Related modules: test_reliability_empty.py (empty blocks), test_reliability_extreme.py (values
near the float range), test_reliability_restores*.py (mutated pickles and state), and
tests/python/test_reliability_jobs.py (the collective watchdog: jobs that must be aborted).
Run at 2 and 3 ranks by tests/python/test_mpi_ranks.py (1 rank skips what needs several).
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from mpi4py import MPI  # noqa: F401 - initialises MPI before spmdlearn
from sklearn.exceptions import ConvergenceWarning

from spmdlearn._comm import digest, params_digests
from spmdlearn.basic_statistics import IncrementalBasicStatistics
from spmdlearn.cluster import KMeans
from spmdlearn.covariance import EmpiricalCovariance, IncrementalEmpiricalCovariance
from spmdlearn.decomposition import PCA, IncrementalPCA
from spmdlearn.linear_model import (
    IncrementalLinearRegression,
    IncrementalRidge,
    LinearRegression,
    LogisticRegression,
    Ridge,
)
from spmdlearn.preprocessing import MaxAbsScaler, StandardScaler
from spmd_helpers import (
    WORLD,
    assert_every_rank_raises,
    check_replicated,
    collective_error,
    shard,
    skip_unless_several_ranks,
)


def load(name):
    import sklearn.datasets as ds

    return getattr(ds, f"load_{name}")(return_X_y=True)


def _data(n=120, d=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = (X @ np.arange(1, d + 1) + rng.normal(scale=0.1, size=n)).astype(dtype)
    return X, y


INCREMENTAL = {
    # name: (factory, attribute to compare, needs y)
    "IncrementalLinearRegression": (IncrementalLinearRegression, "coef_", True),
    "IncrementalRidge": (IncrementalRidge, "coef_", True),
    "IncrementalBasicStatistics": (IncrementalBasicStatistics, "mean_", False),
    "IncrementalEmpiricalCovariance": (IncrementalEmpiricalCovariance, "covariance_", False),
    "StandardScaler": (StandardScaler, "scale_", False),
    "MaxAbsScaler": (MaxAbsScaler, "max_abs_", False),
    "IncrementalPCA": (lambda: IncrementalPCA(n_components=2), "components_", False),
}


def _call(est, method, X, y, needs_y):
    return getattr(est, method)(X, y) if needs_y else getattr(est, method)(X)


@pytest.mark.parametrize("name", list(INCREMENTAL))
def test_fit_on_one_rank_partial_fit_on_the_others_raises_everywhere(name):
    """Rank 0 calls fit while the others call partial_fit: every rank raises naming both calls
    (it used to hang or silently give each rank a different model). Afterwards a partial_fit on
    every rank works and gives the same model everywhere, equal to a fresh fit on those rows."""
    skip_unless_several_ranks()
    factory, attr, needs_y = INCREMENTAL[name]
    X, y = _data()
    Xl, yl = shard(X[:60], WORLD), shard(y[:60], WORLD)
    est = factory()
    _call(est, "partial_fit", Xl, yl, needs_y)  # a first round everywhere
    method = "fit" if WORLD.rank == 0 else "partial_fit"
    assert_every_rank_raises(lambda: _call(est, method, Xl, yl, needs_y), match="partial_fit")
    # The failed call left every rank's state as it was: a second round agrees and is exact.
    X2, y2 = shard(X[60:], WORLD, seed=1), shard(y[60:], WORLD, seed=1)
    _call(est, "partial_fit", X2, y2, needs_y)
    check_replicated(est, [attr, "n_features_in_"], WORLD)
    ref = factory()
    _call(ref, "partial_fit", Xl, yl, needs_y)
    _call(ref, "partial_fit", X2, y2, needs_y)
    np.testing.assert_allclose(getattr(est, attr), getattr(ref, attr), rtol=1e-12, atol=1e-12)


def test_different_methods_name_the_calls():
    """Rank 0 scores while the others fit: the message names both calls and the ranks."""
    skip_unless_several_ranks()
    X, y = _data()
    Xl, yl = shard(X, WORLD), shard(y, WORLD)
    est = LinearRegression().fit(Xl, yl)
    fn = (lambda: est.score(Xl, yl)) if WORLD.rank == 0 else (lambda: est.fit(Xl, yl))
    assert_every_rank_raises(fn, match="LinearRegression.score")
    assert_every_rank_raises(fn, match="LinearRegression.fit")
    # back in step
    assert np.isfinite(est.score(Xl, yl))


def test_partial_fit_state_modified_on_one_rank_raises_everywhere():
    """The incremental state that enters partial_fit is compared: a rank whose state was changed
    (restored from another run, edited) makes every rank raise, naming the state."""
    skip_unless_several_ranks()
    X, y = _data()
    Xl, yl = shard(X, WORLD), shard(y, WORLD)
    est = IncrementalRidge().partial_fit(Xl, yl)
    if WORLD.rank == 1:
        est._partial_state = dict(est._partial_state, n_rows=est._partial_state["n_rows"] + 1)
    assert_every_rank_raises(lambda: est.partial_fit(Xl, yl), rank=1, match="_partial_state")


def test_partial_fit_fitted_on_some_ranks_only_raises_everywhere():
    skip_unless_several_ranks()
    X, _ = _data()
    Xl = shard(X, WORLD, empty_rank=False)  # every rank fits alone below: each needs rows
    est = IncrementalBasicStatistics()
    with_comm = IncrementalBasicStatistics(comm=WORLD.Split(0 if WORLD.rank == 0 else 1))
    with_comm.partial_fit(Xl)  # fitted over a sub-communicator: rank 0's model alone
    if WORLD.rank == 0:
        est = with_comm.set_params(comm=None)
    assert_every_rank_raises(lambda: est.partial_fit(Xl), match="state")


def test_logistic_warm_start_with_coef_on_one_rank_raises_everywhere():
    """warm_start=True with a coef_ on one rank only (it used to hang)."""
    skip_unless_several_ranks()
    X, y = load("breast_cancer")
    Xl, yl = shard(X, WORLD), shard(y, WORLD)
    est = LogisticRegression(warm_start=True, max_iter=5)
    if WORLD.rank == 0:
        est.coef_ = np.zeros((1, X.shape[1]))
        est.intercept_ = np.zeros(1)
        est.classes_ = np.array([0, 1])
    assert_every_rank_raises(lambda: est.fit(Xl, yl), match="state")


def test_logistic_warm_start_with_the_same_coef_everywhere_works():
    X, y = load("breast_cancer")
    X = (X - X.mean(0)) / X.std(0)
    Xl, yl = shard(X, WORLD), shard(y, WORLD)
    est = LogisticRegression(warm_start=True, max_iter=3, tol=1e-10)
    with pytest.warns(ConvergenceWarning):  # 3 iterations are not enough
        est.fit(Xl, yl)
    est.set_params(max_iter=2000).fit(Xl, yl)  # warm start from the agreed coef_
    check_replicated(est, ["coef_", "intercept_"], WORLD)
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    ref = SkLogisticRegression(max_iter=2000, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-4, atol=1e-5)


def test_long_array_alpha_differing_in_the_middle_raises_everywhere():
    """A 2000-entry Ridge alpha whose middle differs on one rank: numpy's repr elides the middle,
    the exact digest does not. Every rank raises naming alpha and the rank."""
    skip_unless_several_ranks()
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4))
    Y = rng.normal(size=(60, 2000))
    alpha = np.linspace(1.0, 2.0, 2000)
    if WORLD.rank == WORLD.size - 1:
        alpha = alpha.copy()
        alpha[1000] += 1e-9
    est = Ridge(alpha=alpha)
    assert_every_rank_raises(lambda: est.fit(shard(X, WORLD), shard(Y, WORLD)),
                             rank=WORLD.size - 1, match="alpha")


def test_long_kmeans_init_differing_in_the_middle_raises_everywhere():
    skip_unless_several_ranks()
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 3))
    init = X[:300].copy()
    if WORLD.rank == 1:
        init[150, 1] = np.nextafter(init[150, 1], np.inf)
    est = KMeans(n_clusters=300, init=init, n_init=1, max_iter=2)
    assert_every_rank_raises(lambda: est.fit(shard(X, WORLD)), rank=1, match="init")


def test_equal_class_weight_dicts_are_equal():
    """class_weight dicts equal in value are the same parameter, whatever their order or the
    numbers' types; the fit agrees with one built from the plain dict."""
    X, y = load("iris")
    Xl, yl = shard(X, WORLD), shard(y, WORLD)
    cw = {0: 1.0, 1: 2.0, 2: 0.5} if WORLD.rank % 2 == 0 else {2: 0.5, np.int64(1): 2, 0: 1}
    est = LogisticRegression(class_weight=cw, max_iter=300).fit(Xl, yl)
    check_replicated(est, ["coef_", "intercept_"], WORLD)
    ref = LogisticRegression(class_weight={0: 1.0, 1: 2.0, 2: 0.5}, max_iter=300).fit(Xl, yl)
    np.testing.assert_array_equal(est.coef_, ref.coef_)


def test_parameter_that_differs_is_named():
    skip_unless_several_ranks()
    X, _ = _data()
    est = PCA(n_components=2 if WORLD.rank == 0 else 3)
    assert_every_rank_raises(lambda: est.fit(shard(X, WORLD)), match="n_components")


def test_digest_is_exact_and_canonical():
    """Local: the digest sees every byte of an array, the dtype and the shape; numbers by value."""
    a = np.arange(2000, dtype=np.float64)
    b = a.copy()
    b[1000] = np.nextafter(b[1000], np.inf)
    assert repr(a) == repr(b)  # what the old check compared
    assert digest(a) != digest(b)
    assert digest(a) != digest(a.astype(np.float32))
    assert digest(a) != digest(a.reshape(40, 50))
    assert digest(a) == digest(a.copy())
    assert digest({0: 1, 1: 2.5}) == digest({1: 2.5, np.int32(0): 1.0})
    assert digest({0: 1, 1: 2.5}) != digest({0: 1, 1: 2.4})
    assert digest([1, "a", None]) == digest((1, "a", None))
    assert digest(1) == digest(1.0) != digest(True)
    assert digest(float("nan")) == digest(np.nan)
    p1, p2 = params_digests(Ridge(alpha=a)), params_digests(Ridge(alpha=b))
    assert [n for (n, _), (_, h) in zip(p1, p2) if dict(p1)[n] != h] == ["alpha"]


def test_intercommunicator_is_refused_on_every_rank():
    """An intercommunicator (it used to let a rank pass the check and block) is refused on every
    rank with a clear error, before any collective."""
    skip_unless_several_ranks()
    color = WORLD.rank % 2
    local = WORLD.Split(color, WORLD.rank)
    inter = local.Create_intercomm(0, WORLD, 1 - color, tag=77)
    try:
        X, _ = _data()
        exc, outcomes = collective_error(lambda: EmpiricalCovariance(comm=inter).fit(shard(X, WORLD)))
        for r, o in enumerate(outcomes):
            assert o is not None and o[1], f"rank {r}: {o}"
            assert "intercommunicator" in o[2], o[2]
    finally:
        inter.Free()
        local.Free()


def test_two_threads_on_one_communicator_raise_a_clear_error():
    """Two threads fitting with one communicator at once: the second gets a clear RuntimeError at
    once (no collective, no hang); the one that runs either completes on every rank or, when the
    conflict is seen on some rank during its call, raises on every rank. Afterwards the
    communicator works."""
    X, y = _data(n=3000, d=20)
    Xl, yl = shard(X, WORLD), shard(y, WORLD)
    outcomes = {}

    def work(name):
        est = LinearRegression()
        try:
            for _ in range(20):
                est.fit(Xl, yl)
            outcomes[name] = "ok"
        except Exception as exc:  # noqa: BLE001
            outcomes[name] = f"{type(exc).__name__}: {exc}"

    # Both threads use the same communicator; the main thread holds it first so that the conflict
    # is certain: a worker that starts meanwhile must refuse.
    from spmdlearn import _comm

    with _comm._owned(WORLD):
        t = threading.Thread(target=work, args=("worker",))
        t.start()
        t.join(timeout=60)
    assert not t.is_alive(), "the second thread hung"
    assert outcomes["worker"].startswith("RuntimeError") and "another thread" in outcomes["worker"]
    # The conflict was recorded: the next call on this communicator fails on every rank ...
    exc, all_outcomes = collective_error(lambda: LinearRegression().fit(Xl, yl))
    for r, o in enumerate(all_outcomes):
        assert o is not None and "thread" in o[2], f"rank {r}: {o}"
    # ... and then the communicator works again.
    est = LinearRegression().fit(Xl, yl)
    check_replicated(est, ["coef_", "intercept_"], WORLD)


def test_failure_after_the_opening_agreement_is_agreed():
    """A failure on one rank after the call's opening agreement (here: in Python, between two
    collectives of partial_fit) reaches every rank through the closing agreement instead of
    leaving the others in the next collective."""
    skip_unless_several_ranks()
    X, _ = _data()
    Xl = shard(X, WORLD)
    est = IncrementalEmpiricalCovariance().partial_fit(Xl)

    class Broken(IncrementalEmpiricalCovariance):
        def partial_fit(self, X, y=None):
            super().partial_fit(X)  # every collective of the call has run
            if WORLD.rank == 1:
                raise ArithmeticError("injected failure on rank 1")
            return self

    broken = Broken()
    exc, outcomes = collective_error(lambda: broken.partial_fit(Xl))
    for r, o in enumerate(outcomes):
        assert o is not None and "rank 1" in o[2] and "injected" in o[2], f"rank {r}: {o}"
    # the failed call left no state behind, on any rank
    assert not hasattr(broken, "covariance_")
    # in step afterwards
    est.partial_fit(Xl)
    check_replicated(est, ["covariance_"], WORLD)
