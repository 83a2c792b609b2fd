"""StandardScaler / MaxAbsScaler under MPI: fitted attributes equal scikit-learn's on the full data
(values, dtypes, types), identical on every rank; transform / inverse_transform of the local block
equal scikit-learn's on the same rows; partial_fit rounds equal one fit on all rows."""
import numpy as np
import pytest
import sklearn.preprocessing as skpre

from spmdlearn.preprocessing import MaxAbsScaler, StandardScaler
from spmd_helpers import (
    DATASETS,
    FLOAT_DTYPES,
    assert_close,
    check_replicated,
    frac_weights,
    int_weights,
    load,
    round_blocks,
    rtol_of,
    shard,
)

SS_ATTRS = ["mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"]
MA_ATTRS = ["max_abs_", "scale_", "n_samples_seen_", "n_features_in_"]


def _same_kind(got, exp, name):
    assert type(got) is type(exp), f"{name}: type {type(got).__name__}, scikit-learn has {type(exp).__name__}"
    if exp is not None:
        assert np.asarray(got).dtype == np.asarray(exp).dtype, (
            f"{name}: dtype {np.asarray(got).dtype}, scikit-learn has {np.asarray(exp).dtype}")
        assert np.shape(got) == np.shape(exp), name


def assert_standard_scaler(est, ref, X, dtype, what=""):
    """est (fitted on shards) vs ref (scikit-learn fitted on the full X): values, dtypes, types."""
    rtol = rtol_of(dtype)
    X64 = X.astype(np.float64)
    c = np.abs(X64).max(axis=0)
    for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
        _same_kind(getattr(est, name), getattr(ref, name), name)
    if ref.mean_ is not None:
        assert_close(est.mean_, ref.mean_, dtype, atol=rtol * c, what=f"{what} mean_")
    if ref.var_ is not None:
        # pure rtol, also for the 1e4-mean data (constant columns: exactly 0 and 1 on both sides)
        assert_close(est.var_, ref.var_, dtype, what=f"{what} var_")
        assert_close(est.scale_, ref.scale_, dtype, what=f"{what} scale_")
    assert_close(est.n_samples_seen_, ref.n_samples_seen_, np.float64, what=f"{what} n_samples_seen_")
    assert est.n_features_in_ == ref.n_features_in_


def assert_local_transforms(est, ref, Xl, X, dtype, what=""):
    """transform / inverse_transform of this rank's rows vs scikit-learn's of the same rows
    (absolute tolerances from the columns' scales in the full data X)."""
    if len(Xl) == 0:  # a rank without rows gets an empty block back (scikit-learn refuses 0 rows)
        for out in (est.transform(Xl), est.inverse_transform(Xl)):
            assert isinstance(out, np.ndarray) and out.shape == Xl.shape and out.dtype == Xl.dtype
        return
    rtol = rtol_of(dtype)
    Z, Zr = est.transform(Xl), ref.transform(Xl)
    assert Z.dtype == Zr.dtype and Z.shape == Zr.shape
    assert_close(Z, Zr, dtype, atol=rtol * max(1.0, np.abs(Zr).max()), what=f"{what} transform")
    back, back_r = est.inverse_transform(Z), ref.inverse_transform(Zr)
    assert back.dtype == back_r.dtype
    colscale = np.abs(X).max(axis=0).astype(np.float64)
    assert_close(back, back_r, dtype, atol=rtol * colscale, what=f"{what} inverse_transform")
    assert_close(back, Xl, dtype, atol=rtol * colscale, what=f"{what} inverse_transform(transform)")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_standard_scaler_parity(comm, dataset, dtype, empty_rank):
    X = load(dataset, dtype)
    Xl = shard(X, comm, empty_rank)
    est = StandardScaler().fit(Xl)
    Z = StandardScaler().fit_transform(Xl)  # collective fit, local transform, on every rank
    check_replicated(est, SS_ATTRS, comm)
    ref = skpre.StandardScaler().fit(X)
    assert_standard_scaler(est, ref, X, dtype, what=dataset)
    assert_local_transforms(est, ref, Xl, X, dtype, what=dataset)
    assert Z.shape == Xl.shape and Z.dtype == Xl.dtype
    np.testing.assert_array_equal(Z, est.transform(Xl))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("weights", ["int", "frac"])
@pytest.mark.parametrize("dataset", ["wine", "mean1e4"])
def test_standard_scaler_sample_weight(comm, dataset, weights, dtype, empty_rank):
    X = load(dataset, dtype)
    w = (int_weights if weights == "int" else frac_weights)(len(X), seed=5)
    Xl = shard(X, comm, empty_rank)
    est = StandardScaler().fit(Xl, sample_weight=shard(w, comm, empty_rank))
    check_replicated(est, SS_ATTRS, comm)
    ref = skpre.StandardScaler().fit(X, sample_weight=w)
    assert_standard_scaler(est, ref, X, dtype, what=f"{dataset} {weights} weights")
    assert_local_transforms(est, ref, Xl, X, dtype, what=dataset)


@pytest.mark.parametrize("with_mean,with_std", [(False, True), (True, False), (False, False)])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_standard_scaler_options(comm, with_mean, with_std, weighted):
    X = load("breast_cancer")
    w = int_weights(len(X), seed=6) if weighted else None
    Xl = shard(X, comm)
    est = StandardScaler(with_mean=with_mean, with_std=with_std).fit(Xl, sample_weight=shard(w, comm))
    check_replicated(est, SS_ATTRS, comm)
    ref = skpre.StandardScaler(with_mean=with_mean, with_std=with_std).fit(X, sample_weight=w)
    assert_standard_scaler(est, ref, X, np.float64, what=f"with_mean={with_mean} with_std={with_std}")
    assert_local_transforms(est, ref, Xl, X, np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("dataset", ["diabetes", "mean1e4", "digits"])
def test_standard_scaler_partial_fit_rounds(comm, dataset, dtype):
    X = load(dataset, dtype)
    w = frac_weights(len(X), seed=7)
    inc, incw = StandardScaler(), StandardScaler()
    for rows in round_blocks(len(X), comm, 4, seed=3):
        inc.partial_fit(X[rows])
        incw.partial_fit(X[rows], sample_weight=w[rows])
    check_replicated(inc, SS_ATTRS, comm)
    check_replicated(incw, SS_ATTRS, comm)
    assert_standard_scaler(inc, skpre.StandardScaler().fit(X), X, dtype, what="partial_fit")
    assert_standard_scaler(incw, skpre.StandardScaler().fit(X, sample_weight=w), X, dtype,
                           what="weighted partial_fit")


def test_standard_scaler_fit_after_partial_fit_resets(comm):
    X = load("wine")
    est = StandardScaler()
    est.partial_fit(shard(load("iris")[:, :3], comm))
    est.fit(shard(X, comm))  # fit starts over, even with another n_features
    check_replicated(est, SS_ATTRS, comm)
    assert_standard_scaler(est, skpre.StandardScaler().fit(X), X, np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_max_abs_scaler_parity(comm, dataset, dtype, empty_rank):
    X = load(dataset, dtype)
    if dataset == "normal":
        X = X - X.mean(axis=0)  # negative values decide some columns' max_abs_
    Xl = shard(X, comm, empty_rank)
    est = MaxAbsScaler().fit(Xl)
    Z = MaxAbsScaler().fit_transform(Xl)  # collective fit, local transform, on every rank
    check_replicated(est, MA_ATTRS, comm)
    assert Z.shape == Xl.shape and Z.dtype == Xl.dtype
    np.testing.assert_array_equal(Z, est.transform(Xl))
    ref = skpre.MaxAbsScaler().fit(X)
    for name in ("max_abs_", "scale_", "n_samples_seen_"):
        _same_kind(getattr(est, name), getattr(ref, name), name)
    # a maximum of absolute values is exact: no rounding at all
    np.testing.assert_array_equal(est.max_abs_, ref.max_abs_)
    np.testing.assert_array_equal(est.scale_, ref.scale_)
    assert est.n_samples_seen_ == ref.n_samples_seen_
    assert_local_transforms(est, ref, Xl, X, dtype, what=dataset)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
def test_max_abs_scaler_partial_fit_rounds(comm, dtype):
    X = load("breast_cancer", dtype) * np.where(np.arange(30) % 2, 1, -1).astype(dtype)
    inc = MaxAbsScaler()
    for rows in round_blocks(len(X), comm, 5, seed=4):
        inc.partial_fit(X[rows])
    check_replicated(inc, MA_ATTRS, comm)
    ref = skpre.MaxAbsScaler().fit(X)
    np.testing.assert_array_equal(inc.max_abs_, ref.max_abs_)
    np.testing.assert_array_equal(inc.scale_, ref.scale_)
    assert inc.n_samples_seen_ == ref.n_samples_seen_ == len(X)
    assert inc.max_abs_.dtype == ref.max_abs_.dtype
