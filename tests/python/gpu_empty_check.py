"""GPU: one rank without rows, passing an empty block of shape (0, 0) or (0, d) (a script, not a
pytest module; issue #16, item 1, on the device paths).

    mpirun -n 2 python tests/python/gpu_empty_check.py      (ranks may share one GPU)

Every rank builds the same small data sets, keeps its uneven block of rows and fits every
estimator on its GPU (a cupy block, and device="cuda" with the numpy block) while one rank passes
an empty block: rank 0 a (0, 0) one, then the last rank a (0, d) one. fit, partial_fit (two
rounds, the empty rank changing) and score are collective. Each GPU model is compared with the
CPU model fitted on the same numpy blocks -- the CPU path is compared with scikit-learn by
tests/python/spmd/test_reliability_empty.py -- at rtol 1e-7 (float64) or 1e-4 (float32)
relative to each attribute's largest value, and must be identical on every rank; the local
methods of the empty rank must return empty arrays of the right width.

Rank 0 prints one line per case and ``GPU EMPTY CHECK OK ranks=N`` at the end; a failure on any
rank is printed and the job exits 1. Run it under a timeout all the same.
"""
from __future__ import annotations

import sys
import traceback

import numpy as np
import sklearn.datasets as ds
from mpi4py import MPI
from sklearn.preprocessing import StandardScaler as SkStandardScaler

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
RTOL = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-4}
FAILURES = []


def log(msg):
    if RANK == 0:
        print(msg, flush=True)


def select_gpu():
    import cupy as cp

    node = COMM.Split_type(MPI.COMM_TYPE_SHARED, key=RANK)
    local = node.Get_rank()
    node.Free()
    cp.cuda.Device(local % cp.cuda.runtime.getDeviceCount()).use()
    return cp


cp = select_gpu()


# --- data and layouts -------------------------------------------------------------------------

def data(name, dtype):
    X, y = getattr(ds, f"load_{name}")(return_X_y=True)
    return np.ascontiguousarray(SkStandardScaler().fit_transform(X), dtype=dtype), y


def bounds(n, empty, seed=0):
    """(lo, hi) of this rank's block: the ranks other than ``empty`` share the rows unevenly."""
    holders = [r for r in range(SIZE) if r != empty]
    rng = np.random.default_rng(100 + seed + n)
    cuts = [0, *np.sort(rng.choice(np.arange(1, n), size=len(holders) - 1, replace=False)).tolist(), n]
    if RANK == empty:
        return 0, 0
    i = holders.index(RANK)
    return cuts[i], cuts[i + 1]


class Layout:
    """The empty rank and its block's shape."""

    def __init__(self, empty, zero_zero):
        self.empty, self.zero_zero = empty, zero_zero
        self.name = f"rank {empty} passes ({'0, 0' if zero_zero else '0, d'})"

    def host(self, X, seed=0):
        lo, hi = bounds(len(X), self.empty, seed)
        if RANK == self.empty and self.zero_zero:
            return np.empty((0, 0), dtype=X.dtype)
        return np.ascontiguousarray(X[lo:hi])

    def rows(self, a, seed=0):
        lo, hi = bounds(len(a), self.empty, seed)
        return np.ascontiguousarray(a[lo:hi])


# --- checks -----------------------------------------------------------------------------------

def fingerprint(v):
    if isinstance(v, np.ndarray):
        return (v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, np.generic):
        return (v.dtype.str, v.tobytes())
    return repr(v)


def run(what, collective_part, check):
    """collective_part() on every rank (fits, scores: the library raises on every rank alike),
    then the replicated attributes are gathered, then check(result) locally. Any failure is
    recorded with the case's name."""
    try:
        result, models, attrs = collective_part()
    except Exception:  # noqa: BLE001
        FAILURES.append(f"{what}: {traceback.format_exc(limit=4)}")
        log(f"FAIL {what}")
        return
    gathered = COMM.allgather([{a: fingerprint(getattr(m, a)) for a in attrs} for m in models])
    try:
        for r, g in enumerate(gathered):
            assert g == gathered[0], f"attributes differ between rank 0 and rank {r}"
        check(result)
    except Exception:  # noqa: BLE001
        FAILURES.append(f"{what} (rank {RANK}): {traceback.format_exc(limit=4)}")
        log(f"FAIL {what}")
        return
    log(f"ok   {what}")


def close(got, exp, dtype, what, scale=0.0):
    """|got - exp| <= rtol * max(|exp|.max(), scale): ``scale`` for values that are rounding noise
    of a larger quantity (the mean of standardised columns: noise of the data's scale)."""
    got = np.asarray(cp.asnumpy(got) if isinstance(got, cp.ndarray) else got, dtype=np.float64)
    exp = np.asarray(exp, dtype=np.float64)
    assert got.shape == exp.shape, f"{what}: shape {got.shape} vs {exp.shape}"
    scale = max(float(np.abs(exp).max()) if exp.size else 0.0, scale, 1e-300)
    err = float(np.abs(got - exp).max()) if exp.size else 0.0
    assert err <= RTOL[np.dtype(dtype)] * scale, f"{what}: differs by {err:.3g} (scale {scale:.3g})"


def same_model(gpu, cpu, attrs, dtype, what, scales=None):
    for a in attrs:
        g, c = getattr(gpu, a), getattr(cpu, a)
        if isinstance(c, np.ndarray) and c.dtype.kind == "f" or isinstance(c, float):
            close(g, c, dtype, f"{what} {a}", (scales or {}).get(a, 0.0))
        else:
            assert np.array_equal(np.asarray(g), np.asarray(c)), f"{what} {a}: {g!r} vs {c!r}"


# --- cases ------------------------------------------------------------------------------------

def pca_cases(lay, dtype):
    from spmdlearn.decomposition import PCA, IncrementalPCA

    X, _ = data("wine", dtype)
    data_scale = float(np.abs(X).max())  # standardised: the means are rounding noise of this
    Xh = lay.host(X)
    Xg = cp.asarray(Xh)
    attrs = ["components_", "explained_variance_", "singular_values_", "mean_", "noise_variance_",
             "n_components_", "n_samples_"]
    for solver in ("covariance_eigh", "full", "randomized"):
        def fits(solver=solver):
            kw = dict(n_components=3, svd_solver=solver, random_state=0)
            g, h, c = PCA(**kw).fit(Xg), PCA(device="cuda", **kw), PCA(**kw).fit(Xh)
            h.fit(Xh)
            score_h, score_c = h.score(Xh), c.score(Xh)
            return (g.transform(Xg), score_h, score_c, g, h, c), [g, h], attrs

        def check(res, solver=solver):
            Z, score_h, score_c, g, h, c = res
            for m, how in ((g, "cupy"), (h, "device='cuda'")):
                same_model(m, c, attrs, dtype, f"PCA {solver} {how}", {"mean_": data_scale})
            close(score_h, score_c, dtype, "score")
            assert isinstance(Z, cp.ndarray) and Z.shape == (len(Xh), 3), Z.shape
            close(Z, c.transform(Xh), dtype, "transform")

        run(f"PCA({solver}) {np.dtype(dtype).name} {lay.name}", fits, check)

    def rounds():
        g, c = IncrementalPCA(3), IncrementalPCA(3)
        for k, other in enumerate((lay, Layout((lay.empty + 1) % SIZE, lay.zero_zero))):
            part = X[: len(X) // 2] if k == 0 else X[len(X) // 2:]
            b = other.host(part, seed=k)
            g.partial_fit(cp.asarray(b))
            c.partial_fit(b)
        return (g, c), [g], attrs[:-1] + ["n_samples_seen_", "var_"]

    run(f"IncrementalPCA rounds {np.dtype(dtype).name} {lay.name}", rounds,
        lambda r: same_model(r[0], r[1], attrs[:-1] + ["n_samples_seen_", "var_"], dtype, "IncrementalPCA",
                             {"mean_": data_scale}))


def kmeans_cases(lay, dtype):
    from spmdlearn.cluster import KMeans

    X, _ = ds.make_blobs(n_samples=240, n_features=3, centers=4, cluster_std=0.5, random_state=1)
    X = X.astype(dtype)
    Xh = lay.host(X)
    Xg = cp.asarray(Xh)
    init = X[[0, 60, 120, 180]]
    attrs = ["cluster_centers_", "inertia_", "n_iter_"]

    def fits():
        g, c = KMeans(4, init=init, n_init=1, tol=0.0), KMeans(4, init=init, n_init=1, tol=0.0)
        labels = g.fit_predict(Xg)
        c.fit(Xh)
        return (g.score(Xg), c.score(Xh), labels, g.transform(Xg), g.predict(Xg), g, c), [g], attrs

    def check(r):
        sg, sc, labels, dist, pred, g, c = r
        same_model(g, c, attrs, dtype, "KMeans")
        close(sg, sc, dtype, "score")
        assert np.array_equal(np.asarray(labels), c.labels_), "labels_"
        assert pred.shape == (len(Xh),) and dist.shape == (len(Xh), 4), (pred.shape, dist.shape)
        close(dist, c.transform(Xh), dtype, "transform")

    run(f"KMeans {np.dtype(dtype).name} {lay.name}", fits, check)


def linear_cases(lay, dtype):
    from spmdlearn.linear_model import IncrementalLinearRegression, LinearRegression, LogisticRegression, Ridge

    X, y = data("diabetes", dtype)
    Y = np.ascontiguousarray(np.c_[y, 0.5 * y + 30.0 * X[:, 0]], dtype=dtype)
    Xh = lay.host(X)
    for cls in (LinearRegression, Ridge):
        for yk in ("1d", "2d_empty_1d"):
            yy = y.astype(dtype) if yk == "1d" else Y
            yh = lay.rows(yy)
            if RANK == lay.empty and yk == "2d_empty_1d":
                yh = np.empty(0, dtype=dtype)  # it need not know the number of targets

            def fits(cls=cls, yh=yh):
                g, c = cls().fit(cp.asarray(Xh), cp.asarray(yh)), cls().fit(Xh, yh)
                sg, sc = g.score(cp.asarray(Xh), cp.asarray(yh)), c.score(Xh, yh)
                return (sg, sc, g.predict(cp.asarray(Xh)), g, c), [g], ["coef_", "intercept_"]

            def check(r):
                sg, sc, pred, g, c = r
                same_model(g, c, ["coef_", "intercept_"], dtype, cls.__name__)
                close(sg, sc, dtype, "score")
                assert pred.shape[0] == len(Xh)

            run(f"{cls.__name__} y {yk} {np.dtype(dtype).name} {lay.name}", fits, check)

    def rounds():
        g, c = IncrementalLinearRegression(), IncrementalLinearRegression()
        for k, other in enumerate((lay, Layout((lay.empty + 1) % SIZE, lay.zero_zero))):
            part = slice(0, len(X) // 2) if k == 0 else slice(len(X) // 2, len(X))
            b, yb = other.host(X[part], seed=k), other.rows(y[part].astype(dtype), seed=k)
            g.partial_fit(cp.asarray(b), cp.asarray(yb))
            c.partial_fit(b, yb)
        return (g, c), [g], ["coef_", "intercept_", "n_samples_seen_"]

    run(f"IncrementalLinearRegression rounds {np.dtype(dtype).name} {lay.name}", rounds,
        lambda r: same_model(r[0], r[1], ["coef_", "intercept_", "n_samples_seen_"], dtype, "rounds"))

    Xi, yi = data("iris", dtype)
    Xih, yih = lay.host(Xi), lay.rows(yi)

    def logistic():
        g = LogisticRegression(tol=1e-8, max_iter=500).fit(cp.asarray(Xih), cp.asarray(yih))
        c = LogisticRegression(tol=1e-8, max_iter=500).fit(Xih, yih)
        sg, sc = g.score(cp.asarray(Xih), cp.asarray(yih)), c.score(Xih, yih)
        return (sg, sc, g.predict(cp.asarray(Xih)), g, c), [g], ["coef_", "intercept_", "classes_"]

    def check_logistic(r):
        sg, sc, pred, g, c = r
        # the GPU loss sums in another order: the optimum agrees to the stopping tolerance
        for a in ("coef_", "intercept_"):
            got, exp = np.asarray(getattr(g, a), np.float64), np.asarray(getattr(c, a), np.float64)
            assert np.abs(got - exp).max() <= 1e-4 * np.abs(exp).max(), a
        assert abs(sg - sc) <= 1.0 / len(yi), (sg, sc)
        assert pred.shape == (len(Xih),)

    run(f"LogisticRegression {np.dtype(dtype).name} {lay.name}", logistic, check_logistic)


def statistics_cases(lay, dtype):
    from spmdlearn.basic_statistics import BasicStatistics, IncrementalBasicStatistics
    from spmdlearn.covariance import EmpiricalCovariance, IncrementalEmpiricalCovariance
    from spmdlearn.preprocessing import MaxAbsScaler, StandardScaler

    X, _ = data("wine", dtype)
    X = X + np.arange(X.shape[1], dtype=dtype)
    Xh = lay.host(X)
    Xg = cp.asarray(Xh)
    second = Layout((lay.empty + 1) % SIZE, lay.zero_zero)
    half = len(X) // 2
    b1, b2 = lay.host(X[:half], seed=1), second.host(X[half:], seed=2)
    specs = [
        (BasicStatistics, {}, ["mean_", "variance_", "min_", "max_", "sum_squares_centered_"]),
        (IncrementalBasicStatistics, {}, ["mean_", "variance_", "min_", "max_", "n_samples_seen_"]),
        (EmpiricalCovariance, {}, ["covariance_", "location_", "precision_"]),
        (IncrementalEmpiricalCovariance, {"assume_centered": True}, ["covariance_", "precision_"]),
        (StandardScaler, {}, ["mean_", "var_", "scale_", "n_samples_seen_"]),
        (MaxAbsScaler, {}, ["max_abs_", "scale_", "n_samples_seen_"]),
    ]
    for cls, kw, attrs in specs:
        incremental = hasattr(cls, "partial_fit")

        def fits(cls=cls, kw=kw, attrs=attrs, incremental=incremental):
            g, c = cls(**kw), cls(**kw)
            if incremental:
                for b in (b1, b2):
                    g.partial_fit(cp.asarray(b))
                    c.partial_fit(b)
            else:
                g.fit(Xg)
                c.fit(Xh)
            extra = {}
            if hasattr(g, "score"):
                extra["score"] = (g.score(Xg), c.score(Xh))
            for local in ("mahalanobis", "transform"):  # local: the empty rank gets an empty result
                if hasattr(g, local):
                    extra[local] = (getattr(g, local)(Xg), getattr(c, local)(Xh))
            return (g, c, extra), [g], attrs

        def check(r, cls=cls, attrs=attrs):
            g, c, extra = r
            same_model(g, c, attrs, dtype, cls.__name__)
            for name, (got, exp) in extra.items():
                close(got, exp, dtype, f"{cls.__name__}.{name}")

        run(f"{cls.__name__}{'(' + str(kw) + ')' if kw else ''} {np.dtype(dtype).name} {lay.name}", fits, check)


def main():
    import spmdlearn

    if not spmdlearn.built_with_cuda():
        log("spmdlearn was built without CUDA")
        sys.exit(1)
    if SIZE < 2:
        log("needs at least 2 ranks")
        sys.exit(1)
    for lay in (Layout(0, True), Layout(SIZE - 1, False)):
        for dtype in (np.float64, np.float32):
            pca_cases(lay, dtype)
            kmeans_cases(lay, dtype)
            linear_cases(lay, dtype)
            statistics_cases(lay, dtype)
    everyone = COMM.allgather(FAILURES)
    if RANK == 0:
        for r, fl in enumerate(everyone):
            for f in fl:
                print(f"--- rank {r}: {f}", flush=True)
    if any(everyone):
        log(f"GPU EMPTY CHECK FAILED ranks={SIZE}: {sum(len(f) for f in everyone)} failure(s)")
        sys.exit(1)
    log(f"GPU EMPTY CHECK OK ranks={SIZE}")


if __name__ == "__main__":
    main()
