from __future__ import annotations

import numpy as np
from sklearn.covariance import EmpiricalCovariance as _SkEmpiricalCovariance
from sklearn.utils.validation import check_is_fitted

from .. import _core
from sklearn.utils._param_validation import StrOptions

from .._base import (
    SPMDMixin,
    StateArray,
    StateDict,
    _dtype_name,
    cast_result,
    check_cuda_array,
    check_device_input,
    check_fitted_state,
    device_empty,
    finish_features,
    fitted_count,
    is_cuda_array,
)
from .._comm import collective


class EmpiricalCovariance(SPMDMixin, _SkEmpiricalCovariance):
    """Maximum-likelihood covariance of the rows of all ranks (scikit-learn's EmpiricalCovariance).

    ``fit`` and ``score`` are collective (every rank of ``comm`` calls them); ``mahalanobis`` is
    local. Attributes ``covariance_``, ``location_`` and ``precision_`` are identical on every
    rank, with scikit-learn's dtypes (``covariance_``/``precision_`` float64 and ``location_`` the
    input dtype; with ``assume_centered``, ``location_`` float64 zeros and ``covariance_``/
    ``precision_`` the input dtype); ``error_norm`` and ``get_precision`` are scikit-learn's.

    Parameters
    ----------
    store_precision : bool, default=True
    assume_centered : bool, default=False
    comm : mpi4py communicator or None
        None means :func:`spmdlearn.default_comm` (``MPI.COMM_WORLD``).
    device : {"auto", "cpu", "cuda"}, default="auto"
        "auto": a CUDA array (cupy, torch) is fitted on its GPU in place -- one fused pass over the
        data for up to 64 features, a mean pass then cuBLAS dgemm on centred chunks above -- and
        the ranks' d x d matrices are merged on the GPUs (NCCL); "cuda" copies host data to this
        rank's GPU first; "cpu" brings a CUDA array to the host. ``score`` and ``mahalanobis``
        follow their input: on a CUDA array they run on its GPU, and ``mahalanobis`` returns an
        array of the input's kind (float64).
    """

    _parameter_constraints = {
        **_SkEmpiricalCovariance._parameter_constraints,
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, *, store_precision=True, assume_centered=False, comm=None, device="auto"):
        super().__init__(store_precision=store_precision, assume_centered=assume_centered)
        self.comm = comm
        self.device = device

    _state_marker = "precision_"

    def _state_spec(self):
        d = fitted_count(self, "n_features_in_")
        return f"the model has n_features_in_={d}", {
            "location_": StateArray((d,)),
            "covariance_": StateArray((d, d)),
            "precision_": StateArray((d, d), none=not self.store_precision),
            "_partial_state": StateDict("covariance", d),
        }

    def _merge(self, X, *, reset):
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._validate_params()
            first = reset or not hasattr(self, "_partial_state")
            if not first:  # merged into, then factorised (pinvh): NaN/inf would end in a LAPACK failure
                check_fitted_state(self, "_partial_state", finite=True)
            X, to_device = self._device_X(X, reset=first)
        state = _core.cov_partial_fit(addr, None if first else self._partial_state, X, to_device,
                                      type(self).__name__)
        self._partial_state = state
        # scikit-learn's dtypes: centred, location_ has X's dtype and covariance_/precision_ are
        # float64 (np.cov); assume_centered, location_ is float64 zeros and covariance_/precision_
        # have X's dtype (X.T @ X, then pinvh with that dtype's cutoff).
        dtype = np.dtype(_dtype_name(X))
        f32 = self.assume_centered and dtype == np.float32
        res = _core.cov_finalize(state, self.assume_centered, self.store_precision, f32, addr)
        if self.assume_centered:
            self.location_ = np.zeros(int(state["n_features"]))
        else:
            self.location_ = cast_result(res["location"], dtype)
        cov_dtype = dtype if self.assume_centered else np.float64
        self.covariance_ = cast_result(res["covariance"], cov_dtype)
        self.precision_ = cast_result(res["precision"], cov_dtype) if self.store_precision else None
        finish_features(self, state["n_features"])
        return self

    def fit(self, X, y=None):
        """Fit the covariance on all ranks' rows (collective)."""
        return self._merge(X, reset=True)

    def _model64(self, likelihood=False):
        # get_precision reads precision_, or without store_precision inverts covariance_ (pinvh,
        # which needs finite numbers); the likelihood factorises the precision.
        if self.store_precision:
            check_fitted_state(self, "location_", "precision_", finite=likelihood)
        else:
            check_fitted_state(self, "location_", finite=likelihood)
            check_fitted_state(self, "covariance_", finite=True)
        loc = np.ascontiguousarray(self.location_, dtype=np.float64)
        prec = np.ascontiguousarray(self.get_precision(), dtype=np.float64)
        return loc, prec

    def score(self, X_test, y=None):
        """Gaussian log-likelihood of all ranks' rows of X_test under the model (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            check_is_fitted(self)
            loc, prec = self._model64(likelihood=True)
            if is_cuda_array(X_test):
                check_cuda_array(X_test, "X")
                X = X_test
            else:
                X = self._local_X(X_test, reset=False)
        return float(_core.cov_score(addr, loc, prec, X))

    def error_norm(self, comp_cov, norm="frobenius", scaling=True, squared=True):
        """scikit-learn's error_norm (local), after checking covariance_."""
        check_is_fitted(self)
        check_fitted_state(self, "covariance_")
        return super().error_norm(comp_cov, norm=norm, scaling=scaling, squared=squared)

    def mahalanobis(self, X):
        """Squared Mahalanobis distances of this rank's rows (local)."""
        check_is_fitted(self)
        loc, prec = self._model64()
        if is_cuda_array(X):
            X = check_device_input(self, X)
            out = device_empty(X, (X.shape[0],), "float64")
            _core.cov_mahalanobis(loc, prec, X, out)
            return out
        X = self._local_X(X, reset=False, finite=True)
        return _core.cov_mahalanobis(loc, prec, X)


class IncrementalEmpiricalCovariance(EmpiricalCovariance):
    """EmpiricalCovariance over blocks arriving in several collective ``partial_fit`` calls.

    Each ``partial_fit`` merges the round's blocks of every rank (a rank without rows passes a
    ``(0, n_features)`` block) into the replicated exact state and updates the attributes on every
    rank; the result equals ``EmpiricalCovariance`` on all blocks of all rounds.
    """

    def partial_fit(self, X, y=None):
        """Add this round's blocks of every rank (collective)."""
        return self._merge(X, reset=False)
