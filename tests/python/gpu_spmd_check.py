"""Multi-GPU SPMD check of the CUDA statistics path (a script, not a pytest module).

    mpirun -n 2 python tests/python/gpu_spmd_check.py
    mpirun -n 4 python tests/python/gpu_spmd_check.py

Every rank uses GPU (local rank % visible GPUs), builds the same fixed synthetic matrices, keeps
its own uneven contiguous block of rows as a cupy array on its GPU and fits collectively:
BasicStatistics (unweighted and with integer-valued cupy weights), IncrementalBasicStatistics
(two rounds), StandardScaler and MaxAbsScaler; also BasicStatistics(device="cuda") on the numpy
block. Two splits: every rank holds rows, and (with more than one rank) the last rank holds none.
Checks, on every rank:

- the fitted statistics equal numpy (scikit-learn for the scalers) on the full matrix, in float64:
  rtol 1e-10 for float64 data, 1e-5 for float32 data;
- every fitted attribute is a numpy array and is bitwise identical on all ranks (allgather);
- NaN on one rank's GPU block makes every rank raise ValueError naming that rank (no hang);
- out of GPU memory on the last rank only (its card filled with raw cudaMalloc, about 64 MiB
  left) makes BasicStatistics(device="cuda").fit of every rank's 512 MiB host block raise
  MemoryError on every rank, naming the last rank and the bytes it asked for; once the memory is
  freed the same fit works (and every case above runs after it).

Rank 0 prints one line per case and, at the end, ``GPU SPMD CHECK OK ranks=N``. Any failure on
any rank prints the reason and calls ``MPI.COMM_WORLD.Abort(1)``, so no rank waits forever and
mpirun exits non-zero. Run it under a timeout all the same (scripts/gpu-check.sh does).
"""
from __future__ import annotations

import os
import re
import sys
import traceback

import numpy as np
from mpi4py import MPI

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
NAMES = [
    "min", "max", "sum", "mean", "variance", "standard_deviation", "sum_squares",
    "sum_squares_centered", "second_order_raw_moment", "variation",
]
BS_ATTRS = [n + "_" for n in NAMES] + ["n_samples_seen_", "n_features_in_"]
SS_ATTRS = ["mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"]
MA_ATTRS = ["max_abs_", "scale_", "n_samples_seen_", "n_features_in_"]


def log(msg):
    if RANK == 0:
        print(msg, flush=True)


def fail(msg):
    """Report on this rank and take every rank down (a failure on one rank must not hang others)."""
    sys.stderr.write(f"[rank {RANK}/{SIZE}] GPU SPMD CHECK FAILED: {msg}\n")
    sys.stderr.flush()
    COMM.Abort(1)


# --- setup ------------------------------------------------------------------------------------

def local_rank():
    node = COMM.Split_type(MPI.COMM_TYPE_SHARED, key=RANK)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def select_gpu():
    import cupy as cp

    count = cp.cuda.runtime.getDeviceCount()
    if count < 1:
        raise RuntimeError("cupy sees no CUDA device")
    dev = local_rank() % count
    cp.cuda.Device(dev).use()
    return cp, dev, count


# --- data, sharding, references ---------------------------------------------------------------

def matrix(kind, n, d, dtype):
    """Fixed synthetic matrices, the same on every rank."""
    rng = np.random.default_rng([2026, n, d])
    j = np.arange(d)
    if kind == "mean1e4":  # large mean, tiny spread: catches naive sums of squares
        X = (1e4 + j) + 0.01 * (1.0 + j / d) * rng.standard_normal((n, d))
    else:  # column j ~ N(j + 1, (1 + 0.1 j)^2)
        X = (j + 1.0) + (1.0 + 0.1 * j) * rng.standard_normal((n, d))
    return np.ascontiguousarray(X, dtype=dtype)


def bounds(n, empty_last, seed=0):
    """(lo, hi) of this rank's uneven contiguous block; with empty_last the last rank gets none."""
    holders = SIZE - 1 if (empty_last and SIZE > 1) else SIZE
    rng = np.random.default_rng(777 + 31 * SIZE + n + 1000 * seed)
    if holders <= 1:
        cuts = [0, n]
    else:
        inner = np.sort(rng.choice(np.arange(1, n), size=holders - 1, replace=False))
        cuts = [0, *inner.tolist(), n]
    cuts += [n] * (SIZE + 1 - len(cuts))
    return int(cuts[RANK]), int(cuts[RANK + 1])


# --- checks -----------------------------------------------------------------------------------

def fingerprint(value):
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, np.ascontiguousarray(value).tobytes())
    if isinstance(value, np.generic):
        return (type(value).__name__, value.dtype.str, value.tobytes())
    return (type(value).__name__, repr(value))


def gather(est, attrs):
    """Collective: every rank's fingerprints of the attributes."""
    return COMM.allgather({a: fingerprint(getattr(est, a, "<missing>")) for a in attrs})


def check_replicated(gathered, attrs, what):
    for a in attrs:
        for r, g in enumerate(gathered):
            if g[a] != gathered[0][a]:
                raise AssertionError(f"{what}: {a} differs between rank 0 and rank {r}")


def check_numpy_attrs(est, attrs, what):
    for a in attrs:
        v = getattr(est, a)
        if a.startswith("n_"):
            continue
        if type(v) is not np.ndarray:
            raise AssertionError(f"{what}: {a} is {type(v).__module__}.{type(v).__name__}, not numpy.ndarray")


def max_rel(got, exp):
    got = np.asarray(got, dtype=np.float64)
    exp = np.asarray(exp, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(got - exp) / np.abs(exp)
    r[(got == exp)] = 0.0
    return float(np.nanmax(r)) if r.size else 0.0


def check_close(got, exp, rtol, what):
    got64 = np.asarray(got, dtype=np.float64)
    exp64 = np.asarray(exp, dtype=np.float64)
    if got64.shape != exp64.shape:
        raise AssertionError(f"{what}: shape {got64.shape} != {exp64.shape}")
    if not np.allclose(got64, exp64, rtol=rtol, atol=0.0, equal_nan=False):
        bad = np.argwhere(~np.isclose(got64, exp64, rtol=rtol, atol=0.0))[:3].ravel().tolist()
        raise AssertionError(
            f"{what}: max rel diff {max_rel(got64, exp64):.3g} > rtol {rtol:g} at {bad}: "
            f"got {got64[bad]}, expected {exp64[bad]}"
        )
    return max_rel(got64, exp64)


def run_case(cp, kind, shape, dtype, empty_last):
    from sklearn.preprocessing import MaxAbsScaler as SkMaxAbs
    from sklearn.preprocessing import StandardScaler as SkStandard

    from spmdlearn.basic_statistics import BasicStatistics, IncrementalBasicStatistics
    from spmdlearn.preprocessing import MaxAbsScaler, StandardScaler

    n, d = shape
    dtype = np.dtype(dtype)
    rtol = RTOL[dtype]
    X = matrix(kind, n, d, dtype)
    w = np.random.default_rng(5).integers(0, 4, size=n).astype(dtype)
    lo, hi = bounds(n, empty_last)
    Xl, wl = cp.asarray(X[lo:hi]), cp.asarray(w[lo:hi])
    what = f"{kind} {n}x{d} {dtype.name} {'last rank empty' if empty_last else 'all ranks hold rows'}"

    # every collective first (fits, then the allgathers), assertions after
    bs = BasicStatistics().fit(Xl)
    bsw = BasicStatistics().fit(Xl, sample_weight=wl)
    bs_host = BasicStatistics(device="cuda").fit(X[lo:hi])
    # Ranks may mix host and device blocks: even ranks pass numpy, odd ranks cupy.
    bs_mixed = BasicStatistics().fit(X[lo:hi] if RANK % 2 == 0 else Xl)
    inc = IncrementalBasicStatistics()
    mid_lo, mid_hi = bounds(n // 2, empty_last=False, seed=1)  # round 1: rows [0, n/2)
    inc.partial_fit(cp.asarray(X[mid_lo:mid_hi]))
    r2_lo, r2_hi = bounds(n - n // 2, empty_last, seed=2)      # round 2: rows [n/2, n)
    inc.partial_fit(cp.asarray(X[n // 2 + r2_lo: n // 2 + r2_hi]))
    ss = StandardScaler().fit(Xl)
    ma = MaxAbsScaler().fit(Xl)
    from spmdlearn.covariance import EmpiricalCovariance

    # LinearRegression on device shards (y from a fixed linear model), and host/device mixed
    from spmdlearn.linear_model import LinearRegression

    beta = np.linspace(-1.0, 1.0, d)
    yfull = (X.astype(np.float64) - X.astype(np.float64).mean(axis=0)) @ beta + 3.0
    yfull = yfull.astype(dtype)
    lin = LinearRegression().fit(Xl, cp.asarray(yfull[lo:hi]))
    lin_mixed = LinearRegression().fit(X[lo:hi] if RANK % 2 == 0 else Xl,
                                       yfull[lo:hi] if RANK % 2 == 0 else cp.asarray(yfull[lo:hi]))
    # LogisticRegression on device shards: labels from the sign of a linear score (3 classes)
    from spmdlearn.linear_model import LogisticRegression

    Xs = (X.astype(np.float64) - X.astype(np.float64).mean(axis=0)) / (X.astype(np.float64).std(axis=0) + 1e-12)
    Xs = Xs.astype(dtype)
    score3 = Xs.astype(np.float64) @ np.random.default_rng(9).normal(size=(d, 3))
    labels = np.argmax(score3 + np.random.default_rng(10).gumbel(size=score3.shape), axis=1)
    logit = LogisticRegression(tol=1e-10, max_iter=500).fit(cp.asarray(Xs[lo:hi]), cp.asarray(labels[lo:hi]))
    # PCA (covariance_eigh) on device shards
    from spmdlearn.decomposition import PCA

    pca = PCA(n_components=3, svd_solver="covariance_eigh").fit(Xl)
    pca_full = PCA(n_components=3, svd_solver="full").fit(Xl)  # TSQR: cuSOLVER QR per rank
    pca_rand = PCA(n_components=3, svd_solver="randomized", random_state=0).fit(Xl)
    pca_rand_host = PCA(n_components=3, svd_solver="randomized", random_state=0).fit(X[lo:hi])
    pca_mixed = PCA(n_components=3, svd_solver="full").fit(X[lo:hi] if RANK % 2 == 0 else Xl)
    # KMeans from given centres on device shards, and with host and device ranks mixed
    from spmdlearn.cluster import KMeans

    km_init = X[:5].astype(np.float64) + 0.25
    km = KMeans(5, init=km_init, n_init=1, tol=1e-6).fit(Xl)
    km_mixed = KMeans(5, init=km_init, n_init=1, tol=1e-6).fit(X[lo:hi] if RANK % 2 == 0 else Xl)
    # all ranks on GPUs: the d x d matrices merge over NCCL; mixed ranks merge on the host
    cov = EmpiricalCovariance(store_precision=False).fit(Xl)
    cov_host = EmpiricalCovariance(store_precision=False, device="cuda").fit(X[lo:hi])
    cov_mixed = EmpiricalCovariance(store_precision=False).fit(X[lo:hi] if RANK % 2 == 0 else Xl)
    COV_ATTRS = ["covariance_", "location_"]
    LIN_ATTRS = ["coef_", "intercept_"]
    PCA_ATTRS = ["components_", "explained_variance_"]
    gathered = {
        "PCA": (gather(pca, PCA_ATTRS), PCA_ATTRS),
        "KMeans": (gather(km, ["cluster_centers_"]), ["cluster_centers_"]),
        "KMeans, host and device blocks mixed": (gather(km_mixed, ["cluster_centers_"]), ["cluster_centers_"]),
        "PCA(full)": (gather(pca_full, PCA_ATTRS), PCA_ATTRS),
        "PCA(randomized)": (gather(pca_rand, PCA_ATTRS), PCA_ATTRS),
        "PCA(full), host and device blocks mixed": (gather(pca_mixed, PCA_ATTRS), PCA_ATTRS),
        "LogisticRegression": (gather(logit, LIN_ATTRS), LIN_ATTRS),
        "LinearRegression": (gather(lin, LIN_ATTRS), LIN_ATTRS),
        "LinearRegression, host and device blocks mixed": (gather(lin_mixed, LIN_ATTRS), LIN_ATTRS),
        "EmpiricalCovariance": (gather(cov, COV_ATTRS), COV_ATTRS),
        'EmpiricalCovariance(device="cuda") on numpy': (gather(cov_host, COV_ATTRS), COV_ATTRS),
        "EmpiricalCovariance, host and device blocks mixed": (gather(cov_mixed, COV_ATTRS), COV_ATTRS),
        "BasicStatistics": (gather(bs, BS_ATTRS), BS_ATTRS),
        "weighted BasicStatistics": (gather(bsw, BS_ATTRS), BS_ATTRS),
        'BasicStatistics(device="cuda") on numpy': (gather(bs_host, BS_ATTRS), BS_ATTRS),
        "BasicStatistics, host and device blocks mixed": (gather(bs_mixed, BS_ATTRS), BS_ATTRS),
        "IncrementalBasicStatistics": (gather(inc, BS_ATTRS), BS_ATTRS),
        "StandardScaler": (gather(ss, SS_ATTRS), SS_ATTRS),
        "MaxAbsScaler": (gather(ma, MA_ATTRS), MA_ATTRS),
    }

    for name, (g, attrs) in gathered.items():
        check_replicated(g, attrs, f"{what} {name}")
    ref, refw = reference(X), reference(X, w)
    worst = 0.0
    for est, r, name in ((bs, ref, "BasicStatistics"), (bsw, refw, "weighted BasicStatistics"),
                         (bs_host, ref, 'device="cuda"'), (bs_mixed, ref, "host/device mixed"),
                         (inc, ref, "IncrementalBasicStatistics")):
        check_numpy_attrs(est, [s + "_" for s in NAMES], f"{what} {name}")
        for s in NAMES:
            got = getattr(est, s + "_")
            if got.dtype != dtype:
                raise AssertionError(f"{what} {name}: {s}_ has dtype {got.dtype}, expected {dtype}")
            worst = max(worst, check_close(got, r[s], rtol, f"{what} {name} {s}_"))
        if est is not bsw and est.n_samples_seen_ != n:
            raise AssertionError(f"{what} {name}: n_samples_seen_ {est.n_samples_seen_} != {n}")

    ref_cov = np.cov(X.astype(np.float64), rowvar=False, bias=True)
    cscale = np.sqrt(np.outer(np.diag(ref_cov), np.diag(ref_cov)))
    for est, name in ((cov, "EmpiricalCovariance"), (cov_host, 'EmpiricalCovariance(device="cuda")'),
                      (cov_mixed, "EmpiricalCovariance mixed")):
        check_numpy_attrs(est, COV_ATTRS, f"{what} {name}")
        err = float((np.abs(est.covariance_ - ref_cov) / cscale).max())
        if err > max(rtol, 1e-10):
            raise AssertionError(f"{what} {name}: covariance_ off by {err:.3g} of sqrt(c_ii c_jj)")
        worst = max(worst, err)
    from sklearn.linear_model import LinearRegression as SkLinearRegression

    sk_lin = SkLinearRegression().fit(X.astype(np.float64), yfull.astype(np.float64))
    for est, name in ((lin, "LinearRegression"), (lin_mixed, "LinearRegression mixed")):
        err = float(np.linalg.norm(est.coef_ - sk_lin.coef_) / np.linalg.norm(sk_lin.coef_))
        if err > (1e-8 if dtype == np.float64 else 2e-3):
            raise AssertionError(f"{what} {name}: coef_ off by {err:.3g} (relative) from scikit-learn")
    from sklearn.decomposition import PCA as SkPCA

    sk_pca = SkPCA(n_components=3, svd_solver="full").fit(X.astype(np.float64))
    from sklearn.cluster import KMeans as SkKMeans

    sk_km = SkKMeans(5, init=km_init, n_init=1, tol=1e-6).fit(X.astype(np.float64))
    for est, name in ((km, "KMeans"), (km_mixed, "KMeans mixed")):
        if dtype == np.float64:  # the same trajectory: the same centres
            cerr = float(np.abs(est.cluster_centers_ - sk_km.cluster_centers_).max()
                         / np.abs(sk_km.cluster_centers_).max())
            if cerr > 1e-9:
                raise AssertionError(f"{what} {name}: cluster_centers_ off by {cerr:.3g} from scikit-learn")
        else:  # float32 rounding may move a few rows between clusters: compare the objective
            ierr = abs(est.inertia_ - sk_km.inertia_) / sk_km.inertia_
            if ierr > 1e-3:
                raise AssertionError(f"{what} {name}: inertia_ off by {ierr:.3g} from scikit-learn")
    # randomized is approximate: the GPU run must equal the host run of the same algorithm
    perr = float(np.max(np.abs(pca_rand.explained_variance_ - pca_rand_host.explained_variance_)
                        / pca_rand_host.explained_variance_[0]))
    if perr > (1e-9 if dtype == np.float64 else 1e-4):
        raise AssertionError(f"{what} PCA(randomized): explained_variance_ off by {perr:.3g} from the host path")
    for est, name in ((pca, "covariance_eigh"), (pca_full, "full"), (pca_mixed, "full, mixed")):
        perr = float(np.max(np.abs(est.explained_variance_ - sk_pca.explained_variance_)
                            / sk_pca.explained_variance_[0]))
        if perr > (1e-9 if dtype == np.float64 else 1e-4):
            raise AssertionError(f"{what} PCA({name}): explained_variance_ off by {perr:.3g} from scikit-learn")
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    sk_log = SkLogisticRegression(tol=1e-10, max_iter=500).fit(Xs.astype(np.float64), labels)
    perr = float(np.abs(logit.predict_proba(Xs) - sk_log.predict_proba(Xs.astype(np.float64))).max())
    if perr > 1e-4:
        raise AssertionError(f"{what} LogisticRegression: predict_proba off by {perr:.3g} from scikit-learn")
    sk_ss, sk_ma = SkStandard().fit(X), SkMaxAbs().fit(X)
    check_numpy_attrs(ss, SS_ATTRS, f"{what} StandardScaler")
    check_numpy_attrs(ma, MA_ATTRS, f"{what} MaxAbsScaler")
    # scikit-learn on the full matrix for scale_ semantics; mean/var against float64 numpy too
    X64 = X.astype(np.float64)
    worst = max(worst, check_close(ss.mean_, X64.mean(axis=0), rtol, f"{what} StandardScaler mean_"))
    worst = max(worst, check_close(ss.var_, X64.var(axis=0), rtol, f"{what} StandardScaler var_"))
    check_close(ss.scale_, sk_ss.scale_, max(rtol, 1e-7 if dtype == np.float64 else 1e-5),
                f"{what} StandardScaler scale_ vs scikit-learn")
    worst = max(worst, check_close(ma.max_abs_, np.abs(X64).max(axis=0), rtol, f"{what} MaxAbsScaler max_abs_"))
    check_close(ma.scale_, sk_ma.scale_, rtol, f"{what} MaxAbsScaler scale_ vs scikit-learn")
    if int(ss.n_samples_seen_) != n or int(ma.n_samples_seen_) != n:
        raise AssertionError(f"{what}: scaler n_samples_seen_ != {n}")
    log(f"ok  {what}: rows on this split {COMM.allgather(hi - lo)}, max rel diff vs numpy {worst:.2e}")


def check_nan_on_one_rank(cp):
    """NaN in one rank's GPU block: every rank raises ValueError naming that rank."""
    from spmdlearn.basic_statistics import BasicStatistics

    if SIZE < 2:
        return
    bad = SIZE - 1
    X = matrix("normal", 10_007, 16, np.float64)
    lo, hi = bounds(len(X), empty_last=False)
    Xl = cp.asarray(X[lo:hi])
    if RANK == bad:
        Xl[(hi - lo) // 2, 3] = cp.nan
    outcome = None
    try:
        BasicStatistics().fit(Xl)
    except Exception as exc:  # noqa: BLE001
        outcome = (type(exc).__name__, isinstance(exc, ValueError), str(exc))
    outcomes = COMM.allgather(outcome)
    for r, o in enumerate(outcomes):
        if o is None:
            raise AssertionError(f"NaN on rank {bad}: rank {r} did not raise")
        if not o[1]:
            raise AssertionError(f"NaN on rank {bad}: rank {r} raised {o[0]}, not ValueError: {o[2]}")
        if f"rank {bad}" not in o[2] or "nan" not in o[2].lower():
            raise AssertionError(f"NaN on rank {bad}: rank {r}'s message does not name rank {bad} and NaN: {o[2]!r}")
    log(f"ok  NaN on rank {bad}'s GPU block: every rank raised ValueError: {outcomes[0][2]}")


OOM_LEAVE = 64 << 20        # bytes left free on the exhausted GPU
OOM_SHAPE = (4_194_304, 16)  # every rank's host block: 512 MiB of float64


from gpu_helpers import grab_gpu_memory, release_gpu_memory  # noqa: E402 (tests/python)
from gpu_helpers import numpy_reference as reference  # noqa: E402


def check_oom_on_last_rank(cp):
    """The last rank's GPU is full: every rank's device="cuda" fit raises MemoryError naming the
    last rank; afterwards (memory freed) the same fit works on every rank."""
    from spmdlearn import _core
    from spmdlearn.basic_statistics import BasicStatistics

    bad = SIZE - 1
    rng = np.random.default_rng([4242, RANK])
    Xl = rng.standard_normal(OOM_SHAPE)
    Xl += np.arange(OOM_SHAPE[1]) + 1.0
    nbytes = Xl.nbytes
    gpu = _core.select_local_gpu()  # the GPU device="cuda" copies to on this rank
    where = COMM.allgather((MPI.Get_processor_name(), gpu, cp.cuda.runtime.getDevice()))
    if any(g < 0 for _, g, _ in where):
        raise AssertionError(f"out-of-memory case: spmdlearn selects no GPU on some rank: {where}")
    if any(g != c for _, g, c in where):
        log(f"note: spmdlearn's GPU differs from cupy's current GPU on some rank: {where}")
    # Ranks on the last rank's GPU fail too; the message names the first of them, the others after.
    sharing = [r for r, (h, g, _) in enumerate(where) if (h, g) == where[bad][:2]]
    first = sharing[0]

    ptrs, outcome = [], None
    try:
        free_left = None
        if RANK == bad:
            ptrs, free_left = grab_gpu_memory(cp, gpu, OOM_LEAVE)
        # also makes every fit start only once the last rank's memory is taken
        left = COMM.allgather(free_left)[bad]
        if left >= nbytes // 2:
            raise AssertionError(f"rank {bad} could not exhaust GPU {where[bad][1]}: {left} bytes still free")
        try:
            BasicStatistics(device="cuda").fit(Xl)
        except Exception as exc:  # noqa: BLE001
            outcome = (type(exc).__name__, isinstance(exc, MemoryError), str(exc))
    finally:
        if ptrs:
            release_gpu_memory(cp, gpu, ptrs)
    outcomes = COMM.allgather(outcome)
    what = f"GPU memory exhausted on rank {bad} (GPU {where[bad][1]}, {left} bytes left)"
    for r, o in enumerate(outcomes):
        if o is None:
            raise AssertionError(f"{what}: rank {r} did not raise")
        if not o[1]:
            raise AssertionError(f"{what}: rank {r} raised {o[0]}, not MemoryError: {o[2]}")
        msg = o[2]
        if msg != outcomes[0][2]:
            raise AssertionError(f"{what}: rank {r}'s message differs from rank 0's: {msg!r} vs {outcomes[0][2]!r}")
        if not msg.startswith(f"rank {first}: "):
            raise AssertionError(f"{what}: rank {r}'s message does not start with 'rank {first}: ': {msg!r}")
        if "out of GPU memory" not in msg:
            raise AssertionError(f"{what}: rank {r}'s message does not say 'out of GPU memory': {msg!r}")
        asked = re.search(r"asking for (\d+) bytes", msg)
        if asked is None or int(asked.group(1)) != nbytes:
            raise AssertionError(f"{what}: rank {r}'s message does not give the {nbytes} bytes asked: {msg!r}")
        too = re.search(r"\(ranks? ([0-9, ]+) failed too\)", msg)
        if first == bad and too is not None:
            raise AssertionError(f"{what}: rank {r}'s message names other failing ranks: {msg!r}")
        if first != bad and (too is None or str(bad) not in too.group(1).replace(" ", "").split(",")):
            raise AssertionError(f"{what}: rank {r}'s message does not name rank {bad}: {msg!r}")

    # The memory is back: the same fit works, is replicated and equals numpy on all blocks.
    est = BasicStatistics(device="cuda").fit(Xl)
    g = gather(est, BS_ATTRS)
    n = COMM.allreduce(len(Xl))
    total, lo, hi = np.empty(OOM_SHAPE[1]), np.empty(OOM_SHAPE[1]), np.empty(OOM_SHAPE[1])
    COMM.Allreduce(np.ascontiguousarray(Xl.sum(axis=0)), total, op=MPI.SUM)
    COMM.Allreduce(np.ascontiguousarray(Xl.min(axis=0)), lo, op=MPI.MIN)
    COMM.Allreduce(np.ascontiguousarray(Xl.max(axis=0)), hi, op=MPI.MAX)
    check_replicated(g, BS_ATTRS, "after the out-of-memory case")
    check_numpy_attrs(est, [s + "_" for s in NAMES], "after the out-of-memory case")
    if est.n_samples_seen_ != n:
        raise AssertionError(f"after the out-of-memory case: n_samples_seen_ {est.n_samples_seen_} != {n}")
    worst = check_close(est.mean_, total / n, 1e-12, "after the out-of-memory case: mean_")
    check_close(est.min_, lo, 0.0, "after the out-of-memory case: min_")
    check_close(est.max_, hi, 0.0, "after the out-of-memory case: max_")
    log(f"ok  {what}: every rank raised MemoryError: {outcomes[0][2]}")
    log(f"ok  after freeing it: device='cuda' fit of {n:,} x {OOM_SHAPE[1]} works, max rel diff of mean_ "
        f"vs numpy {worst:.2e}")


def main():
    import spmdlearn

    if not spmdlearn.built_with_cuda():
        raise AssertionError("spmdlearn was built without CUDA")
    cp, dev, count = select_gpu()
    names = COMM.allgather((MPI.Get_processor_name(), dev, cp.cuda.runtime.getDeviceProperties(dev)["name"].decode()))
    log(f"GPU SPMD check: {SIZE} rank(s), {count} visible GPU(s) per node; rank -> (host, GPU, card): {names}")
    log(f"NCCL_NVLS_ENABLE={os.environ.get('NCCL_NVLS_ENABLE', '<unset>')}")
    # first, so that every case after it shows the GPUs work once the memory is back
    check_oom_on_last_rank(cp)
    cases = [("mean1e4", (100_003, 16)), ("normal", (7_919, 130)), ("normal", (1_001, 13))]
    for dtype in (np.float64, np.float32):
        for kind, shape in cases:
            for empty_last in ([False, True] if SIZE > 1 else [False]):
                run_case(cp, kind, shape, dtype, empty_last)
    check_nan_on_one_rank(cp)
    COMM.Barrier()
    log(f"GPU SPMD CHECK OK ranks={SIZE}")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - any failure on any rank takes every rank down
        fail(traceback.format_exc())
