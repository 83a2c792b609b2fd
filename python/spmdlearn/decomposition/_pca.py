"""PCA over the rows of all ranks (see include/spmdlearn/decomposition.hpp).

fit is collective; transform / inverse_transform / score_samples are local; score is the mean
log-likelihood over all ranks' rows (collective). The C++ core returns the whole spectrum of the
centred data of all ranks; here n_components is chosen from it exactly as scikit-learn does.
"""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA as _SkPCA
from sklearn.decomposition import IncrementalPCA as _SkIncrementalPCA
from sklearn.decomposition._base import _BasePCA
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _core
from .._base import (
    SPMDMixin,
    StateArray,
    StateDict,
    _dtype_name,
    all_ranks_on_gpu,
    check_device_input,
    check_fitted_state,
    device_like,
    finish_features,
    fitted_count,
    is_cuda_array,
    to_host,
)
from .._comm import collective


def _common_seed(addr, random_state):
    """A seed every rank agrees on: the int random_state itself, else one drawn from it (or from
    fresh entropy when None) and taken from rank 0."""
    if isinstance(random_state, (int, np.integer)):
        return int(random_state) & 0xFFFFFFFFFFFFFFFF
    rng = random_state if isinstance(random_state, np.random.RandomState) else np.random.RandomState()
    seed = np.array([int(rng.randint(0, 2**31 - 1))], dtype=np.int64)
    mine = seed.copy()
    _core.allreduce(addr, seed, "max")  # the same value on every rank
    del mine
    return int(seed[0])


class _PCABase(SPMDMixin):
    """What PCA and IncrementalPCA share: host input checks and a local transform that accepts a
    rank without rows."""

    _state_marker = "singular_values_"

    def _state_spec(self):
        d = fitted_count(self, "n_features_in_")
        k = fitted_count(self, "n_components_")
        rules = {
            "mean_": StateArray((d,)),
            "components_": StateArray((k, d)),
            "explained_variance_": StateArray((k,)),
            "explained_variance_ratio_": StateArray((k,)),
            "singular_values_": StateArray((k,)),
            "noise_variance_": StateArray(()),
        }
        if isinstance(self, IncrementalPCA):
            rules["var_"] = StateArray((d,))
            rules["_partial_state"] = StateDict("covariance", d)
        return f"the model has n_components_={k} and n_features_in_={d}", rules

    def _check_model(self, likelihood=False):
        """Before a local method reads the model (transform, inverse_transform, the likelihood:
        its covariance is factorised, which needs finite numbers)."""
        check_is_fitted(self)
        check_fitted_state(self, "mean_", "components_", "explained_variance_", "noise_variance_",
                           finite=likelihood)

    def get_covariance(self):
        """scikit-learn's get_covariance, after checking the model."""
        self._check_model(likelihood=True)
        return super().get_covariance()

    def get_precision(self):
        """scikit-learn's get_precision, after checking the model."""
        self._check_model(likelihood=True)
        return super().get_precision()

    def _local(self, X, reset):
        """Host X for the host-only parts (CUDA arrays with device="cpu" come to the host)."""
        if is_cuda_array(X):
            if getattr(self, "device", "auto") != "cpu":
                raise NotImplementedError(
                    "PCA on a GPU: fit and transform only so far (score, score_samples, "
                    "inverse_transform and IncrementalPCA's partial_fit take host data); pass numpy "
                    "data or device='cpu'")
            X = to_host(X)
        return self._local_X(X, reset=reset)

    def _fit_input(self, X, reset):
        """(X, on_device, to_device): a CUDA X stays on its GPU (the covariance pass runs there);
        device="cuda" copies host data to this rank's GPU in the C++ core."""
        device = getattr(self, "device", "auto")
        if (is_cuda_array(X) and device != "cpu") or device == "cuda":
            X, to_device = self._device_X(X, reset=reset)
            return X, True, to_device
        return self._local(X, reset), False, False

    def transform(self, X):
        """Project this rank's rows (local; a rank without rows gets an empty result; a CUDA X
        gives an array of its kind on its GPU)."""
        self._check_model()
        if is_cuda_array(X) and getattr(self, "device", "auto") != "cpu":
            X = check_device_input(self, X)
            dt = np.dtype(_dtype_name(X))
            Z = (X - device_like(X, self.mean_.astype(dt))) @ device_like(X, self.components_.T.astype(dt))
            if self.whiten:
                Z = Z / device_like(X, np.sqrt(self.explained_variance_).astype(dt))
            return Z
        X = self._local(X, reset=False)
        if X.shape[0] == 0:
            return np.empty((0, self.n_components_), dtype=self.components_.dtype)
        return _BasePCA.transform(self, X)

    def inverse_transform(self, X):
        """Map this rank's transformed rows back (local; a rank without rows, of shape (0, 0) or
        (0, n_components_), gets an empty (0, n_features_in_) result where scikit-learn refuses
        0 samples), after checking the model."""
        self._check_model()
        shape = getattr(X, "shape", None)
        if (not is_cuda_array(X) and shape is not None and len(shape) == 2 and shape[0] == 0
                and shape[1] in (0, self.n_components_)):
            return np.empty((0, self.n_features_in_), dtype=self.components_.dtype)
        return super().inverse_transform(X)


class PCA(_PCABase, _SkPCA):
    """Principal component analysis of the rows of all ranks (scikit-learn's PCA), exact for
    every solver.

    ``svd_solver``:

    - ``"covariance_eigh"``: eigen-decomposition of the exactly merged covariance (one pass);
    - ``"full"``: exact SVD of the centred data without forming the covariance -- distributed
      TSQR (each rank QR-factorises its centred rows, the R factors are combined), better
      conditioned than the covariance;
    - ``"randomized"``: distributed randomized range finder (Halko et al.): the test matrix from
      ``random_state`` (the same on every rank), ``iterated_power`` power iterations, every range
      basis orthonormalised by CholeskyQR2 over all ranks' rows, one allreduce for the small
      projected matrix. Approximate, like scikit-learn's (its random draws differ from ours).
    - ``"auto"``: scikit-learn's rule on the global shape.
    - ``"arpack"`` raises NotImplementedError (not silently replaced).

    Attributes as scikit-learn (``components_`` signed so that each one's largest-magnitude entry
    is positive), identical on every rank; ``n_samples_`` counts all ranks' rows.

    GPU: a CUDA X (cupy, torch, DLPack) is used in place, ``device="cuda"`` copies host data to this
    rank's GPU. Every solver runs there: covariance_eigh by the covariance pass, full by cuSOLVER
    QR of centred row chunks (float64), randomized with the centred block (float64, n x d) and the
    basis on the GPU; the d x d or l x l factorisations run on the host. ``transform`` of a CUDA X
    returns an array of its kind.
    """

    _parameter_constraints = {
        **_SkPCA._parameter_constraints,
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, n_components=None, *, copy=True, whiten=False, svd_solver="auto", tol=0.0,
                 iterated_power="auto", n_oversamples=10, power_iteration_normalizer="auto",
                 random_state=None, comm=None, device="auto"):
        super().__init__(n_components=n_components, copy=copy, whiten=whiten, svd_solver=svd_solver,
                         tol=tol, iterated_power=iterated_power, n_oversamples=n_oversamples,
                         power_iteration_normalizer=power_iteration_normalizer,
                         random_state=random_state)
        self.comm = comm
        self.device = device

    def fit(self, X, y=None):
        """Fit on all ranks' rows (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._validate_params()
            X, on_device, to_device = self._fit_input(X, reset=True)
            if self.svd_solver == "arpack":
                raise NotImplementedError(
                    "PCA(svd_solver='arpack') is not implemented in spmdlearn; use 'full', "
                    "'covariance_eigh' (both exact) or 'randomized'")
        # Global shape: rows summed, columns agreed (a rank may pass a (0, 0) block; ranks that
        # disagree on n_features are caught by the C++ guard, on every rank).
        sizes = np.array([X.shape[0]], dtype=np.int64)
        _core.allreduce(addr, sizes, "sum")
        cols = np.array([X.shape[1]], dtype=np.int64)
        _core.allreduce(addr, cols, "max")
        n, d = int(sizes[0]), int(cols[0])
        with collective(addr, self):
            solver = self.svd_solver
            k = self.n_components
            if solver == "auto":  # scikit-learn's rule, on the global shape
                if d <= 1000 and n >= 10 * d:
                    solver = "covariance_eigh"
                elif max(n, d) <= 500 or k == "mle":
                    solver = "full"
                elif k is not None and 1 <= k < 0.8 * min(n, d):
                    solver = "randomized"
                else:
                    solver = "full"
            if solver == "randomized" and not (isinstance(k, (int, np.integer)) and 1 <= k <= min(n, d)):
                raise ValueError(
                    f"n_components={k!r} must be between 1 and min(n_samples, n_features)="
                    f"{min(n, d)} with svd_solver='randomized'")
            if k is None:
                k = min(n, d)
            elif k == "mle":
                if n < d:
                    raise ValueError("n_components='mle' is only supported if n_samples >= n_features")
            elif not (0 < k < 1) and not (0 <= k <= min(n, d)):
                raise ValueError(
                    f"n_components={k!r} must be between 0 and min(n_samples, n_features)="
                    f"{min(n, d)} with svd_solver={solver!r}")
        if solver == "covariance_eigh":
            state = _core.cov_partial_fit(addr, None, X, to_device)
            res = _core.pca_covariance_eigh(state, all_ranks_on_gpu(addr, on_device), addr)
        elif solver == "randomized":
            n_iter = self.iterated_power
            if n_iter == "auto":
                n_iter = 7 if k < 0.1 * min(n, d) else 4
            res = _core.pca_randomized(addr, X, int(k), int(self.n_oversamples), int(n_iter),
                                       _common_seed(addr, self.random_state), to_device)
        else:
            res = _core.pca_full(addr, X, to_device)
        self._fit_svd_solver = solver
        self._finish(res, k, np.dtype(_dtype_name(X)))
        finish_features(self, d)
        return self

    def _finish(self, res, k, dtype):
        n = int(res["n_samples"])
        d = res["components"].shape[1]
        ev = res["explained_variance"]
        if "total_variance" in res:
            # randomized: only k values; the total and the noise come from the total variance
            total = float(res["total_variance"])
            ratio = ev / total if total > 0 else np.zeros_like(ev)
            k = int(k)
            rest = min(n, d) - k
            self.noise_variance_ = dtype.type((total - ev.sum()) / rest if rest > 0 else 0.0)
            self._set(res, n, k, ev, ratio, dtype)
            return
        total = ev.sum()
        ratio = ev / total if total > 0 else np.zeros_like(ev)
        if k == "mle":
            k = int(_core.pca_infer_dimension(np.ascontiguousarray(ev, dtype=np.float64), n))
        elif 0 < k < 1.0:
            k = int(np.searchsorted(np.cumsum(ratio), k, side="right") + 1)
        k = int(k)
        self.noise_variance_ = dtype.type(float(ev[k:].mean()) if k < min(d, n) else 0.0)
        self._set(res, n, k, ev, ratio, dtype)

    def _set(self, res, n, k, ev, ratio, dtype):
        self.n_samples_ = n
        self.n_components_ = k
        self.mean_ = res["mean"].astype(dtype)
        self.components_ = np.ascontiguousarray(res["components"][:k].astype(dtype))
        self.explained_variance_ = ev[:k].astype(dtype)
        self.explained_variance_ratio_ = ratio[:k].astype(dtype)
        self.singular_values_ = res["singular"][:k].astype(dtype)

    def fit_transform(self, X, y=None):
        """Fit on all ranks' rows (collective), then transform this rank's rows (local)."""
        return self.fit(X).transform(X)

    def score(self, X, y=None):
        """Mean log-likelihood over all ranks' rows (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._check_model(likelihood=True)  # on every rank, also one without rows
            X = self._local(X, reset=False)
            ll = self.score_samples(X) if X.shape[0] else np.empty(0)
            sums = np.array([float(np.sum(ll)), float(len(ll))])
        _core.allreduce(addr, sums, "sum")
        return float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")

    def score_samples(self, X):
        """Log-likelihood of each of this rank's rows (local; a rank without rows gets an empty
        array, where scikit-learn refuses 0 samples), after checking the model."""
        self._check_model(likelihood=True)
        X = self._local(X, reset=False)
        if X.shape[0] == 0:
            return np.empty(0, dtype=self.components_.dtype)
        return super().score_samples(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


class IncrementalPCA(_PCABase, _SkIncrementalPCA):
    """PCA over blocks arriving in several collective ``partial_fit`` calls -- exact.

    Each ``partial_fit`` merges the round's blocks of every rank into the exact, replicated
    second-moment state (mean and centred cross-products, Chan merges) and re-derives the
    components from it, so the model after any round equals ``PCA`` (covariance_eigh) on all rows
    seen by all ranks. This differs from scikit-learn's IncrementalPCA, whose sequential update
    keeps only the leading components and is approximate. ``fit`` is one merge of all local rows
    (``batch_size`` is accepted for compatibility and sets ``batch_size_``; the result does not
    depend on it).

    Parameters
    ----------
    n_components : int or None (all: min(n_samples_seen, n_features))
    whiten : bool, default=False
    copy : bool, default=True
    batch_size : int or None
    comm : mpi4py communicator or None
    device : {"auto", "cpu", "cuda"}, default="auto"
        A CUDA X is merged on its GPU (the covariance pass); "cuda" copies host data there.
    """

    _parameter_constraints = {
        **_SkIncrementalPCA._parameter_constraints,
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, n_components=None, *, whiten=False, copy=True, batch_size=None, comm=None,
                 device="auto"):
        super().__init__(n_components=n_components, whiten=whiten, copy=copy, batch_size=batch_size)
        self.comm = comm
        self.device = device

    def _merge(self, X, reset):
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._validate_params()
            first = reset or not hasattr(self, "_partial_state")
            if not first:  # merged into, then factorised: NaN/inf would end in a LAPACK failure
                check_fitted_state(self, "_partial_state", finite=True)
            X, on_device, to_device = self._fit_input(X, reset=first)
        state = _core.cov_partial_fit(addr, None if first else self._partial_state, X, to_device,
                                      type(self).__name__)
        on_gpu = all_ranks_on_gpu(addr, on_device)
        n, d = int(state["n_rows"]), int(state["n_features"])
        with collective(addr, self):
            k = self.n_components
            if k is not None and not (1 <= k <= min(n, d)):
                raise ValueError(
                    f"n_components={k} must be less or equal to the batch number of samples {n} "
                    f"(all ranks' rows so far) and at most n_features={d}")
        self._partial_state = state
        res = _core.pca_covariance_eigh(state, on_gpu, addr)
        dtype = np.dtype(_dtype_name(X))
        k = min(n, d) if k is None else int(k)
        ev = res["explained_variance"]
        total = ev.sum()
        self.n_samples_seen_ = n
        self.n_components_ = k
        self.batch_size_ = 5 * d if self.batch_size is None else self.batch_size
        self.mean_ = res["mean"].astype(dtype)
        self.var_ = (np.diag(state["cross"]) / n).astype(dtype)
        self.components_ = np.ascontiguousarray(res["components"][:k].astype(dtype))
        self.singular_values_ = res["singular"][:k].astype(dtype)
        self.explained_variance_ = ev[:k].astype(dtype)
        self.explained_variance_ratio_ = (ev[:k] / total if total > 0 else ev[:k] * 0).astype(dtype)
        self.noise_variance_ = dtype.type(ev[k:min(n, d)].mean() if k < min(n, d) else 0.0)
        finish_features(self, d)
        return self

    def partial_fit(self, X, y=None, check_input=True):
        """Merge this round's blocks of all ranks (collective)."""
        return self._merge(X, reset=False)

    def fit(self, X, y=None):
        """Fit on all ranks' rows, forgetting earlier rounds (collective)."""
        return self._merge(X, reset=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags
