from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import MaxAbsScaler as _SkMaxAbsScaler
from sklearn.preprocessing import StandardScaler as _SkStandardScaler
from sklearn.utils.validation import check_is_fitted

from .. import _core
from sklearn.utils._param_validation import StrOptions

from .._base import (
    SPMDMixin,
    StateArray,
    StateDict,
    _dtype_name,
    check_device_input,
    check_fitted_state,
    device_empty,
    device_weights,
    finish_features,
    fitted_count,
    is_cuda_array,
    local_weights,
)
from .._comm import collective


class _ScalerMixin(SPMDMixin):
    _state_marker = "n_samples_seen_"

    def _check_model(self):
        """Before transform / inverse_transform read the fitted attributes."""
        check_is_fitted(self)
        check_fitted_state(self, *self._transform_reads())

    def _collect(self, X, sample_weight, *, reset):
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._validate_params()
            if reset:
                self._reset()
            first = not hasattr(self, "n_samples_seen_")
            if not first:
                check_fitted_state(self, "_partial_state")
            X, to_device = self._device_X(X, reset=first)
            if is_cuda_array(X):
                w = device_weights(sample_weight, X)
            else:
                w = local_weights(sample_weight, X)
        state = _core.bs_partial_fit(
            addr, None if first else self._partial_state, X, w, type(self).__name__, to_device
        )
        self._partial_state = state
        self._weighted = (not first and getattr(self, "_weighted", False)) or w is not None
        finish_features(self, state["n_features"])
        return np.dtype(_dtype_name(X)), state

    def _empty_output(self, X):
        # A rank may hold no rows: its local output is an empty block of the right width and dtype
        # (scikit-learn's transform refuses 0 samples).
        check_is_fitted(self)
        return self._local_X(X, reset=False, finite=True).copy()

    def _device_transform(self, X, a, b):
        """out = X * a + b per column on X's GPU; returns an array of X's kind (cupy, torch)."""
        X = check_device_input(self, X)
        out = device_empty(X, X.shape)
        d = X.shape[1]
        a = np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float64), (d,)))
        b = np.ascontiguousarray(np.broadcast_to(np.asarray(b, dtype=np.float64), (d,)))
        _core.scale_columns(X, out, a, b)
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


def _no_rows(X):
    if sp.issparse(X):
        return False
    shape = getattr(X, "shape", None)
    if shape is None:
        shape = np.asarray(X).shape
    return len(shape) == 2 and shape[0] == 0


def _reject_nonfinite(X):
    if sp.issparse(X):
        return  # scikit-learn's own validation rejects it with its message
    arr = np.asarray(X)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise ValueError("Input X contains NaN or infinity; remove or impute non-finite values first")


class StandardScaler(_ScalerMixin, _SkStandardScaler):
    """scikit-learn's StandardScaler with a collective ``fit`` / ``partial_fit``.

    ``mean_``, ``var_``, ``scale_`` and ``n_samples_seen_`` describe the rows of all ranks and are
    identical on every rank; ``transform`` / ``inverse_transform`` are local. Every
    ``partial_fit`` is collective (a rank without rows passes a ``(0, n_features)`` block).
    Sparse input and NaN are not supported (every rank raises ValueError).
    """

    _parameter_constraints = {
        **_SkStandardScaler._parameter_constraints,
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, *, copy=True, with_mean=True, with_std=True, comm=None, device="auto"):
        super().__init__(copy=copy, with_mean=with_mean, with_std=with_std)
        self.comm = comm
        self.device = device

    def fit(self, X, y=None, sample_weight=None):
        """Fit on all ranks' rows (collective)."""
        self._fit_rows(X, sample_weight, reset=True)
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """Add this round's rows of every rank (collective)."""
        self._fit_rows(X, sample_weight, reset=False)
        return self

    def _transform_reads(self):
        return (("mean_",) if self.with_mean else ()) + (("scale_",) if self.with_std else ())

    def _state_spec(self):
        d = fitted_count(self, "n_features_in_")
        return f"the model has n_features_in_={d}", {
            "mean_": StateArray((d,), none=not self.with_mean),
            "var_": StateArray((d,), none=not self.with_std),
            "scale_": StateArray((d,), none=not self.with_std),
            "_partial_state": StateDict("basic_statistics", d),
        }

    def _fit_rows(self, X, sample_weight, *, reset):
        dtype, state = self._collect(X, sample_weight, reset=reset)
        if not self.with_mean and not self.with_std:
            self.mean_ = None
            self.var_ = None
            self.scale_ = None
            n = state["n_rows"]
            self.n_samples_seen_ = dtype.type(n) if self._weighted else np.int64(n)
            return
        res = _core.standard_scaler_finalize(state, self.with_mean, self.with_std)
        self.mean_ = res["mean"]
        self.var_ = res["var"] if self.with_std else None
        self.scale_ = res["scale"] if self.with_std else None
        self.n_samples_seen_ = np.float64(state["weight_sum"])

    # Local: scikit-learn's, after rejecting NaN/inf as fit does.
    def transform(self, X, copy=None):
        self._check_model()
        if is_cuda_array(X):
            scale = self.scale_ if self.with_std else 1.0
            shift = self.mean_ if self.with_mean else 0.0
            return self._device_transform(X, 1.0 / np.asarray(scale), -np.asarray(shift) / scale)
        _reject_nonfinite(X)
        if _no_rows(X):
            return self._empty_output(X)
        return super().transform(X, copy=copy)

    def inverse_transform(self, X, copy=None):
        self._check_model()
        if is_cuda_array(X):
            scale = self.scale_ if self.with_std else 1.0
            shift = self.mean_ if self.with_mean else 0.0
            return self._device_transform(X, scale, shift)
        _reject_nonfinite(X)
        if _no_rows(X):
            return self._empty_output(X)
        return super().inverse_transform(X, copy=copy)


class MaxAbsScaler(_ScalerMixin, _SkMaxAbsScaler):
    """scikit-learn's MaxAbsScaler with a collective ``fit`` / ``partial_fit``.

    ``max_abs_``, ``scale_`` and ``n_samples_seen_`` describe the rows of all ranks and are
    identical on every rank; ``transform`` / ``inverse_transform`` are local.
    """

    _parameter_constraints = {
        **_SkMaxAbsScaler._parameter_constraints,
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, *, copy=True, clip=False, comm=None, device="auto"):
        super().__init__(copy=copy, clip=clip)
        self.comm = comm
        self.device = device

    def fit(self, X, y=None):
        """Fit on all ranks' rows (collective)."""
        self._fit_rows(X, reset=True)
        return self

    def partial_fit(self, X, y=None):
        """Add this round's rows of every rank (collective)."""
        self._fit_rows(X, reset=False)
        return self

    def _transform_reads(self):
        return ("scale_",)

    def _state_spec(self):
        d = fitted_count(self, "n_features_in_")
        return f"the model has n_features_in_={d}", {
            "max_abs_": StateArray((d,)),
            "scale_": StateArray((d,)),
            "_partial_state": StateDict("basic_statistics", d),
        }

    def _fit_rows(self, X, *, reset):
        dtype, state = self._collect(X, None, reset=reset)
        res = _core.max_abs_scaler_finalize(state, dtype == np.float32)
        self.max_abs_ = res["max_abs"].astype(dtype, copy=False)
        self.scale_ = res["scale"].astype(dtype, copy=False)
        self.n_samples_seen_ = int(state["n_rows"])

    # Local: scikit-learn's, after rejecting NaN/inf as fit does.
    def transform(self, X):
        self._check_model()
        if is_cuda_array(X):
            return self._device_transform(X, 1.0 / self.scale_.astype(np.float64), 0.0)
        _reject_nonfinite(X)
        if _no_rows(X):
            return self._empty_output(X)
        return super().transform(X)

    def inverse_transform(self, X):
        self._check_model()
        if is_cuda_array(X):
            return self._device_transform(X, self.scale_.astype(np.float64), 0.0)
        _reject_nonfinite(X)
        if _no_rows(X):
            return self._empty_output(X)
        return super().inverse_transform(X)
