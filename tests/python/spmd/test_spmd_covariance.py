"""EmpiricalCovariance / IncrementalEmpiricalCovariance under MPI: parity with scikit-learn fitted
on the full data (covariance_, location_, precision_, score, mahalanobis), attribute dtypes equal to
scikit-learn's, bitwise-identical attributes on every rank, partial_fit rounds."""
import numpy as np
import pytest
import scipy.linalg
import sklearn.covariance as skcov

from spmdlearn.covariance import EmpiricalCovariance, IncrementalEmpiricalCovariance
from spmd_helpers import (
    DATASETS,
    FLOAT_DTYPES,
    assert_close,
    assert_every_rank_raises,
    check_replicated,
    load,
    round_blocks,
    rtol_of,
    shard,
)

ATTRS = ["covariance_", "location_", "precision_", "n_features_in_"]
EPS64 = np.finfo(np.float64).eps


def assert_covariance(est, X, dtype, assume_centered=False, what=""):
    """Compare a fitted model with scikit-learn's EmpiricalCovariance on the full X."""
    ref = skcov.EmpiricalCovariance(assume_centered=assume_centered).fit(X)
    for name in ("covariance_", "location_", "precision_"):
        got, exp = getattr(est, name), getattr(ref, name)
        assert got.dtype == exp.dtype, f"{name} dtype {got.dtype}, scikit-learn has {exp.dtype}"
        assert got.shape == exp.shape, name
    assert est.n_features_in_ == X.shape[1]
    d = X.shape[1]
    rtol = rtol_of(dtype)

    # scikit-learn computes in float64 except X.T @ X for assume_centered float32 input; the
    # values are compared with its float64 computation on the same (float32) numbers.
    ref64 = skcov.EmpiricalCovariance(assume_centered=assume_centered).fit(X.astype(np.float64))
    C = ref64.covariance_
    s = np.sqrt(np.diag(C))
    # an entry's rounding is relative to its row and column scales (entries can be ~0)
    assert_close(est.covariance_, C, dtype, atol=rtol * np.outer(s, s), what=f"{what} covariance_")
    colscale = np.abs(X).max(axis=0).astype(np.float64)
    assert_close(est.location_, ref64.location_, dtype, atol=rtol * colscale, what=f"{what} location_")

    # precision_: pinvh of the covariance, with the cutoff of the covariance's dtype
    lam, cut, ambiguous, _ = spectrum(C, ref.covariance_.dtype)
    P = est.precision_.astype(np.float64)
    assert_close(P, P.T, np.float64, atol=rtol * np.abs(P).max(), what=f"{what} precision_ symmetry")
    if not ambiguous:
        # elementwise, in the basis scaled by the standard deviations; inverting amplifies the
        # rounding of the covariance by the condition number of the correlation matrix. (When an
        # eigenvalue lies within 10x of pinvh's cutoff, whether it is kept is decided by rounding,
        # in scikit-learn too: then only dtype, shape and symmetry are checked.)
        P_ref = scipy.linalg.pinvh(C, rtol=d * np.finfo(ref.covariance_.dtype).eps)
        sk = np.where(s > 0, s, 1.0)
        tol = max(rtol, 1e3 * EPS64 * correlation_condition(C))
        Ps, Prs = P * np.outer(sk, sk), P_ref * np.outer(sk, sk)
        assert_close(Ps, Prs, np.float64, atol=tol * np.abs(Prs).max(), what=f"{what} precision_")


def correlation_condition(C):
    """Condition number of the correlation matrix (constant columns left out): how much inverting
    C amplifies its rounding, independent of the columns' units."""
    s = np.sqrt(np.diag(C))
    keep = s > 0
    return np.linalg.cond((C / np.outer(s, s).clip(min=1e-300))[np.ix_(keep, keep)])


def spectrum(C, cov_dtype):
    """Eigenvalues of C, pinvh's cutoff for ``cov_dtype``, whether an eigenvalue is within a factor
    10 of the cutoff (kept or dropped by rounding), and whether none is dropped."""
    d = C.shape[0]
    lam = np.linalg.eigvalsh(C)
    top = np.abs(lam).max()
    cut = top * d * np.finfo(cov_dtype).eps
    nonzero = np.abs(lam) > 100 * EPS64 * top
    ambiguous = bool(np.any(np.abs(np.log10(np.abs(lam[nonzero]) / cut)) < 1.0))
    full_rank = bool(np.all(lam > cut))
    return lam, cut, ambiguous, full_rank


def assert_score(score, est, X_train, X_test, dtype, assume_centered=False, what=""):
    """score (collective) vs scikit-learn's log-likelihood formula with the model's parameters, in
    float64; -inf when the precision is singular (scikit-learn's convention)."""
    ref = skcov.EmpiricalCovariance(assume_centered=assume_centered).fit(X_train)
    C = skcov.EmpiricalCovariance(assume_centered=assume_centered).fit(
        X_train.astype(np.float64)).covariance_
    _, _, ambiguous, full_rank = spectrum(C, ref.covariance_.dtype)
    if ambiguous:
        return
    if not full_rank:
        assert score == -np.inf, f"{what}: singular precision, expected score -inf, got {score}"
        return
    rtol = max(rtol_of(dtype), 1e3 * EPS64 * correlation_condition(C))
    assert_close(score, ref_score(est, X_test), np.float64, atol=rtol * abs(ref_score(est, X_test)),
                 what=f"{what} score")


def ref_score(est, X):
    """scikit-learn's log-likelihood formula with the model's parameters, in float64."""
    loc = est.location_.astype(np.float64)
    test_cov = skcov.empirical_covariance(X.astype(np.float64) - loc, assume_centered=True)
    return skcov.log_likelihood(test_cov, est.get_precision().astype(np.float64))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_parity(comm, dataset, dtype, empty_rank):
    X = load(dataset, dtype)
    Xl = shard(X, comm, empty_rank)
    est = EmpiricalCovariance().fit(Xl)
    score = est.score(Xl)  # collective: the log-likelihood of all ranks' rows
    check_replicated(est, ATTRS, comm)
    gathered_scores = comm.allgather(score)
    assert len(set(gathered_scores)) == 1, gathered_scores
    assert_covariance(est, X, dtype, what=dataset)
    assert_score(score, est, X, X, dtype, what=dataset)
    if dtype == np.float64 and dataset in ("iris", "wine", "diabetes", "digits", "normal", "mean1e4"):
        ref = skcov.EmpiricalCovariance().fit(X)
        assert_close(score, ref.score(X), dtype, what=f"{dataset} score vs scikit-learn")
    # mahalanobis is local: this rank's rows
    m = est.mahalanobis(Xl)  # also on a rank without rows
    D = Xl.astype(np.float64) - est.location_
    exp = np.einsum("ij,jk,ik->i", D, est.precision_, D)
    assert_close(m, exp, dtype, atol=rtol_of(dtype) * X.shape[1], what=f"{dataset} mahalanobis")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_assume_centered(comm, dataset, dtype):
    X = load(dataset, dtype)
    Xl = shard(X, comm)
    est = EmpiricalCovariance(assume_centered=True).fit(Xl)
    score = est.score(Xl)
    check_replicated(est, ATTRS, comm)
    assert_covariance(est, X, dtype, assume_centered=True, what=dataset)
    assert_score(score, est, X, X, dtype, assume_centered=True, what=dataset)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
def test_store_precision_false_and_score_on_other_rows(comm, dtype):
    X = load("wine", dtype)
    train, test = X[:120], X[120:]
    est = EmpiricalCovariance(store_precision=False).fit(shard(train, comm))
    score = est.score(shard(test, comm, empty_rank=False, seed=4))
    check_replicated(est, ["covariance_", "location_", "precision_"], comm)
    assert est.precision_ is None
    ref = skcov.EmpiricalCovariance().fit(train)
    assert_close(est.covariance_, ref.covariance_, dtype, what="covariance_")
    assert_score(score, est, train, test, dtype, what="wine")
    if dtype == np.float64:
        assert_close(score, ref.score(test), dtype, what="score vs scikit-learn")


def test_error_norm_matches_sklearn(comm):
    X = load("diabetes")
    est = EmpiricalCovariance().fit(shard(X, comm))
    ref = skcov.EmpiricalCovariance().fit(X)
    other = np.cov(X[:100].T, bias=True)
    assert_close(est.error_norm(other), ref.error_norm(other), np.float64, what="error_norm")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("dataset", ["breast_cancer", "mean1e4", "digits"])
def test_incremental_rounds(comm, dataset, dtype):
    X = load(dataset, dtype)
    inc = IncrementalEmpiricalCovariance()
    for rows in round_blocks(len(X), comm, 5, seed=2):
        inc.partial_fit(X[rows])
    one = EmpiricalCovariance().fit(shard(X, comm))
    check_replicated(inc, ATTRS, comm)
    assert_covariance(inc, X, dtype, what=f"{dataset} partial_fit")
    s = np.sqrt(np.diag(one.covariance_))
    assert_close(inc.covariance_, one.covariance_, np.float64, atol=1e-12 * np.outer(s, s),
                 what="partial_fit vs fit")


def test_incremental_fit_resets_and_empty_round(comm):
    X = load("iris")
    inc = IncrementalEmpiricalCovariance()
    inc.partial_fit(shard(load("wine")[:, :4], comm))
    inc.fit(shard(X[:60], comm))  # fit forgets earlier rounds
    assert_every_rank_raises(lambda: inc.partial_fit(X[:0]))  # an empty round everywhere
    inc.partial_fit(shard(X[60:], comm, empty_rank=False))
    check_replicated(inc, ATTRS, comm)
    assert_covariance(inc, X, np.float64, what="fit + partial_fit")
