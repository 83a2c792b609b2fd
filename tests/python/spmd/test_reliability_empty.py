"""Empty blocks on one rank (issue #16, item 1): every estimator, every collective method, every
option that changes the code path, with one rank passing an empty block -- of shape (0, 0) (a
rank without rows need not know n_features) or (0, n_features) -- while the others hold uneven
blocks of the rows.

Each test fits (and scores, partial_fits...) collectively, then checks that every rank holds
bitwise-identical attributes and that they equal scikit-learn's (or numpy's) on all rows, at the
dtype's tolerance of spmd_helpers (float64 1e-7, float32 1e-4, relative; absolute slack only
where a value's rounding is relative to a larger scale, said at each check). float32 models are
compared with the float64 computation on the same float32 numbers (the core computes in float64).

Layouts: the empty rank is rank 0 with a (0, 0) block, or the last rank with a (0, d) block; in
partial_fit rounds the empty rank changes every round. At one rank no rank is empty (the tests
then check the plain path). The module must stay fast: small data sets, a few fits per test.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import sklearn.cluster as skcluster
import sklearn.datasets as ds
import sklearn.decomposition as skdec
import sklearn.linear_model as sklm
import sklearn.preprocessing as skpre
from sklearn.metrics import accuracy_score
from threadpoolctl import threadpool_limits

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
from spmd_helpers import assert_basic_statistics, assert_close, check_replicated, frac_weights, rtol_of
from test_spmd_covariance import assert_covariance, ref_score
from test_spmd_scalers import assert_standard_scaler

DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]
# (shape of the empty block, which rank holds it)
LAYOUTS = [pytest.param(("00", 0), id="00_on_first"), pytest.param(("0d", -1), id="0d_on_last")]
# Where a case list is long (the module must stay fast at 4 ranks on 2 cores): the (0, 0) layout
# in both dtypes and the (0, d) one -- the path the other suites' empty rank takes -- in float64;
# for the longest lists one dtype per layout.
DTYPE_LAYOUTS = [
    pytest.param(np.float64, ("00", 0), id="f64-00_on_first"),
    pytest.param(np.float32, ("00", 0), id="f32-00_on_first"),
    pytest.param(np.float64, ("0d", -1), id="f64-0d_on_last"),
]
DTYPE_LAYOUTS_2 = [
    pytest.param(np.float64, ("00", 0), id="f64-00_on_first"),
    pytest.param(np.float32, ("0d", -1), id="f32-0d_on_last"),
]


# --- layouts ----------------------------------------------------------------------------------

class Block:
    """This rank's part of a data set under a layout: rows [lo, hi) of the full arrays, or the
    empty block when this rank is the empty one."""

    def __init__(self, comm, n, layout, seed=0, rows=None):
        shape, where = layout
        size, rank = comm.Get_size(), comm.Get_rank()
        self.zero_zero = shape == "00"
        self.empty_rank = where % size if size > 1 else None
        holders = [r for r in range(size) if r != self.empty_rank]
        base = 0 if rows is None else rows[0]
        n = n if rows is None else rows[1] - rows[0]
        rng = np.random.default_rng(1000 + seed + 31 * size + n)
        inner = np.sort(rng.choice(np.arange(1, n), size=len(holders) - 1, replace=False)).tolist()
        cuts = [0, *inner, n]
        if rank == self.empty_rank:
            self.lo = self.hi = base
        else:
            i = holders.index(rank)
            self.lo, self.hi = base + cuts[i], base + cuts[i + 1]
        self.is_empty = rank == self.empty_rank

    def X(self, X):
        if self.is_empty and self.zero_zero:
            return np.empty((0, 0), dtype=X.dtype)
        return X[self.lo:self.hi]

    def rows(self, a):
        """y or sample_weight: always rows (an empty 1-D or (0, t) slice on the empty rank)."""
        return None if a is None else a[self.lo:self.hi]


def rounds(comm, n, shape, n_rounds=3, seed=0):
    """partial_fit rounds: consecutive row ranges; the empty rank of round k is rank k (mod size)."""
    cuts = np.linspace(0, n, n_rounds + 1).astype(int)
    return [Block(comm, n, (shape, k), seed=seed + k, rows=(cuts[k], cuts[k + 1]))
            for k in range(n_rounds)]


def empty_like_block(b, d, dtype):
    """What a method that takes rows gets from the empty rank after fit: the layout's empty X."""
    return np.empty((0, 0) if b.zero_zero else (0, d), dtype=dtype)


def reference(fn):
    """A scikit-learn reference computed once per process (every layout and rank count of a case
    shares it), on one thread: the ranks already share the cores."""
    cached = functools.lru_cache(maxsize=None)(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        with threadpool_limits(1):
            return cached(*args)

    return wrapper


# --- data -------------------------------------------------------------------------------------

def _frozen(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays if len(arrays) > 1 else arrays[0]


@functools.lru_cache(maxsize=None)
def scaled(name, dtype, n_rows=None):
    """A scikit-learn data set, standardised, as dtype (the first n_rows rows); read-only."""
    X, y = getattr(ds, f"load_{name}")(return_X_y=True)
    X, y = X[:n_rows], y[:n_rows]
    X = skpre.StandardScaler().fit_transform(X)
    return _frozen(np.ascontiguousarray(X, dtype=dtype), y)


@functools.lru_cache(maxsize=None)
def blobs(dtype):
    """Four well separated blobs: every reasonable start ends in the same optimum."""
    X, _ = ds.make_blobs(n_samples=240, n_features=3, centers=4, cluster_std=0.5, center_box=(-8, 8),
                         random_state=1)
    return _frozen(np.ascontiguousarray(X, dtype=dtype))


def weights(n, dtype, seed):
    return frac_weights(n, seed=seed).astype(dtype)


# --- PCA --------------------------------------------------------------------------------------

PCA_ATTRS = ["components_", "explained_variance_", "explained_variance_ratio_", "singular_values_",
             "mean_", "n_components_", "n_samples_", "noise_variance_", "n_features_in_"]
# (svd_solver, n_components): 60 x 13 rows, so that "auto" picks "full" as scikit-learn does
# (svd_solver, n_components, whiten): 60 x 13 rows, so that "auto" picks "full" as scikit-learn
# does. whiten changes transform and score, not the fit: it alternates over n_components.
PCA_CASES = [(s, k, k in (0.9, None)) for s in ("auto", "full", "covariance_eigh") for k in (2, 0.9, "mle", None)]
PCA_CASES += [("randomized", 2, False), ("randomized", 2, True)]


@reference
def sk_pca(k, whiten, dtype_name, n_rows):
    """scikit-learn's exact PCA of the (float64 cast of the) data, its score on all rows and the
    solver its "auto" picks."""
    X64 = scaled("wine", np.dtype(dtype_name), n_rows)[0].astype(np.float64)
    ref = skdec.PCA(k, svd_solver="full", whiten=whiten).fit(X64)
    ref.all_score = ref.score(X64)
    ref.auto_solver = skdec.PCA(k, whiten=whiten).fit(X64)._fit_svd_solver
    return ref


def assert_pca(est, ref, dtype, what):
    """est vs scikit-learn's exact PCA (float64, same numbers). Eigen-values carry rounding
    relative to the largest; components are compared where the spectrum gap is clear (1e-3 of the
    largest to both neighbours): elsewhere they may rotate within their eigenspace."""
    rtol = rtol_of(dtype)
    assert est.n_components_ == ref.n_components_, f"{what}: n_components_ {est.n_components_} vs {ref.n_components_}"
    assert est.n_samples_ == ref.n_samples_ and est.n_features_in_ == ref.n_features_in_, what
    assert est.components_.dtype == np.dtype(dtype), what
    ev = ref.explained_variance_
    assert_close(est.explained_variance_, ev, dtype, atol=rtol * ev[0], what=f"{what} explained_variance_")
    assert_close(est.explained_variance_ratio_, ref.explained_variance_ratio_, dtype, atol=rtol,
                 what=f"{what} explained_variance_ratio_")
    assert_close(est.singular_values_, ref.singular_values_, dtype, atol=rtol * ref.singular_values_[0],
                 what=f"{what} singular_values_")
    assert_close(est.noise_variance_, ref.noise_variance_, dtype, atol=rtol * ev[0], what=f"{what} noise_variance_")
    assert_close(est.mean_, ref.mean_, dtype, atol=rtol, what=f"{what} mean_")  # standardised columns
    for k in separated(ref):
        assert_close(est.components_[k], ref.components_[k], dtype, atol=rtol, what=f"{what} component {k}")


def separated(ref):
    """Indices of the components whose eigenvalue is 1e-3 of the largest away from both
    neighbours' (the others may rotate within their eigenspace)."""
    ev = ref.explained_variance_
    full = np.concatenate([[np.inf], ev, [0.0]])
    return [k for k in range(ref.n_components_)
            if min(full[k] - full[k + 1], full[k + 1] - full[k + 2]) > 1e-3 * ev[0]]


@pytest.mark.parametrize("dtype,layout", DTYPE_LAYOUTS)
@pytest.mark.parametrize("solver,k,whiten", PCA_CASES)
def test_pca(comm, solver, k, whiten, dtype, layout):
    X, _ = scaled("wine", dtype, 60)
    b = Block(comm, len(X), layout)
    Xl = b.X(X)
    X64 = X.astype(np.float64)
    est = PCA(k, svd_solver=solver, whiten=whiten, random_state=0)
    Z = est.fit_transform(Xl)  # collective fit, local transform
    score = est.score(Xl)  # collective
    check_replicated(est, PCA_ATTRS + ["_fit_svd_solver"], comm)
    what = f"PCA({k!r}, {solver}, whiten={whiten}) {np.dtype(dtype).name}"
    ref = sk_pca(k, whiten, np.dtype(dtype).name, 60)
    if solver == "auto":
        assert est._fit_svd_solver == ref.auto_solver == "full", est._fit_svd_solver
    assert_pca(est, ref, dtype, what)
    rtol = rtol_of(dtype)
    kk = ref.n_components_
    assert Z.shape == (b.hi - b.lo, kk) and Z.dtype == np.dtype(dtype), what
    if b.hi > b.lo:
        Zr = ref.transform(X64[b.lo:b.hi])
        cols = separated(ref)
        assert_close(Z[:, cols], Zr[:, cols], dtype, atol=rtol * max(1.0, np.abs(Zr).max()),
                     what=f"{what} transform")
        assert_close(est.score_samples(Xl), ref.score_samples(X64[b.lo:b.hi]), dtype, atol=rtol,
                     what=f"{what} score_samples")
    assert_close(score, ref.all_score, dtype, atol=rtol, what=f"{what} score")
    # local methods of the empty rank: empty results of the right width
    E = empty_like_block(b, X.shape[1], dtype)
    assert est.transform(E).shape == (0, kk)
    assert est.score_samples(E).shape == (0,)
    assert est.inverse_transform(np.empty((0, kk), dtype=dtype)).shape == (0, X.shape[1])


@pytest.mark.parametrize("shape", ["00", "0d"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,whiten", [(3, False), (None, True)])
def test_incremental_pca(comm, k, whiten, dtype, shape):
    X, _ = scaled("wine", dtype)
    X64 = X.astype(np.float64)
    est = IncrementalPCA(k, whiten=whiten)
    for b in rounds(comm, len(X), shape):
        est.partial_fit(b.X(X))
    check_replicated(est, PCA_ATTRS[:-3] + ["n_samples_seen_", "var_", "n_features_in_"], comm)
    b = Block(comm, len(X), (shape, 1))
    refit = IncrementalPCA(k, whiten=whiten)
    Z = refit.fit_transform(b.X(X))  # fit forgets the rounds: one merge
    check_replicated(refit, PCA_ATTRS[:-3] + ["n_samples_seen_", "var_"], comm)
    ref = sk_pca(k, whiten, np.dtype(dtype).name, None)  # exact, as spmdlearn's
    for name, model in (("rounds", est), ("fit", refit)):
        model.n_samples_ = model.n_samples_seen_
        assert_pca(model, ref, dtype, f"IncrementalPCA {name}")
        assert model.n_samples_seen_ == len(X)
        assert_close(model.var_, X64.var(axis=0), dtype, what=f"IncrementalPCA {name} var_")
    assert Z.shape == (b.hi - b.lo, ref.n_components_)


# --- KMeans -----------------------------------------------------------------------------------

KM_ATTRS = ["cluster_centers_", "inertia_", "n_iter_", "n_features_in_"]
# (init, algorithm, n_init, weighted)
KM_CASES = [
    ("k-means++", "lloyd", 1, False),
    ("k-means++", "elkan", 2, True),
    ("random", "lloyd", "auto", False),
    ("random", "elkan", 1, True),
    ("k-means||", "lloyd", 1, False),
    ("array", "lloyd", 1, False),
    ("array", "elkan", 1, True),
    ("callable", "lloyd", "auto", False),  # called on the first rank holding rows, broadcast
]


def km_init_rows(X, n_clusters, random_state):
    """A callable init: the KM_INIT rows of the whole data set, whatever block it is given."""
    return blobs(X.dtype)[KM_INIT]


KM_INIT = [0, 60, 120, 180]  # rows of the blobs used as the given init array


@reference
def sk_kmeans(kind, algorithm, dtype_name, weighted):
    """scikit-learn on all rows: its run from the init array ("array"), or its best of 10
    k-means++ runs ("best")."""
    X64 = blobs(np.dtype(dtype_name)).astype(np.float64)
    w = weights(len(X64), np.dtype(dtype_name), 2) if weighted else None
    if kind == "array":
        return skcluster.KMeans(4, init=X64[KM_INIT], n_init=1, tol=0.0, algorithm=algorithm).fit(X64, sample_weight=w)
    return skcluster.KMeans(4, n_init=10, random_state=0).fit(X64, sample_weight=w)


@pytest.mark.parametrize("dtype,layout", DTYPE_LAYOUTS)
@pytest.mark.parametrize("init,algorithm,n_init,weighted", KM_CASES)
def test_kmeans(comm, init, algorithm, n_init, weighted, dtype, layout):
    X = blobs(dtype)
    X64 = X.astype(np.float64)
    w = weights(len(X), dtype, 2) if weighted else None
    b = Block(comm, len(X), layout, seed=1)
    Xl, wl = b.X(X), b.rows(w)
    given = {"array": X[KM_INIT], "callable": km_init_rows}
    kw = dict(init=given.get(init, init), n_init=n_init, algorithm=algorithm, random_state=3, tol=0.0)
    est, again = KMeans(4, **kw), KMeans(4, **kw)
    labels = est.fit_predict(Xl, sample_weight=wl)  # collective fit, local labels
    dist = again.fit_transform(Xl, sample_weight=wl)  # the same fit, local distances
    score = est.score(Xl, sample_weight=wl)
    check_replicated(est, KM_ATTRS, comm)
    scores = comm.allgather(score)
    what = f"KMeans({init}, {algorithm}, n_init={n_init}) {np.dtype(dtype).name}"
    np.testing.assert_array_equal(again.cluster_centers_, est.cluster_centers_, err_msg=what)
    rtol = rtol_of(dtype)
    scale = np.abs(X64).max()
    C = est.cluster_centers_.astype(np.float64)
    with threadpool_limits(1):
        # scikit-learn from our centres: a fixed point (tol=0 ran to strict convergence), same inertia
        twin = skcluster.KMeans(4, init=C, n_init=1, tol=0.0, algorithm=algorithm).fit(X64, sample_weight=w)
    assert_close(C, twin.cluster_centers_, dtype, atol=rtol * scale, what=f"{what} fixed point")
    assert_close(est.inertia_, twin.inertia_, dtype, what=f"{what} inertia_")
    if init in given:  # the same start: scikit-learn's whole run
        ref = sk_kmeans("array", algorithm, np.dtype(dtype).name, weighted)
        assert_close(C, ref.cluster_centers_, dtype, atol=rtol * scale, what=f"{what} centres")
        assert est.n_iter_ == ref.n_iter_, what
    elif init != "random":  # well separated blobs: the global optimum, as scikit-learn's best of 10
        # ("random" draws k rows: with n_init runs, each lands in a local optimum with
        # probability 1 - 4!/4^4 on four blobs, in scikit-learn too)
        best = sk_kmeans("best", algorithm, np.dtype(dtype).name, weighted)
        assert est.inertia_ <= best.inertia_ * (1 + rtol), f"{what}: inertia {est.inertia_} vs best {best.inertia_}"
    assert len(set(scores)) == 1, scores
    sq = ((X64[:, None, :] - C[None]) ** 2).sum(-1)
    wa = np.ones(len(X)) if w is None else w.astype(np.float64)
    assert_close(score, -(wa * sq.min(1)).sum(), dtype, what=f"{what} score")
    local = sq[b.lo:b.hi]
    np.testing.assert_array_equal(est.labels_, local.argmin(1), err_msg=what)
    np.testing.assert_array_equal(labels, local.argmin(1), err_msg=what)
    assert dist.shape == (b.hi - b.lo, 4) and dist.dtype == np.dtype(dtype)
    assert_close(dist, np.sqrt(local), dtype, atol=rtol * scale, what=f"{what} fit_transform")
    E = empty_like_block(b, X.shape[1], dtype)
    assert est.predict(E).shape == (0,) and est.transform(E).shape == (0, 4)


# --- LogisticRegression -----------------------------------------------------------------------

LR_ATTRS = ["coef_", "intercept_", "classes_", "n_iter_", "n_features_in_"]
LR_OPTIONS = ["plain", "balanced", "dict", "sample_weight", "no_intercept", "warm_start"]


def logistic_problem(classes, option, dtype):
    """(X, y, sample_weight, class_weight keywords) on standardised iris; binary: versicolor
    against the rest (not separable)."""
    X, y = scaled("iris", dtype)
    if classes == "binary":
        y = (y == 1).astype(int)
    kw = {"balanced": {"class_weight": "balanced"}, "dict": {"class_weight": {0: 2.0, 1: 0.5}},
          "no_intercept": {"fit_intercept": False, "C": 0.5}}.get(option, {})
    w = weights(len(X), np.float64, 7) if option == "sample_weight" else None
    return X, y, w, kw


@reference
def sk_logistic(classes, option, dtype_name):
    """The optimum for the same numbers (in float64), by scikit-learn's Newton-CG at a tight
    tolerance, and its score on all rows."""
    X, y, w, kw = logistic_problem(classes, option, np.dtype(dtype_name))
    return sklm.LogisticRegression(solver="newton-cg", tol=1e-12, max_iter=1000, **kw).fit(
        X.astype(np.float64), y, sample_weight=w)


@pytest.mark.parametrize("dtype,layout", DTYPE_LAYOUTS_2)
@pytest.mark.parametrize("option", LR_OPTIONS)
@pytest.mark.parametrize("classes", ["binary", "multinomial"])
@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg"])
def test_logistic_regression(comm, solver, classes, option, dtype, layout):
    X, y, w, kw = logistic_problem(classes, option, dtype)
    b = Block(comm, len(X), layout, seed=2)
    Xl, yl, wl = b.X(X), b.rows(y), b.rows(w)
    est = LogisticRegression(solver=solver, tol=1e-8, max_iter=1000, warm_start=option == "warm_start", **kw)
    est.fit(Xl, yl, sample_weight=wl)
    if option == "warm_start":  # again, from the optimum of the first fit
        first_iter = est.n_iter_[0]
        est.fit(Xl, yl, sample_weight=wl)
    score = est.score(Xl, yl, sample_weight=wl)
    check_replicated(est, LR_ATTRS, comm)
    scores = comm.allgather(score)
    what = f"LogisticRegression({solver}, {classes}, {option}) {np.dtype(dtype).name}"
    ref = sk_logistic(classes, option, np.dtype(dtype).name)
    assert est.coef_.dtype == np.dtype(dtype) and est.coef_.shape == ref.coef_.shape, what
    np.testing.assert_array_equal(est.classes_, ref.classes_)
    theta = np.hstack([est.coef_, est.intercept_[:, None]])
    theta_ref = np.hstack([ref.coef_, ref.intercept_[:, None]])
    # an optimum found to max|gradient| <= tol: the error is relative to the largest coefficient
    assert_close(theta, theta_ref, dtype, atol=10 * rtol_of(dtype) * np.abs(theta_ref).max(), what=f"{what} coef")
    assert len(set(scores)) == 1, scores
    # score: the weighted accuracy over all rows of this model's own predictions
    assert_close(score, accuracy_score(y, est.predict(X), sample_weight=w), np.float64, what=f"{what} score")
    if option == "warm_start":
        assert est.n_iter_[0] < first_iter, (est.n_iter_, first_iter)
    E = empty_like_block(b, X.shape[1], dtype)
    assert est.predict(E).shape == (0,) and est.predict_proba(E).shape == (0, len(ref.classes_))


# --- LinearRegression / Ridge -----------------------------------------------------------------

LIN_ATTRS = ["coef_", "intercept_", "n_features_in_"]
# y of all ranks: "1d" (n,); "2d" (n, 2) with the empty rank's y of shape (0, 2); "2d_empty_1d"
# (n, 2) with the empty rank's y of shape (0,) (it need not know the number of targets)
Y_KINDS = ["1d", "2d", "2d_empty_1d"]
SK_LINEAR = {"LinearRegression": sklm.LinearRegression, "Ridge": sklm.Ridge}


@functools.lru_cache(maxsize=None)
def linear_problem(dtype, y_kind):
    X, y = scaled("diabetes", dtype)
    y = y.astype(dtype)
    if y_kind != "1d":
        y = np.ascontiguousarray(np.c_[y, 0.5 * y + 30.0 * X[:, 0]], dtype=dtype)
    return X, _frozen(y)


@reference
def sk_linear(name, fit_intercept, y_kind, weight_seed, dtype_name):
    """scikit-learn on all rows (float64 of the same numbers) and its score there."""
    X, y = linear_problem(np.dtype(dtype_name), y_kind)
    X, y = X.astype(np.float64), y.astype(np.float64)
    w = None if weight_seed is None else weights(len(X), np.dtype(dtype_name), weight_seed)
    ref = SK_LINEAR[name](fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
    ref.all_score = ref.score(X, y, sample_weight=w)
    return ref


def local_y(b, y, y_kind):
    if b.is_empty and y_kind == "2d_empty_1d":
        return np.empty(0, dtype=y.dtype)
    return b.rows(y)


def assert_linear(est, ref, y, dtype, what):
    rtol = rtol_of(dtype)
    assert est.coef_.dtype == np.dtype(dtype) and est.coef_.shape == ref.coef_.shape, what
    assert np.shape(est.intercept_) == np.shape(ref.intercept_), what
    # standardised diabetes: cond(X) ~ 30, the normal equations lose nothing at these tolerances;
    # values near 0 round relative to y's scale
    ys = np.abs(y.astype(np.float64)).max()
    assert_close(est.coef_, ref.coef_, dtype, atol=rtol * ys, what=f"{what} coef_")
    assert_close(est.intercept_, ref.intercept_, dtype, atol=rtol * ys, what=f"{what} intercept_")


# LinearRegression: every combination; Ridge (the same merge and score, another solve): each y
# kind with and without intercept and weights
LIN_CASES = [pytest.param(LinearRegression, icpt, y_kind, weighted,
                          id=f"ols-{'icpt' if icpt else 'no_icpt'}-{y_kind}-{'w' if weighted else 'no_w'}")
             for icpt in (True, False) for y_kind in Y_KINDS for weighted in (False, True)]
LIN_CASES += [pytest.param(Ridge, icpt, y_kind, icpt,
                           id=f"ridge-{'icpt-w' if icpt else 'no_icpt-no_w'}-{y_kind}")
              for icpt in (True, False) for y_kind in Y_KINDS]


@pytest.mark.parametrize("dtype,layout", DTYPE_LAYOUTS_2)
@pytest.mark.parametrize("cls,fit_intercept,y_kind,weighted", LIN_CASES)
def test_linear(comm, cls, fit_intercept, y_kind, weighted, dtype, layout):
    X, y = linear_problem(dtype, y_kind)
    w = weights(len(X), dtype, 3) if weighted else None
    b = Block(comm, len(X), layout, seed=3)
    Xl, yl, wl = b.X(X), local_y(b, y, y_kind), b.rows(w)
    est = cls(fit_intercept=fit_intercept).fit(Xl, yl, sample_weight=wl)
    score = est.score(Xl, yl, sample_weight=wl)
    check_replicated(est, LIN_ATTRS, comm)
    scores = comm.allgather(score)
    what = f"{cls.__name__}(fit_intercept={fit_intercept}) y {y_kind} w {weighted} {np.dtype(dtype).name}"
    ref = sk_linear(cls.__name__, fit_intercept, y_kind, 3 if weighted else None, np.dtype(dtype).name)
    assert_linear(est, ref, y, dtype, what)
    assert len(set(scores)) == 1, scores
    assert_close(score, ref.all_score, dtype, atol=rtol_of(dtype), what=f"{what} score")
    E = empty_like_block(b, X.shape[1], dtype)
    assert est.predict(E).shape == (0,) + ref.coef_.shape[:-1]


@pytest.mark.parametrize("dtype,shape", [pytest.param(np.float64, "00", id="f64-00"),
                                         pytest.param(np.float32, "0d", id="f32-0d")])
@pytest.mark.parametrize("y_kind", Y_KINDS)
@pytest.mark.parametrize("cls,batch", [(IncrementalLinearRegression, "LinearRegression"),
                                       (IncrementalRidge, "Ridge")], ids=["ols", "ridge"])
def test_incremental_linear(comm, cls, batch, y_kind, dtype, shape):
    X, y = linear_problem(dtype, y_kind)
    w = weights(len(X), dtype, 4)
    est = cls()
    for b in rounds(comm, len(X), shape, seed=4):
        est.partial_fit(b.X(X), local_y(b, y, y_kind), sample_weight=b.rows(w))
    b = Block(comm, len(X), (shape, 1), seed=5)
    score = est.score(b.X(X), local_y(b, y, y_kind), sample_weight=b.rows(w))
    refit = cls().fit(b.X(X), local_y(b, y, y_kind), sample_weight=b.rows(w))
    check_replicated(est, LIN_ATTRS + ["n_samples_seen_"], comm)
    check_replicated(refit, LIN_ATTRS + ["n_samples_seen_"], comm)
    ref = sk_linear(batch, True, y_kind, 4, np.dtype(dtype).name)
    for name, model in (("rounds", est), ("fit", refit)):
        assert_linear(model, ref, y, dtype, f"{cls.__name__} {name} y {y_kind}")
        assert model.n_samples_seen_ == len(X)
    assert_close(score, ref.all_score, dtype, atol=rtol_of(dtype), what="score")


# --- BasicStatistics --------------------------------------------------------------------------

# (result_options, weighted)
BS_CASES = [
    pytest.param("all", False, id="all"),
    pytest.param("all", True, id="all-weighted"),
    pytest.param(["mean", "variance"], False, id="mean_variance"),
    pytest.param(["min", "max", "sum", "sum_squares"], True, id="min_max_sums-weighted"),
    pytest.param("standard_deviation", False, id="std"),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options,weighted", BS_CASES)
def test_basic_statistics(comm, options, weighted, dtype, layout):
    X, _ = scaled("wine", dtype)
    X = X + np.arange(X.shape[1], dtype=dtype)  # means away from 0: variation_ is meaningful
    w = weights(len(X), dtype, 5) if weighted else None
    b = Block(comm, len(X), layout, seed=5)
    est = BasicStatistics(result_options=options).fit(b.X(X), sample_weight=b.rows(w))
    names = _bs_names(options)
    check_replicated(est, [n + "_" for n in names] + ["n_samples_seen_", "n_features_in_"], comm)
    assert_basic_statistics(est, X, w, dtype, names=names, what=f"BasicStatistics {options}")


def _bs_names(options):
    from spmd_helpers import BS_NAMES

    if options == "all":
        return BS_NAMES
    return [options] if isinstance(options, str) else list(options)


@pytest.mark.parametrize("shape", ["00", "0d"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_incremental_basic_statistics(comm, weighted, dtype, shape):
    X, _ = scaled("wine", dtype)
    X = X + np.arange(X.shape[1], dtype=dtype)
    w = weights(len(X), dtype, 6) if weighted else None
    est = IncrementalBasicStatistics()
    for b in rounds(comm, len(X), shape, seed=6):
        est.partial_fit(b.X(X), sample_weight=b.rows(w))
    b = Block(comm, len(X), (shape, 1), seed=7)
    refit = IncrementalBasicStatistics().fit(b.X(X), sample_weight=b.rows(w))
    from spmd_helpers import BS_NAMES

    for model in (est, refit):
        check_replicated(model, [n + "_" for n in BS_NAMES] + ["n_samples_seen_"], comm)
    for name, model in (("rounds", est), ("fit", refit)):
        assert_basic_statistics(model, X, w, dtype, what=f"IncrementalBasicStatistics {name}")


# --- EmpiricalCovariance ----------------------------------------------------------------------

COV_ATTRS = ["covariance_", "location_", "precision_", "n_features_in_"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("assume_centered", [False, True], ids=["centred", "assume_centered"])
def test_empirical_covariance(comm, assume_centered, dtype, layout):
    X, _ = scaled("wine", dtype)
    b = Block(comm, len(X), layout, seed=8)
    est = EmpiricalCovariance(assume_centered=assume_centered).fit(b.X(X))
    score = est.score(b.X(X))
    check_replicated(est, COV_ATTRS, comm)
    scores = comm.allgather(score)
    assert_covariance(est, X, dtype, assume_centered=assume_centered, what="EmpiricalCovariance")
    assert len(set(scores)) == 1, scores
    assert_close(score, ref_score(est, X), np.float64, atol=rtol_of(dtype) * abs(ref_score(est, X)),
                 what="EmpiricalCovariance score")
    m = est.mahalanobis(b.X(X))
    assert m.shape == (b.hi - b.lo,)


@pytest.mark.parametrize("shape", ["00", "0d"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("assume_centered", [False, True], ids=["centred", "assume_centered"])
def test_incremental_empirical_covariance(comm, assume_centered, dtype, shape):
    X, _ = scaled("wine", dtype)
    est = IncrementalEmpiricalCovariance(assume_centered=assume_centered)
    for b in rounds(comm, len(X), shape, seed=9):
        est.partial_fit(b.X(X))
    b = Block(comm, len(X), (shape, 1), seed=10)
    score = est.score(b.X(X))
    check_replicated(est, COV_ATTRS, comm)
    assert_covariance(est, X, dtype, assume_centered=assume_centered, what="IncrementalEmpiricalCovariance")
    assert_close(score, ref_score(est, X), np.float64, atol=rtol_of(dtype) * abs(ref_score(est, X)),
                 what="IncrementalEmpiricalCovariance score")


# --- scalers ----------------------------------------------------------------------------------

SS_ATTRS = ["mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"]
MA_ATTRS = ["max_abs_", "scale_", "n_samples_seen_", "n_features_in_"]


def _same_attributes(est, ref, names, dtype, what):
    for name in names:
        got, exp = getattr(est, name), getattr(ref, name)
        assert (got is None) == (exp is None), f"{what} {name}: {got!r} vs {exp!r}"
        if exp is not None:
            assert_close(got, exp, dtype, atol=rtol_of(dtype), what=f"{what} {name}")


# every with_mean/with_std pair; sample weights with each, and without for the default
SS_CASES = [(True, True, False), (True, True, True), (True, False, True), (False, True, True), (False, False, True)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_mean,with_std,weighted", SS_CASES)
def test_standard_scaler(comm, with_mean, with_std, weighted, dtype, layout):
    X, _ = scaled("wine", dtype)
    X = X * np.linspace(0.5, 3.0, X.shape[1]).astype(dtype) + 2.0
    w = weights(len(X), dtype, 11) if weighted else None
    b = Block(comm, len(X), layout, seed=11)
    kw = dict(with_mean=with_mean, with_std=with_std)
    est = StandardScaler(**kw).fit(b.X(X), sample_weight=b.rows(w))
    Z = StandardScaler(**kw).fit_transform(b.X(X), sample_weight=b.rows(w))
    inc = StandardScaler(**kw)
    for r in rounds(comm, len(X), layout[0], seed=12):
        inc.partial_fit(r.X(X), sample_weight=r.rows(w))
    for model in (est, inc):
        check_replicated(model, SS_ATTRS, comm)
    ref = skpre.StandardScaler(**kw).fit(X, sample_weight=w)
    what = f"StandardScaler({kw}) w {weighted}"
    if with_mean or with_std:
        for model in (est, inc):
            assert_standard_scaler(model, ref, X, dtype, what=what)
    _same_attributes(inc, est, ["mean_", "var_", "scale_", "n_samples_seen_"], dtype, f"{what} rounds")
    assert Z.shape == (b.hi - b.lo, X.shape[1])
    if len(Z):
        assert_close(Z, ref.transform(X[b.lo:b.hi]), dtype, atol=rtol_of(dtype) * 10, what=f"{what} fit_transform")
    E = empty_like_block(b, X.shape[1], dtype)
    assert est.transform(E).shape == (0, X.shape[1]) and est.inverse_transform(E).shape == (0, X.shape[1])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_abs_scaler(comm, dtype, layout):
    X, _ = scaled("wine", dtype)
    X = X * np.linspace(0.5, 3.0, X.shape[1]).astype(dtype)
    b = Block(comm, len(X), layout, seed=13)
    est = MaxAbsScaler().fit(b.X(X))
    Z = MaxAbsScaler().fit_transform(b.X(X))
    inc = MaxAbsScaler()
    for r in rounds(comm, len(X), layout[0], seed=14):
        inc.partial_fit(r.X(X))
    for model in (est, inc):
        check_replicated(model, MA_ATTRS, comm)
    ref = skpre.MaxAbsScaler().fit(X)
    for model in (est, inc):
        _same_attributes(model, ref, ["max_abs_", "scale_", "n_samples_seen_"], dtype, "MaxAbsScaler")
        assert model.max_abs_.dtype == ref.max_abs_.dtype
    assert Z.shape[0] == b.hi - b.lo
    if len(Z):
        assert_close(Z, ref.transform(X[b.lo:b.hi]), dtype, what="MaxAbsScaler fit_transform")
    E = empty_like_block(b, X.shape[1], dtype)
    assert est.transform(E).shape == (0, X.shape[1]) and est.inverse_transform(E).shape == (0, X.shape[1])
