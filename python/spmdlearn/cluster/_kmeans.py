"""KMeans over the rows of all ranks (see include/spmdlearn/cluster.hpp).

fit / score are collective; predict / transform / labels_ are local (this rank's rows). The C++
core does everything numeric: the centring, the scaled tol, the initialisation and Lloyd's loop.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans as _SkKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import _is_arraylike_not_scalar, check_is_fitted

from .. import _core
from .._base import (
    SPMDMixin,
    StateArray,
    _dtype_name,
    check_device_input,
    check_fitted_state,
    device_like,
    device_weights,
    finish_features,
    fitted_count,
    is_cuda_array,
    local_weights,
    to_host,
)
from .._comm import collective
from ..decomposition._pca import _common_seed

_INIT_CODES = {"k-means++": 0, "random": 1, "k-means||": 2}


class KMeans(SPMDMixin, _SkKMeans):
    """K-means clustering of the rows of all ranks (scikit-learn's KMeans), exact.

    Each rank passes its own rows; ``fit`` is collective and every rank ends with the same
    ``cluster_centers_``, ``inertia_`` and ``n_iter_`` (bitwise), equal to scikit-learn's on the
    concatenated rows for the same initial centres: the data are centred on the global mean, tol is
    scaled by the mean global column variance, Lloyd's iterations use one allreduce each (sums,
    weights, labels changed, inertia), empty clusters move to the globally farthest rows, and the
    stopping rules and the final E-step are scikit-learn's.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random", "k-means||"}, callable or array-like of shape (n_clusters, n_features)
        - ``"k-means++"``: scikit-learn's greedy k-means++ (2 + log(k) candidates per centre),
          weighted, with every draw taken over all ranks' rows.
        - ``"random"``: n_clusters distinct rows drawn with probabilities proportional to
          sample_weight, over all ranks.
        - ``"k-means||"``: scalable k-means++ (Bahmani et al. 2012): oversampling factor 2k, 5
          rounds, then weighted greedy k-means++ on the candidates.
        - array: the initial centres (n_init is then 1, with scikit-learn's warning otherwise).
        - callable ``init(X, n_clusters, random_state)``: called on the rows of the first rank that
          holds rows; its centres (in the coordinates of X) are broadcast to every rank.
        The random draws come from a C++ generator seeded by ``random_state`` (the same on every
        rank), so "k-means++" and "random" pick other rows than scikit-learn's numpy draws do; a
        given ``random_state`` and rank count always give the same model.
    n_init : "auto" or int, default="auto"
        As scikit-learn: "auto" is 1 for "k-means++", "k-means||" and arrays, 10 for "random" and
        callables. The run with the lowest inertia wins.
    max_iter : int, default=300
    tol : float, default=1e-4
        Relative to the mean variance of the columns of all ranks' rows.
    verbose : int, default=0
        > 0: one line per iteration (inertia, centre shift, seconds) printed by rank 0.
    random_state : int, RandomState instance or None
    copy_x : bool, default=True
        Accepted for compatibility; X is never modified (the centred rows are a private copy).
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        "elkan" runs Lloyd's algorithm too: both give the same clustering in exact arithmetic
        (Elkan's only skips distance computations that cannot change a label).
    comm : mpi4py communicator or None
    device : {"auto", "cpu", "cuda"}, default="auto"
        A CUDA X (cupy, torch, DLPack; sample_weight then a CUDA array too) is fitted on its GPU:
        the centred copy, the labels, the weights and k-means++'s closest distances stay there;
        distances and argmin run in one fused kernel (for float32 on sm_80+ GPUs on tensor cores
        as "3xTF32": float32-accurate products, not TF32's 10-bit ones; SPMDLEARN_FP32_SIMT=1
        selects the plain fp32 kernel), the per-cluster sums in a deterministic fixed-point
        kernel, and only k x d numbers cross PCIe an iteration (the draws themselves and the
        relocation of empty clusters are decided on the host from replicated numbers). "cuda"
        copies host data to this rank's GPU; "cpu" brings a CUDA X to the host. predict/transform
        of a CUDA X return arrays of its kind; labels_ is a numpy array.

    Attributes
    ----------
    cluster_centers_ : ndarray (n_clusters, n_features), dtype of X
    labels_ : ndarray (n_local_rows,), int32 -- this rank's rows
    inertia_ : float -- over all ranks' rows
    n_iter_ : int
    n_features_in_, feature_names_in_ : as scikit-learn
    """

    _local_attributes = ("labels_",)  # this rank's rows: not compared across ranks

    _parameter_constraints = {
        **_SkKMeans._parameter_constraints,
        "init": [StrOptions({"k-means++", "random", "k-means||"}), callable, "array-like"],
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300, tol=1e-4,
                 verbose=0, random_state=None, copy_x=True, algorithm="lloyd", comm=None,
                 device="auto"):
        super().__init__(n_clusters=n_clusters, init=init, n_init=n_init, max_iter=max_iter,
                         tol=tol, verbose=verbose, random_state=random_state, copy_x=copy_x,
                         algorithm=algorithm)
        self.comm = comm
        self.device = device

    _state_marker = "n_iter_"

    def _state_spec(self):
        k = fitted_count(self, "n_clusters", low=1)
        d = fitted_count(self, "n_features_in_")
        return f"the model has n_clusters={k} and n_features_in_={d}", {"cluster_centers_": StateArray((k, d))}

    # --- input -----------------------------------------------------------------------------------
    def _host(self, X):
        return to_host(X) if is_cuda_array(X) else X

    def _on_gpu(self, X):
        """A CUDA X used in place (device "auto" or "cuda")."""
        return is_cuda_array(X) and self.device != "cpu"

    def _fit_input(self, X, sample_weight, reset):
        """(X, w, to_device): a CUDA X stays on its GPU with CUDA weights; host X as usual, and
        device="cuda" asks the C++ core to copy it (and the weights) to this rank's GPU."""
        X, to_device = self._device_X(X, reset=reset)
        if is_cuda_array(X):
            return X, device_weights(sample_weight, X), False
        return X, local_weights(sample_weight, X), to_device

    def _n_init_for(self):
        """scikit-learn's _check_params_vs_input for n_init (with its warning for arrays)."""
        init = self.init
        if self.n_init == "auto":
            n_init = 10 if (isinstance(init, str) and init == "random") or callable(init) else 1
        else:
            n_init = int(self.n_init)
        if _is_arraylike_not_scalar(init) and n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={n_init}.", RuntimeWarning, stacklevel=3)
            n_init = 1
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn("algorithm='elkan' doesn't make sense for a single cluster. Using "
                          "'lloyd' instead.", RuntimeWarning, stacklevel=3)
        return n_init

    def _check_centers(self, centers, X):
        k = self.n_clusters
        if centers.ndim != 2 or centers.shape[0] != k:
            raise ValueError(f"The shape of the initial centers {centers.shape} does not match "
                             f"the number of clusters {k}.")
        if X.shape[0] > 0 or X.shape[1] > 0:  # a (0, 0) block has no n_features to compare
            if centers.shape[1] != X.shape[1]:
                raise ValueError(f"The shape of the initial centers {centers.shape} does not "
                                 f"match the number of features of the data {X.shape[1]}.")

    def _callable_centers(self, comm, addr, X, n_init):
        """init(X, k, random_state) on the first rank holding rows, broadcast to all ranks."""
        sizes = comm.allgather(int(X.shape[0]))
        root = next((r for r, s in enumerate(sizes) if s > 0), 0)
        centers = None
        with collective(addr, self):
            if comm.Get_rank() == root:
                rs = check_random_state(self.random_state)
                centers = []
                for _ in range(n_init):
                    c = check_array(self.init(X, self.n_clusters, random_state=rs), dtype=X.dtype,
                                    order="C")
                    self._check_centers(c, X)
                    centers.append(c)
                centers = np.stack(centers)
        return comm.bcast(centers, root=root)

    # --- fit -------------------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Compute the k-means clustering of all ranks' rows (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._validate_params()
            X, w, to_device = self._fit_input(X, sample_weight, reset=True)
            dtype = np.dtype(_dtype_name(X))
            n_init = self._n_init_for()
            init, given = self.init, None
            if isinstance(init, str):
                mode = _INIT_CODES[init]
            elif callable(init):
                mode = 3
            else:
                mode = 3
                try:
                    given = check_array(init, dtype=dtype, copy=True, order="C", input_name="init")
                except (TypeError, ValueError) as e:
                    raise ValueError(f"KMeans: init is not usable as initial centres: {e}") from None
                self._check_centers(given, X)
                given = given[None]
        if callable(init):
            given = self._callable_centers(comm, addr, self._host(X), n_init)
        seed = _common_seed(addr, self.random_state) if mode != 3 else 0
        flat = None if given is None else np.ascontiguousarray(given, dtype=np.float64).ravel()
        res = _core.kmeans_fit(addr, X, w, int(self.n_clusters), mode, int(n_init),
                               int(self.max_iter), float(self.tol), int(self.verbose), int(seed), flat,
                               to_device)
        self.cluster_centers_ = np.ascontiguousarray(res["centers"].astype(dtype))
        self._n_features_out = self.cluster_centers_.shape[0]
        self.labels_ = res["labels"]
        self.inertia_ = float(res["inertia"])
        self.n_iter_ = int(res["n_iter"])
        finish_features(self, int(res["n_features"]))
        if int(res["n_distinct"]) < self.n_clusters:
            warnings.warn(
                "Number of distinct clusters ({}) found smaller than n_clusters ({}). Possibly due "
                "to duplicate points in X.".format(int(res["n_distinct"]), self.n_clusters),
                ConvergenceWarning, stacklevel=2)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit on all ranks' rows (collective); the labels of this rank's rows."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit on all ranks' rows (collective); distances of this rank's rows to the centres."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    # --- local methods ---------------------------------------------------------------------------
    def _centers64(self):
        check_fitted_state(self, "cluster_centers_")
        return np.ascontiguousarray(self.cluster_centers_, dtype=np.float64)

    def predict(self, X):
        """The index of the nearest centre of each of this rank's rows (local)."""
        check_is_fitted(self)
        centers = self._centers64()
        if self._on_gpu(X):  # labels on X's GPU, as an array of its kind
            X = check_device_input(self, X)
            return device_like(X, _core.kmeans_predict(X, centers))
        X = self._local_X(self._host(X), reset=False)
        return _core.kmeans_predict(X, centers)

    def transform(self, X):
        """Euclidean distances of this rank's rows to the centres (local)."""
        check_is_fitted(self)
        centers = self._centers64()
        if self._on_gpu(X):
            # On X's GPU with its own library (one gemm): sqrt(max(‖x‖² − 2 x·c + ‖c‖², 0)).
            X = check_device_input(self, X)
            C = device_like(X, self.cluster_centers_.astype(_dtype_name(X)))
            D = (X * X).sum(1)[:, None] - 2 * (X @ C.T) + (C * C).sum(1)[None, :]
            return (D * (D > 0)) ** 0.5
        X = self._local_X(self._host(X), reset=False)
        return _core.kmeans_transform(X, centers).astype(X.dtype, copy=False)

    def _transform(self, X):
        return _core.kmeans_transform(X, self._centers64()).astype(X.dtype, copy=False)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the inertia of all ranks' rows for the fitted centres (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            check_is_fitted(self)
            centers = self._centers64()
            if self._on_gpu(X):
                X = check_device_input(self, X)
                w = device_weights(sample_weight, X)
            else:
                X = self._local_X(self._host(X), reset=False)
                w = local_weights(sample_weight, X)
        return -float(_core.kmeans_inertia(addr, X, w, centers))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags
