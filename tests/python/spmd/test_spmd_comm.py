"""Communicators other than COMM_WORLD: ``comm=`` a derived communicator (Split into two halves
that fit different data at the same time), ``spmdlearn.comm_context``, ``sklearn.base.clone``
keeping the communicator, Dup and a reordered communicator."""
import numpy as np
import pytest
import sklearn.covariance as skcov
import sklearn.preprocessing as skpre
from mpi4py import MPI
from sklearn.base import clone

import spmdlearn
from spmdlearn.basic_statistics import BasicStatistics, IncrementalBasicStatistics
from spmdlearn.covariance import EmpiricalCovariance, IncrementalEmpiricalCovariance
from spmdlearn.preprocessing import MaxAbsScaler, StandardScaler
from spmd_helpers import (
    BS_NAMES,
    WORLD,
    assert_basic_statistics,
    assert_close,
    assert_every_rank_raises,
    check_replicated,
    gather_attributes,
    load,
    shard,
    skip_unless_several_ranks,
)

ALL = [BasicStatistics, IncrementalBasicStatistics, EmpiricalCovariance,
       IncrementalEmpiricalCovariance, StandardScaler, MaxAbsScaler]
ATTRS = {
    BasicStatistics: [n + "_" for n in BS_NAMES] + ["n_samples_seen_"],
    IncrementalBasicStatistics: [n + "_" for n in BS_NAMES] + ["n_samples_seen_"],
    EmpiricalCovariance: ["covariance_", "location_", "precision_"],
    IncrementalEmpiricalCovariance: ["covariance_", "location_", "precision_"],
    StandardScaler: ["mean_", "var_", "scale_", "n_samples_seen_"],
    MaxAbsScaler: ["max_abs_", "scale_", "n_samples_seen_"],
}


@pytest.fixture
def halves():
    """COMM_WORLD split in two: color = rank % 2 (one half only when there is one rank)."""
    color = WORLD.Get_rank() % 2
    sub = WORLD.Split(color=color, key=WORLD.Get_rank())
    yield sub, color
    sub.Free()


def _half_data(color):
    """Each half fits different rows: wine rows color, color + 2, ..."""
    return np.ascontiguousarray(load("wine")[color::2])


def _fit(est, X):
    if hasattr(est, "partial_fit") and type(est).__name__.startswith("Incremental"):
        return est.partial_fit(X)
    return est.fit(X)


def _reference(cls, X):
    """Fitted attributes expected from all rows X of the half."""
    if cls in (BasicStatistics, IncrementalBasicStatistics):
        return None  # compared with assert_basic_statistics
    if cls in (EmpiricalCovariance, IncrementalEmpiricalCovariance):
        return skcov.EmpiricalCovariance().fit(X)
    if cls is StandardScaler:
        return skpre.StandardScaler().fit(X)
    return skpre.MaxAbsScaler().fit(X)


def _assert_matches(est, X, what):
    cls = type(est)
    if cls in (BasicStatistics, IncrementalBasicStatistics):
        assert_basic_statistics(est, X, None, np.float64, what=what)
        return
    ref = _reference(cls, X)
    for name in ATTRS[cls]:
        got, exp = getattr(est, name), getattr(ref, name)
        scale = np.abs(X).max()
        atol = 1e-7 * scale**2 if name in ("covariance_", "var_") else 1e-7 * scale
        if name == "precision_":
            atol = 1e-6 * np.abs(exp).max()
        assert_close(got, exp, np.float64, atol=atol, what=f"{what} {name}")


def test_default_comm_is_world():
    assert spmdlearn.default_comm() is MPI.COMM_WORLD
    est = BasicStatistics()
    assert est.comm is None
    X = load("iris")
    est.fit(shard(X, WORLD))
    assert_basic_statistics(est, X, None, np.float64)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_split_halves_fit_independently(halves, cls):
    sub, color = halves
    X = _half_data(color)
    est = _fit(cls(comm=sub), shard(X, sub, empty_rank=True))
    assert est.comm is sub
    per_sub = gather_attributes(est, ATTRS[cls], sub)
    per_world = WORLD.allgather((color, per_sub[0]))
    # within a half: identical on every rank
    for r, g in enumerate(per_sub):
        assert g == per_sub[0], f"rank {r} of half {color} differs from rank 0 of that half"
    # the two halves fitted different data, so their models differ
    colors = {c: att for c, att in per_world}
    if len(colors) == 2:
        assert colors[0] != colors[1], "both halves got the same model: the communicators leaked"
    _assert_matches(est, X, f"half {color}")


def test_split_error_names_rank_of_the_sub_communicator(halves):
    sub, color = halves
    X = _half_data(color)
    Xl = shard(X, sub, empty_rank=False).copy()
    last = sub.Get_size() - 1
    if sub.Get_rank() == last:
        Xl[0, 0] = np.nan
    # only half 0 gets the bad input; half 1 fits at the same time and must not notice
    if color == 0:
        assert_every_rank_raises(lambda: BasicStatistics(comm=sub).fit(Xl), rank=last, comm=sub)
    else:
        est = BasicStatistics(comm=sub).fit(shard(X, sub))
        assert_basic_statistics(est, X, None, np.float64)
    # and both halves still work
    est = BasicStatistics(comm=sub).fit(shard(X, sub, seed=3))
    check_replicated(est, ["mean_", "variance_"], sub)
    assert_basic_statistics(est, X, None, np.float64)


def test_comm_context(halves):
    sub, color = halves
    X = _half_data(color)
    Xl = shard(X, sub)
    with spmdlearn.comm_context(sub) as c:
        assert c is sub
        assert spmdlearn.default_comm() is sub
        est = BasicStatistics().fit(Xl)  # comm=None: the context's communicator
        scaler = StandardScaler().fit(Xl)
        cov = EmpiricalCovariance().fit(Xl)
        score = cov.score(Xl)
    assert spmdlearn.default_comm() is MPI.COMM_WORLD
    explicit = BasicStatistics(comm=sub).fit(Xl)
    check_replicated(est, ["mean_", "variance_", "n_samples_seen_"], sub)
    assert est.comm is None
    assert_basic_statistics(est, X, None, np.float64, what="comm_context")
    for name in BS_NAMES:  # same communicator, same rows: bitwise the same
        np.testing.assert_array_equal(getattr(est, name + "_"), getattr(explicit, name + "_"))
    ref = skpre.StandardScaler().fit(X)
    assert_close(scaler.mean_, ref.mean_, np.float64, atol=1e-7 * np.abs(X).max(axis=0), what="mean_")
    ref_cov = skcov.EmpiricalCovariance().fit(X)
    assert_close(score, ref_cov.score(X), np.float64, what="score")


def test_comm_context_nested_and_restored_after_error(halves):
    sub, color = halves
    X = load("iris")
    with spmdlearn.comm_context(sub):
        with spmdlearn.comm_context(WORLD):
            assert spmdlearn.default_comm() is WORLD
            world_est = BasicStatistics().fit(shard(X, WORLD))
        assert spmdlearn.default_comm() is sub
        with pytest.raises(RuntimeError):
            with spmdlearn.comm_context(WORLD):
                raise RuntimeError("leaving the block by an exception")
        assert spmdlearn.default_comm() is sub
    assert spmdlearn.default_comm() is MPI.COMM_WORLD
    assert_basic_statistics(world_est, X, None, np.float64)
    with pytest.raises(TypeError):
        with spmdlearn.comm_context("not a communicator"):
            pass


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_clone_keeps_communicator(halves, cls):
    sub, color = halves
    X = _half_data(color)
    Xl = shard(X, sub)
    est = cls(comm=sub)
    twin = clone(est)
    assert twin is not est
    assert twin.comm is sub
    assert twin.get_params()["comm"] is sub
    _fit(est, Xl)
    _fit(twin, Xl)
    fitted_twin = clone(est)  # cloning a fitted estimator: unfitted, same communicator
    assert fitted_twin.comm is sub
    _fit(fitted_twin, Xl)
    for other in (twin, fitted_twin):
        for name in ATTRS[cls]:
            a, b = getattr(est, name), getattr(other, name)
            assert type(a) is type(b)
            np.testing.assert_array_equal(a, b)  # same comm, same rows: bitwise equal
    _assert_matches(twin, X, f"clone on half {color}")


def test_dup_and_reordered_communicators():
    X = load("breast_cancer")
    dup = WORLD.Dup()
    rev = WORLD.Split(color=0, key=WORLD.Get_size() - WORLD.Get_rank())  # ranks reversed
    try:
        assert rev.Get_rank() == WORLD.Get_size() - 1 - WORLD.Get_rank()
        world_est = BasicStatistics().fit(shard(X, WORLD))
        dup_est = BasicStatistics(comm=dup).fit(shard(X, WORLD))
        rev_est = BasicStatistics(comm=rev).fit(shard(X, rev))  # rows follow the new numbering
        check_replicated(rev_est, [n + "_" for n in BS_NAMES], WORLD)
    finally:
        dup.Free()
        rev.Free()
    for name in BS_NAMES:  # the same communicator layout: bitwise equal
        np.testing.assert_array_equal(getattr(world_est, name + "_"), getattr(dup_est, name + "_"))
    assert_basic_statistics(rev_est, X, None, np.float64, what="reversed ranks")


def test_comm_self_is_local():
    # MPI.COMM_SELF: every rank fits its own rows only, without talking to the others
    X = load("diabetes")
    Xl = shard(X, WORLD, empty_rank=False)
    est = BasicStatistics(comm=MPI.COMM_SELF).fit(Xl)
    assert_basic_statistics(est, Xl, None, np.float64, what="COMM_SELF")


@pytest.mark.parametrize("make", [
    lambda odd: BasicStatistics(result_options="mean" if odd else "all"),
    lambda odd: EmpiricalCovariance(assume_centered=odd),
    lambda odd: StandardScaler(with_std=not odd),
], ids=["BasicStatistics.result_options", "EmpiricalCovariance.assume_centered",
        "StandardScaler.with_std"])
def test_parameters_differing_between_ranks_are_rejected(make):
    skip_unless_several_ranks()
    last = WORLD.Get_size() - 1
    est = make(WORLD.Get_rank() == last)
    assert_every_rank_raises(lambda: est.fit(shard(load("iris"), WORLD)), rank=last)
