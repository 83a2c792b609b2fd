"""Single-process tests: scikit-learn's check_estimator, input conversion, clone, pickle.

These run in a plain `python -m pytest` (MPI singleton). The distributed tests live in
tests/python/spmd/ and are launched at 1-4 ranks by test_mpi_ranks.py.
"""
import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn.covariance as skcov
import sklearn.preprocessing as skpre
from mpi4py import MPI
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import spmdlearn
from spmdlearn.basic_statistics import BasicStatistics, IncrementalBasicStatistics
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

ESTIMATORS = [
    LinearRegression(),
    Ridge(),
    IncrementalLinearRegression(),
    IncrementalRidge(),
    LogisticRegression(),
    PCA(),
    IncrementalPCA(),
    BasicStatistics(),
    IncrementalBasicStatistics(),
    EmpiricalCovariance(),
    IncrementalEmpiricalCovariance(),
    StandardScaler(),
    MaxAbsScaler(),
    KMeans(n_clusters=2, n_init=2, max_iter=5),  # scikit-learn's own test settings
]


def _expected_failed_checks(estimator):
    if isinstance(estimator, KMeans):
        # scikit-learn marks the same check as an expected failure of its own KMeans (its
        # PER_ESTIMATOR_XFAIL_CHECKS): the random draws of the initialisation see weighted rows,
        # not repeated ones, so the two fits start from different centres.
        return {"check_sample_weight_equivalence_on_dense_data":
                "sample_weight is not equivalent to removing/repeating samples (as scikit-learn's "
                "KMeans: the k-means++ draws differ)"}
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


def _data(dtype=np.float64):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(200, 6)) * [1, 2, 3, 4, 5, 6] + [0, 1, -1, 10, 1e3, 1e4]).astype(dtype)


@pytest.mark.parametrize(
    "convert",
    [
        lambda X: X,
        lambda X: np.asfortranarray(X),
        lambda X: np.repeat(X, 2, axis=1)[:, ::2],  # non-contiguous view
        lambda X: pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])]),
        lambda X: X.tolist(),
    ],
    ids=["C", "F", "strided", "pandas", "list"],
)
def test_input_kinds_equal_numpy(convert):
    X = _data()
    ref = BasicStatistics().fit(X)
    got = BasicStatistics().fit(convert(X))
    for name in ["mean_", "variance_", "min_", "max_", "sum_squares_"]:
        assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-12)
    sc = StandardScaler().fit(convert(X))
    assert_allclose(sc.mean_, X.mean(0), rtol=1e-12)


def test_integers_become_float64():
    X = np.arange(60, dtype=np.int32).reshape(20, 3)
    bs = BasicStatistics().fit(X)
    assert bs.mean_.dtype == np.float64
    assert_allclose(bs.variance_, X.astype(np.float64).var(0, ddof=1))
    cov = EmpiricalCovariance().fit(X)
    assert_allclose(cov.covariance_, skcov.EmpiricalCovariance().fit(X).covariance_, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_process_parity_with_sklearn(dtype):
    X = _data(dtype)
    rtol = 1e-4 if dtype == np.float32 else 1e-7
    ours, ref = EmpiricalCovariance().fit(X), skcov.EmpiricalCovariance().fit(X)
    assert ours.covariance_.dtype == ref.covariance_.dtype
    assert ours.location_.dtype == ref.location_.dtype
    assert_allclose(ours.covariance_, ref.covariance_, rtol=rtol)
    assert_allclose(ours.location_, ref.location_, rtol=rtol)
    assert_allclose(ours.score(X), ref.score(X), rtol=rtol)
    assert_allclose(ours.mahalanobis(X), ref.mahalanobis(X), rtol=rtol * 10)
    s1, s2 = StandardScaler().fit(X), skpre.StandardScaler().fit(X)
    assert_allclose(s1.scale_, s2.scale_, rtol=rtol)
    assert_allclose(s1.transform(X), s2.transform(X), rtol=rtol, atol=rtol)
    m1, m2 = MaxAbsScaler().fit(X), skpre.MaxAbsScaler().fit(X)
    assert m1.scale_.dtype == m2.scale_.dtype
    assert_allclose(m1.scale_, m2.scale_, rtol=0)


def test_clone_keeps_derived_communicator():
    sub = MPI.COMM_WORLD.Split(0, 0)
    try:
        est = BasicStatistics(comm=sub)
        twin = clone(est)
        assert twin.comm is sub
        X = _data()
        assert_allclose(twin.fit(X).mean_, X.mean(0), rtol=1e-12)
        sc = clone(StandardScaler(comm=sub))
        assert sc.comm is sub
    finally:
        sub.Free()


def test_comm_context_and_bad_comm():
    X = _data()
    with spmdlearn.comm_context(MPI.COMM_SELF):
        assert spmdlearn.default_comm() is MPI.COMM_SELF
        assert_allclose(BasicStatistics().fit(X).mean_, X.mean(0), rtol=1e-12)
    assert spmdlearn.default_comm() is MPI.COMM_WORLD
    with pytest.raises(TypeError, match="mpi4py communicator"):
        BasicStatistics(comm="world").fit(X)


def test_fitted_model_pickles():
    X = _data()
    for est in [BasicStatistics(), EmpiricalCovariance(), StandardScaler(), MaxAbsScaler()]:
        est.fit(X)
        back = pickle.loads(pickle.dumps(est))
        for k, v in vars(est).items():
            if k.endswith("_") and isinstance(v, np.ndarray):
                assert np.array_equal(v, getattr(back, k))


def test_result_options_subset():
    X = _data()
    bs = BasicStatistics(result_options=["mean", "max"]).fit(X)
    assert hasattr(bs, "mean_") and hasattr(bs, "max_")
    assert not hasattr(bs, "variance_")
    with pytest.raises(ValueError, match="unknown result option 'median'"):
        BasicStatistics(result_options="median").fit(X)


def test_weighted_statistics_match_repeated_rows():
    X = _data()
    w = np.random.default_rng(1).integers(0, 4, size=X.shape[0])
    ours = BasicStatistics().fit(X, sample_weight=w)
    rep = np.repeat(X, w, axis=0)
    assert_allclose(ours.mean_, rep.mean(0), rtol=1e-12)
    assert_allclose(ours.variance_, rep.var(0, ddof=1), rtol=1e-10)
    assert_allclose(ours.min_, rep.min(0))
    assert_allclose(ours.max_, rep.max(0))
    assert_allclose(ours.sum_squares_, (rep**2).sum(0), rtol=1e-12)
    sc, ref = StandardScaler().fit(X, sample_weight=w), skpre.StandardScaler().fit(X, sample_weight=w)
    assert_allclose(sc.var_, ref.var_, rtol=1e-10)
    assert sc.n_samples_seen_ == ref.n_samples_seen_


@pytest.mark.parametrize(
    "make", [BasicStatistics, IncrementalBasicStatistics, StandardScaler, MaxAbsScaler]
)
def test_device_cuda_without_cuda_support_is_clear(make):
    if spmdlearn.built_with_cuda():
        pytest.skip("this build has CUDA; tests/python/test_gpu.py covers device='cuda'")
    with pytest.raises(NotImplementedError, match="without CUDA support"):
        make(device="cuda").fit(_data())
    # device="cpu" and "auto" are the host path
    for device in ("cpu", "auto"):
        est = make(device=device).fit(_data())
        assert est.n_features_in_ == _data().shape[1]


@pytest.mark.parametrize(
    "make", [BasicStatistics, StandardScaler, MaxAbsScaler, EmpiricalCovariance]
)
def test_bad_device_value_is_rejected(make):
    with pytest.raises(ValueError, match="device"):
        make(device="tpu").fit(_data())
