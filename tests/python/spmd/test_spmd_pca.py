"""PCA under MPI: parity with scikit-learn's exact PCA fitted on the full data for the full (TSQR)
and covariance_eigh solvers, every n_components form, float32/float64, uneven shards with an
empty rank; bitwise-identical attributes; global score; ill-conditioned data where full must beat
covariance_eigh; bad input on one rank."""
import numpy as np
import pytest
import sklearn.datasets as ds
from sklearn.decomposition import PCA as SkPCA

from spmdlearn.decomposition import PCA
from spmd_helpers import assert_every_rank_raises, check_replicated, shard, skip_unless_several_ranks

ATTRS = ["components_", "explained_variance_", "explained_variance_ratio_", "singular_values_",
         "mean_", "n_components_", "n_samples_", "noise_variance_", "n_features_in_"]
RTOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 5e-3}


def _data(name, dtype):
    if name == "synthetic":
        rng = np.random.default_rng(4)
        X = rng.normal(size=(400, 12)) @ np.diag(np.linspace(10, 0.1, 12)) @ np.linalg.qr(rng.normal(size=(12, 12)))[0] + 3.0
    else:
        X = getattr(ds, f"load_{name}")(return_X_y=True)[0]
    return np.ascontiguousarray(X, dtype=dtype)


def _check(est, ref, X, dtype, what, mle=False):
    rtol = RTOL[np.dtype(dtype)]
    if est.n_components_ != ref.n_components_ and mle:
        # Minka's MLE over a spectrum whose tail is rounding noise (digits has constant columns:
        # eigenvalues ~1e-30 of the largest) is decided by that noise, in scikit-learn too; then
        # only the first components are compared.
        longer = est if est.n_components_ > ref.n_components_ else ref
        k = max(est.n_components_, ref.n_components_)
        ev = longer.explained_variance_.astype(np.float64)
        assert ev[k - 1] <= 1e-10 * ev[0], f"{what}: MLE choices {est.n_components_} vs {ref.n_components_}"
        return  # the spectrum itself is compared by the int n_components cases
    assert est.n_components_ == ref.n_components_, f"{what}: n_components_ {est.n_components_} vs {ref.n_components_}"
    assert est.components_.dtype == ref.components_.dtype, what
    ev, ev_ref = est.explained_variance_.astype(np.float64), ref.explained_variance_.astype(np.float64)
    scale = max(ev_ref.max(), 1e-300)
    # eigenvalues far below the largest carry rounding relative to the largest
    err = np.abs(ev - ev_ref) / np.maximum(ev_ref, scale * 1e-6)
    assert err.max() <= rtol, f"{what}: explained_variance_ off by {err.max():.3g}"
    assert np.allclose(est.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=rtol, atol=rtol * 1e-3)
    assert np.allclose(est.mean_, ref.mean_, rtol=rtol, atol=rtol * np.abs(X).max())
    # components where the spectrum gap is clear (relative gap > 1e-3 to both neighbours)
    lam = ref.explained_variance_.astype(np.float64)
    full = np.concatenate([[np.inf], lam, [0.0]])
    for k in range(len(lam)):
        gap = min(full[k] - full[k + 1], full[k + 1] - full[k + 2]) / max(lam[0], 1e-300)
        if gap > 1e-3 and lam[k] > 1e-6 * lam[0]:
            diff = np.abs(est.components_[k].astype(np.float64) - ref.components_[k]).max()
            assert diff <= 100 * rtol, f"{what}: component {k} differs by {diff:.3g}"


@pytest.mark.parametrize("solver", ["full", "covariance_eigh"])
@pytest.mark.parametrize("n_components", [None, 5, 0.8, "mle"], ids=["none", "5", "0.8", "mle"])
@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine", "synthetic"])
def test_parity(comm, name, n_components, solver, empty_rank):
    X = _data(name, np.float64)
    Xl = shard(X, comm, empty_rank)
    est = PCA(n_components=n_components, svd_solver=solver).fit(Xl)
    # score needs a regular model covariance (noise_variance_ > 0): not with every component of
    # data with constant columns (scikit-learn raises there too)
    with_score = n_components in (5, 0.8)
    score = est.score(Xl) if with_score else None
    check_replicated(est, ATTRS, comm)
    ref = SkPCA(n_components=n_components, svd_solver=solver).fit(X)
    _check(est, ref, X, np.float64, f"{name} {solver} {n_components}", mle=n_components == "mle")
    if with_score:
        assert abs(score - ref.score(X)) <= 1e-8 * max(1.0, abs(ref.score(X)))


@pytest.mark.parametrize("solver", ["full", "covariance_eigh"])
def test_float32_whiten_transform(comm, solver):
    X = _data("wine", np.float32)
    Xl = shard(X, comm)
    est = PCA(n_components=4, whiten=True, svd_solver=solver).fit(Xl)
    Z = est.transform(Xl)
    ref = SkPCA(n_components=4, whiten=True, svd_solver="full").fit(X.astype(np.float64))
    assert est.components_.dtype == np.float32 and Z.dtype == np.float32
    _check(est, SkPCA(n_components=4, whiten=True, svd_solver=solver).fit(X), X, np.float32, f"float32 {solver}")
    assert Z.shape == (len(Xl), 4)
    if len(Xl):
        assert np.allclose(Z, ref.transform(Xl.astype(np.float64)), atol=5e-3)
        back = est.inverse_transform(Z)
        assert back.shape == Xl.shape


def test_auto_picks_as_scikit_learn(comm):
    X = _data("digits", np.float64)  # 1797 x 64: tall -> covariance_eigh
    est = PCA(n_components=3).fit(shard(X, comm))
    assert est._fit_svd_solver == "covariance_eigh"
    Xw = X[:100]  # 100 x 64 -> full
    est = PCA(n_components=3).fit(shard(Xw, comm))
    assert est._fit_svd_solver == "full"


def test_full_beats_covariance_on_ill_conditioned_data(comm):
    # spectrum spanning 1e-14 (singular values 1e-7 relative): the covariance path loses the small
    # eigenvalues to rounding, TSQR keeps them
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(500, 6)))
    V, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    X = (Q * np.logspace(0, -7, 6)) @ V.T * 1e3
    Xl = shard(X, comm)
    full = PCA(svd_solver="full").fit(Xl)
    cov = PCA(svd_solver="covariance_eigh").fit(Xl)
    ref = SkPCA(svd_solver="full").fit(X)
    err_full = np.abs(full.singular_values_ - ref.singular_values_) / ref.singular_values_
    err_cov = np.abs(cov.singular_values_ - ref.singular_values_) / ref.singular_values_
    assert err_full.max() <= 1e-6, err_full
    assert err_cov[-1] > err_full[-1]


@pytest.mark.parametrize("case", ["too_many_components", "nan", "n_features"])
def test_bad_input(comm, case):
    if case == "n_features":
        skip_unless_several_ranks(comm)
    X = _data("wine", np.float64)
    rank, last = comm.Get_rank(), comm.Get_size() - 1
    Xl = shard(X, comm, empty_rank=False).copy()
    kw, named, match = {}, last, None
    if case == "too_many_components":
        kw["n_components"] = 14  # > min(n, d) = 13 over all ranks
        named, match = None, "n_components"
    elif case == "nan" and rank == last:
        Xl[0, 2] = np.nan
    elif case == "n_features" and rank == last:
        Xl = Xl[:, :-1]
    if case == "nan":
        match = "nan"
    if case == "n_features":
        match = "features"
    est = PCA(svd_solver="full", **kw)
    assert_every_rank_raises(lambda: est.fit(Xl), rank=named, match=match)
    good = PCA(n_components=2).fit(shard(X, comm, empty_rank=False))
    check_replicated(good, ["components_"], comm)


@pytest.mark.parametrize("name", ["digits", "wine", "synthetic"])
def test_incremental_rounds_equal_exact_pca(comm, name):
    from spmdlearn.decomposition import IncrementalPCA
    from spmd_helpers import round_blocks

    X = _data(name, np.float64)
    est = IncrementalPCA(n_components=4)
    for idx in round_blocks(len(X), comm, 3, seed=5):
        est.partial_fit(X[idx])
    check_replicated(est, ATTRS[:-3] + ["n_samples_seen_", "var_"], comm)
    ref = SkPCA(n_components=4, svd_solver="full").fit(X)  # exact: not scikit-learn's IncrementalPCA
    _check(est, ref, X, np.float64, f"IncrementalPCA {name}")
    assert est.n_samples_seen_ == len(X)
    assert np.allclose(est.var_, X.var(axis=0), rtol=1e-10, atol=1e-12 * np.abs(X).max() ** 2)


def test_incremental_too_many_components_raises_everywhere(comm):
    from spmdlearn.decomposition import IncrementalPCA

    X = _data("wine", np.float64)
    assert_every_rank_raises(lambda: IncrementalPCA(n_components=20).fit(shard(X, comm)), match="n_components")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_randomized_matches_exact_pca(comm, dtype, empty_rank):
    # rank-8 signal plus small noise: the randomized range finder captures the top components
    rng = np.random.default_rng(8)
    U = rng.normal(size=(900, 8))
    V, _ = np.linalg.qr(rng.normal(size=(600, 8)))
    X = ((U * np.logspace(1, 0, 8)) @ V.T + 1e-4 * rng.normal(size=(900, 600)) + 2.0).astype(dtype)
    Xl = shard(X, comm, empty_rank)
    est = PCA(n_components=5, svd_solver="randomized", random_state=0).fit(Xl)
    again = PCA(n_components=5, svd_solver="randomized", random_state=0).fit(Xl)
    check_replicated(est, ATTRS, comm)
    assert np.array_equal(est.components_, again.components_)  # reproducible for a seed
    ref = SkPCA(n_components=5, svd_solver="full").fit(X.astype(np.float64))
    rtol = RTOL[np.dtype(dtype)]
    err = np.abs(est.explained_variance_ - ref.explained_variance_) / ref.explained_variance_
    assert err.max() <= rtol, err
    assert np.abs(est.components_ - ref.components_).max() <= 100 * rtol
    assert abs(est.noise_variance_ - ref.noise_variance_) <= 1e-3 * ref.noise_variance_ + 1e-12
    wide = PCA(n_components=5).fit(Xl)  # 900 x 600 with 5 components: scikit-learn's auto
    assert wide._fit_svd_solver == "randomized"


@pytest.mark.parametrize("solver", ["full", "covariance_eigh"])
def test_nearly_degenerate_eigenvalues_same_subspace(comm, solver, empty_rank):
    # the 2nd and 3rd variances differ by 1e-9 relative: those two components may rotate within
    # their plane, but the plane (its projector) must match scikit-learn's
    rng = np.random.default_rng(12)
    Z = rng.normal(size=(600, 5))
    Z = (Z - Z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(Z, rowvar=False)).T)  # whitened
    R, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    X = (Z * np.array([4.0, 2.0, 2.0 * (1 + 1e-9), 1.0, 0.5])) @ R.T + 7.0
    est = PCA(svd_solver=solver).fit(shard(X, comm, empty_rank))
    check_replicated(est, ATTRS, comm)
    ref = SkPCA(svd_solver="full").fit(X)
    assert np.allclose(est.explained_variance_, ref.explained_variance_, rtol=1e-9)
    for sl in (slice(0, 1), slice(1, 3), slice(3, 4), slice(4, 5)):
        P, Pr = est.components_[sl].T @ est.components_[sl], ref.components_[sl].T @ ref.components_[sl]
        assert np.abs(P - Pr).max() <= 1e-7, (sl, np.abs(P - Pr).max())
