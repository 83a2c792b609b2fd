"""Data near the float range (issue #16, item 5), under MPI with uneven shards and an empty rank
(the last one, at 2 ranks and more; the incremental fits rotate it between rounds).

Every estimator that forms sums of squares or cross-products is fitted on the same rows scaled by
1e300, 1e150 and 1e-300 (all columns, or columns 0 and 1 only) in float64, and by 1e37 / 1e-37 in
float32, and compared with scikit-learn (numpy for the statistics) fitted on all rows in one
process: finite where scikit-learn is finite, NaN/inf where it is. docs/reliability.md ("Extreme
values") has the table of what scikit-learn gives and the few places where the reference is
chosen otherwise:

* float32 input: the reference is scikit-learn on the same values in float64, cast to float32
  where the attribute is float32 (scikit-learn's float32 paths accumulate in float32 and overflow
  at 1e37 where the float64 result -- ours -- is finite);
* StandardScaler where the variance overflows: var_ inf and scale_ NaN (scikit-learn: var_ inf or
  NaN by inf - inf, scale_ NaN or 1 by its constant-feature test);
* Ridge where scikit-learn's cholesky solver raises (X^T X overflows): the same problem solved in
  numpy with each column scaled by a power of two (exact).
"""
import contextlib
import warnings

import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance as SkEmpiricalCovariance
from sklearn.linear_model import LinearRegression as SkLinearRegression
from sklearn.linear_model import Ridge as SkRidge
from sklearn.preprocessing import MaxAbsScaler as SkMaxAbsScaler
from sklearn.preprocessing import StandardScaler as SkStandardScaler

from spmd_helpers import check_replicated, collective_error, round_blocks, shard, shard_bounds
from spmdlearn import _core
from spmdlearn.basic_statistics import BasicStatistics, IncrementalBasicStatistics
from spmdlearn.covariance import EmpiricalCovariance, IncrementalEmpiricalCovariance
from spmdlearn.linear_model import IncrementalLinearRegression, IncrementalRidge, LinearRegression, Ridge
from spmdlearn.preprocessing import MaxAbsScaler, StandardScaler

# (id, dtype, factor, scaled columns: None for all)
CASES = [
    ("f64_1e300", np.float64, 1e300, None),
    ("f64_1e150", np.float64, 1e150, None),
    ("f64_1e-300", np.float64, 1e-300, None),
    ("f64_cols_1e300", np.float64, 1e300, [0, 1]),
    ("f64_cols_1e-300", np.float64, 1e-300, [0, 1]),
    ("f32_1e37", np.float32, 1e37, None),
    ("f32_1e-37", np.float32, 1e-37, None),
    ("f32_cols_1e37", np.float32, 1e37, [0, 1]),
]
IDS = [c[0] for c in CASES]
RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-6}
STATS = ["min", "max", "sum", "mean", "variance", "standard_deviation", "sum_squares",
         "sum_squares_centered", "second_order_raw_moment", "variation"]


def _data(dtype, factor, cols, n=57):
    """The full data set (identical on every rank): 4 columns with nonzero means, y linear in X."""
    rng = np.random.default_rng(16)
    X = rng.normal(size=(n, 4)) + np.array([3.0, -1.0, 0.5, 10.0])
    y = X @ np.array([1.5, -2.0, 0.25, 1.0]) + 0.1 * rng.normal(size=n)
    f = np.ones(4)
    f[slice(None) if cols is None else cols] = factor
    return (X * f).astype(dtype), y.astype(dtype)


@contextlib.contextmanager
def _quiet():
    """For the references only: numpy and scikit-learn warn as they overflow (spmdlearn must not)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _expect(got, ref, dtype, what, relative_to_max=False, atol_of_max=None):
    """assert_allclose at the dtype's tolerance, NaN where the reference is NaN (equal_nan), inf of
    the same sign where it is inf. relative_to_max: entries below the rounding of the largest
    (the solution of a rank-deficient problem) get an absolute tolerance rtol * max|ref| (or
    atol_of_max * max|ref|)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    rtol = RTOL[np.dtype(dtype)]
    finite = ref[np.isfinite(ref)]
    atol = (atol_of_max or rtol) * np.abs(finite).max() if relative_to_max and finite.size else 0.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def _ref_statistics(X, dtype):
    """numpy's statistics of all rows in float64, cast to the input dtype."""
    X = np.asarray(X, dtype=np.float64)
    with _quiet():
        mean = X.mean(axis=0)
        var = X.var(axis=0, ddof=1)
        std = np.sqrt(var)
        ref = dict(min=X.min(axis=0), max=X.max(axis=0), sum=X.sum(axis=0), mean=mean, variance=var,
                   standard_deviation=std, sum_squares=(X**2).sum(axis=0),
                   sum_squares_centered=((X - mean) ** 2).sum(axis=0),
                   second_order_raw_moment=(X**2).mean(axis=0), variation=std / mean)
        return {k: v.astype(dtype) for k, v in ref.items()}


def _every_rank_raises(fn, comm, *needles, rank=0):
    """Every rank raises the same ValueError from fn(), naming ``rank`` and containing each needle
    (case-insensitive)."""
    _, outcomes = collective_error(fn, comm)
    for r, o in enumerate(outcomes):
        assert o is not None and o[1], f"rank {r}: {o}"
        assert o[2].startswith(f"rank {rank}: "), o[2]
        for needle in needles:
            assert needle.lower() in o[2].lower(), (needle, o[2])
    assert len({o[2] for o in outcomes}) == 1, outcomes


def _check_statistics(est, X, dtype):
    ref = _ref_statistics(X, dtype)
    for name in STATS:
        got = getattr(est, name + "_")
        assert got.dtype == np.dtype(dtype), name
        _expect(got, ref[name], dtype, f"{name}_")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_basic_statistics(comm, case):
    _, dtype, factor, cols = case
    X, _ = _data(dtype, factor, cols)
    est = BasicStatistics().fit(shard(X, comm))
    check_replicated(est, [n + "_" for n in STATS], comm)
    _check_statistics(est, X, dtype)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_incremental_basic_statistics(comm, case):
    _, dtype, factor, cols = case
    X, _ = _data(dtype, factor, cols)
    est = IncrementalBasicStatistics()
    for idx in round_blocks(len(X), comm, 3, seed=1):
        est.partial_fit(X[idx])
    check_replicated(est, [n + "_" for n in STATS], comm)
    _check_statistics(est, X, dtype)


def _sk_covariance(X):
    """scikit-learn's fit on all rows (float32 input: the same values in float64); None when it
    raises (the covariance overflows)."""
    try:
        with _quiet():
            return SkEmpiricalCovariance().fit(np.asarray(X, dtype=np.float64))
    except ValueError:
        return None


def _check_covariance(est, sk, dtype):
    _expect(est.location_, sk.location_.astype(dtype), dtype, "location_")
    _expect(est.covariance_, sk.covariance_, np.float64, "covariance_")
    _expect(est.precision_, sk.precision_, np.float64, "precision_", relative_to_max=True)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_covariance(comm, case):
    _, dtype, factor, cols = case
    X, _ = _data(dtype, factor, cols)
    Xl = shard(X, comm)
    sk = _sk_covariance(X)
    if sk is None:  # the same on every rank: every rank takes this branch
        _every_rank_raises(lambda: EmpiricalCovariance().fit(Xl), comm, "overflows the float64", "scale the feature")
        return
    est = EmpiricalCovariance().fit(Xl)
    check_replicated(est, ["location_", "covariance_", "precision_"], comm)
    _check_covariance(est, sk, dtype)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_incremental_covariance(comm, case):
    _, dtype, factor, cols = case
    X, _ = _data(dtype, factor, cols)
    sk = _sk_covariance(X)
    rounds = round_blocks(len(X), comm, 3, seed=2)
    est = IncrementalEmpiricalCovariance()
    if sk is None:
        # the round that brings the overflow raises on every rank and leaves the state as it was
        def fit_all():
            for idx in rounds:
                est.partial_fit(X[idx])
        _every_rank_raises(fit_all, comm, "overflows the float64", "scale the feature")
        return
    for idx in rounds:
        est.partial_fit(X[idx])
    check_replicated(est, ["location_", "covariance_", "precision_"], comm)
    _check_covariance(est, sk, dtype)


def _fit_scaler(cls, case, comm, attrs):
    """(X, this rank's rows and their bounds, the scaler fitted on every rank's rows)."""
    _, dtype, factor, cols = case
    X, _ = _data(dtype, factor, cols)
    Xl = shard(X, comm)
    est = cls().fit(Xl)
    check_replicated(est, attrs, comm)
    return X, Xl, shard_bounds(len(X), comm), est


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_standard_scaler(comm, case):
    dtype = case[1]
    X, Xl, (lo, hi), est = _fit_scaler(StandardScaler, case, comm,
                                       ["mean_", "var_", "scale_", "n_samples_seen_"])
    X64 = np.asarray(X, dtype=np.float64)
    with _quiet():
        sk = SkStandardScaler().fit(X64)
        overflow = ~np.isfinite(sk.var_)  # scikit-learn: inf or NaN (inf - inf)
        # transform in the data's dtype, as scikit-learn's own on these rows (which refuses none)
        sk_out = SkStandardScaler().fit(X).transform(X[lo:hi]) if hi > lo else X[lo:hi]
    out = est.transform(Xl)
    _expect(est.mean_, sk.mean_, np.float64, "mean_")
    _expect(est.var_, np.where(overflow, np.inf, sk.var_), np.float64, "var_")
    _expect(est.scale_, np.where(overflow, np.nan, sk.scale_), np.float64, "scale_")
    assert out.dtype == np.dtype(dtype)
    _expect(out, np.where(overflow, np.nan, sk_out), dtype, "transform", relative_to_max=True)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_abs_scaler(comm, case):
    dtype = case[1]
    X, Xl, (lo, hi), est = _fit_scaler(MaxAbsScaler, case, comm, ["max_abs_", "scale_"])
    with _quiet():
        sk = SkMaxAbsScaler().fit(X)
    _expect(est.max_abs_, sk.max_abs_, dtype, "max_abs_")
    _expect(est.scale_, sk.scale_, dtype, "scale_")
    _expect(est.transform(Xl), sk.transform(X[lo:hi]) if hi > lo else X[lo:hi], dtype, "transform")


# --- normal equations ---------------------------------------------------------------------------

def _ridge_rescaled(X, y, alpha, fit_intercept):
    """Ridge solved in numpy with each (centred) column scaled by a power of two, exactly: the
    same problem as scikit-learn's, for data whose X^T X overflows (its cholesky solver raises,
    its svd solver returns zeros). Only for columns >= 1 in magnitude (the scales are <= 1)."""
    xm = X.mean(axis=0) if fit_intercept else np.zeros(X.shape[1])
    ym = y.mean() if fit_intercept else 0.0
    Xc, yc = X - xm, y - ym
    D = np.exp2(-np.maximum(0.0, np.ceil(np.log2(np.abs(Xc).max(axis=0)))))
    Z = Xc * D
    coef = D * np.linalg.solve(Z.T @ Z + alpha * np.diag(D * D), Z.T @ yc)
    return coef, (ym - xm @ coef if fit_intercept else 0.0)


def _ref_linear(X, y, alpha, fit_intercept):
    """(coef, intercept, rank, singular) of scikit-learn on all rows in float64 (rank and
    singular only for least squares)."""
    X64, y64 = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    with _quiet():
        if alpha is None:
            sk = SkLinearRegression(fit_intercept=fit_intercept).fit(X64, y64)
            return sk.coef_, sk.intercept_, sk.rank_, sk.singular_
        try:
            sk = SkRidge(alpha=alpha, fit_intercept=fit_intercept).fit(X64, y64)
            return sk.coef_, sk.intercept_, None, None
        except ValueError:  # "array must not contain infs or NaNs": X^T X overflowed
            return (*_ridge_rescaled(X64, y64, alpha, fit_intercept), None, None)


def _check_linear(est, ref, dtype):
    coef, intercept, rank, singular = ref
    assert est.coef_.dtype == np.dtype(dtype)
    with _quiet():  # float64 values beyond float32's range become inf, as ours
        coef, intercept = np.asarray(coef).astype(dtype), np.asarray(intercept).astype(dtype)
        singular = None if singular is None else singular.astype(dtype)
    _expect(est.coef_, coef, dtype, "coef_", relative_to_max=True)
    _expect(est.intercept_, intercept, dtype, "intercept_", relative_to_max=True)
    if rank is not None:
        assert est.rank_ == rank, f"rank_ {est.rank_} != scikit-learn's {rank}"
        # From the eigenvalues of X^T X: values below sqrt(eps) s_max are rounding (as in
        # test_spmd_linear_model.py).
        _expect(est.singular_, singular, dtype, "singular_", relative_to_max=True, atol_of_max=1e-6)


LINEAR = [("LinearRegression", None), ("Ridge", 1.0)]


def _make(kind, fit_intercept, incremental=False):
    if kind == "LinearRegression":
        cls = IncrementalLinearRegression if incremental else LinearRegression
        return cls(fit_intercept=fit_intercept)
    cls = IncrementalRidge if incremental else Ridge
    return cls(alpha=1.0, fit_intercept=fit_intercept)


@pytest.mark.parametrize("kind", LINEAR, ids=[k[0] for k in LINEAR])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_linear_models(comm, case, kind):
    _, dtype, factor, cols = case
    X, y = _data(dtype, factor, cols)
    names = ["coef_", "intercept_"] + (["rank_", "singular_"] if kind[1] is None else [])
    fitted = {}
    for fit_intercept in (True, False):  # centred, and raw moments (their scale is the mean's)
        fitted[fit_intercept] = _make(kind[0], fit_intercept).fit(shard(X, comm), shard(y, comm))
        check_replicated(fitted[fit_intercept], names, comm)
    for fit_intercept, est in fitted.items():
        _check_linear(est, _ref_linear(X, y, kind[1], fit_intercept), dtype)


@pytest.mark.parametrize("kind", LINEAR, ids=[k[0] for k in LINEAR])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_incremental_linear_models(comm, case, kind):
    _, dtype, factor, cols = case
    X, y = _data(dtype, factor, cols)
    est = _make(kind[0], True, incremental=True)
    for idx in round_blocks(len(X), comm, 3, seed=3):
        est.partial_fit(X[idx], y[idx])
    check_replicated(est, ["coef_", "intercept_"], comm)
    _check_linear(est, _ref_linear(X, y, kind[1], True), dtype)


def test_normal_equations_scaled_only_when_needed(comm):
    """Ordinary data keep exponent 0 (no scaled pass); data near the float range get the same
    exponents on every rank."""
    X, y = _data(np.float64, 1.0, None)
    plain = LinearRegression().fit(shard(X, comm), shard(y, comm))
    Xs, ys = _data(np.float64, 1e300, [0])
    big = LinearRegression().fit(shard(Xs, comm), shard(ys, comm))
    check_replicated(big, ["coef_", "intercept_"], comm)
    assert not plain._partial_state["exponent"].any()
    e = big._partial_state["exponent"]
    assert e[0] > 900 and not e[1:].any(), e


def test_replicated_solve_failure_names_the_rank(comm):
    """A failing replicated step (here the solve of normal equations that are not finite) raises
    the same error on every rank, naming the rank, the cause and what to do; read lazily by one
    rank alone, it names that rank without a collective."""
    from spmdlearn._comm import resolve

    _, addr = resolve(comm)
    X, y = _data(np.float64, 1.0, None)
    est = LinearRegression().fit(shard(X, comm), shard(y, comm))
    state = dict(est._partial_state)
    state["cross"] = state["cross"].copy()
    state["cross"][0, 0] = np.inf
    solve = lambda collective: _core.lr_solve(state, np.zeros(0), True, 1e-6, False, True, "LinearRegression",  # noqa: E731
                                              addr, collective)
    _every_rank_raises(lambda: solve(True), comm, "not finite", "scale the features")
    _, outcomes = collective_error(lambda: solve(False), comm)
    for r, o in enumerate(outcomes):
        assert o is not None and o[1] and o[2].startswith(f"rank {r}: "), o
        assert "scale the features" in o[2], o
