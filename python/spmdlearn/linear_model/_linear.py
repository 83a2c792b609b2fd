"""LinearRegression and Ridge by distributed normal equations (see include/spmdlearn/linear_model.hpp).

fit / partial_fit / score are collective; predict is local. The C++ core merges every rank's
weighted, centred cross-products of [X | y] exactly and solves the small d x d system; this module
only validates, converts and sets scikit-learn's attributes.
"""
from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.linear_model import LinearRegression as _SkLinearRegression
from sklearn.linear_model import Ridge as _SkRidge
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted, validate_data

from .. import _core
from .._base import (
    FLOAT_DTYPES,
    SPMDMixin,
    StateArray,
    StateDict,
    StateFlag,
    _dtype_name,
    all_ranks_on_gpu,
    cast_result,
    check_cuda_array,
    check_device_input,
    check_fitted_state,
    device_like,
    device_weights,
    finish_features,
    fitted_count,
    is_cuda_array,
    to_host,
    widen_empty_block,
)
from .._comm import collective


def _device_Xy(est, X, y, sample_weight, *, reset):
    """A CUDA X (cupy, torch, DLPack): y (and sample_weight) must be CUDA arrays on the same
    device; y becomes a 2-D (n, t) view of X's dtype. Nothing is copied to the host."""
    check_cuda_array(X, "X")
    if not is_cuda_array(y):
        raise ValueError("X is a CUDA array, so y must be one too (same device)")
    if len(y.shape) not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got shape {tuple(y.shape)}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                         f"[{X.shape[0]}, {y.shape[0]}]")
    dt = _dtype_name(X)
    if _dtype_name(y) != dt:
        y = y.astype(dt) if hasattr(y, "astype") else y.to(X.dtype)
    if len(y.shape) == 1 and y.shape[0] == 0:
        Y = y.reshape(0, _empty_y_targets(est, reset))
    else:
        Y = y.reshape(-1, 1) if len(y.shape) == 1 else y
    if reset:
        est.n_features_in_ = int(X.shape[1])
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif X.shape[1] != est.n_features_in_ and X.shape[0] > 0:
        raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")
    return X, y, Y, device_weights(sample_weight, X)


def _empty_y_targets(est, reset):
    """The width of a rank's 1-D empty y as a 2-D block. A rank without rows may pass y of shape
    (0,) whatever the number of targets: it stands for (0, n_targets) once the model knows it,
    and has no opinion before ((0, 0): the C++ core takes the other ranks' number of targets)."""
    state = None if reset else getattr(est, "_partial_state", None)
    return 0 if state is None else int(state["n_targets"])


def _local_Xy(est, X, y, sample_weight, *, reset):
    """This rank's block: X (n, d) and y (n,) or (n, t) as C-contiguous arrays of one float dtype,
    weights as a 1-D array of that dtype, and whether the C++ core should copy them to this rank's
    GPU (device="cuda"). A CUDA X stays on its GPU (see _device_Xy). Zero rows are fine (a rank may
    hold none); NaN/inf are rejected by the C++ pass (with the local row) on every rank."""
    if y is None:
        raise ValueError(f"{type(est).__name__} requires y to be passed, but the target y is None")
    device = getattr(est, "device", "auto")
    if is_cuda_array(X) and device != "cpu":
        return (*_device_Xy(est, X, y, sample_weight, reset=reset), False)
    if is_cuda_array(X) or is_cuda_array(y):
        X, y = (to_host(a) if is_cuda_array(a) else a for a in (X, y))
        if is_cuda_array(sample_weight):
            sample_weight = to_host(sample_weight)
    X = validate_data(
        est, widen_empty_block(est, X, reset=reset), reset=reset, dtype=list(FLOAT_DTYPES), order="C",
        ensure_all_finite=False, ensure_min_samples=0, ensure_min_features=0, accept_sparse=False,
    )
    # y checked here rather than by validate_data(X, y), which refuses a rank's empty y.
    y = check_array(y, ensure_2d=False, dtype=X.dtype, ensure_all_finite=False, ensure_min_samples=0,
                    input_name="y")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
    check_consistent_length(X, y)
    if y.ndim == 1 and y.shape[0] == 0:
        Y = np.empty((0, _empty_y_targets(est, reset)), dtype=X.dtype)
    else:
        Y = np.ascontiguousarray(y.reshape(-1, 1) if y.ndim == 1 else y)
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=X.dtype)
        if w.ndim == 0:
            w = np.full(X.shape[0], w, dtype=X.dtype)
        if w.ndim != 1:
            raise ValueError(f"sample_weight must be 1-D, got shape {w.shape}")
        w = np.ascontiguousarray(w)
    if device == "cuda" and not _core.built_with_cuda():
        raise NotImplementedError("device='cuda' but spmdlearn was built without CUDA support "
                                  "(rebuild with CMAKE_ARGS=-DSPMDLEARN_ENABLE_CUDA=ON)")
    return X, y, Y, w, device == "cuda"


class _NormalEquationsRegressor(SPMDMixin):
    """Shared machinery: collective merge of the normal-equation state, solve, attributes."""

    _caller = "LinearRegression"
    _state_marker = "intercept_"

    def _state_spec(self):
        d = fitted_count(self, "n_features_in_")
        coef = vars(self).get("coef_")
        t = coef.shape[0] if isinstance(coef, np.ndarray) and coef.ndim == 2 else 1
        return f"the model has n_features_in_={d} and {t} target(s)", {
            "coef_": StateArray((d,), (None, d)),
            "intercept_": StateArray((), (t,)),  # a scalar for one target or without intercept
            "_partial_state": StateDict("normal_equations", d),
            "_y_1d": StateFlag(),  # the layout of coef_ after the next partial_fit
        }

    def _alpha_vector(self):
        return np.zeros(0)

    def _check_params(self):
        if getattr(self, "positive", False):
            raise NotImplementedError(
                f"{type(self).__name__}(positive=True) is not implemented in spmdlearn (scikit-learn "
                "solves it by non-negative least squares); use positive=False"
            )

    def _merge(self, X, y, sample_weight, *, reset):
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._validate_params()
            self._check_params()
            first = reset or not hasattr(self, "_partial_state")
            if not first:  # merged into, then factorised: NaN/inf would end in a LAPACK failure
                check_fitted_state(self, "_partial_state", "_y_1d", finite=True)
            X, y, Y, w, to_device = _local_Xy(self, X, y, sample_weight, reset=first)
            if not first and Y.shape[1] != self._partial_state["n_targets"]:
                raise ValueError(
                    f"y has {Y.shape[1]} targets, but {type(self).__name__} was fitted with "
                    f"{self._partial_state['n_targets']}"
                )
        state = _core.lr_partial_fit(addr, None if first else self._partial_state, X, Y, w,
                                     self._caller, to_device)
        self._solve_on_gpu = all_ranks_on_gpu(addr, to_device or is_cuda_array(X))
        self._partial_state = state
        # A rank without rows may have passed y of shape (0,): the target layout is agreed from
        # the first round's ranks that hold rows (all ranks hold the same estimator parameters).
        if first:
            self._y_1d = _agreed_y_1d(addr, y, int(state["n_targets"]))
        self._finish(np.dtype(_dtype_name(X)), addr)
        return self

    def _finish(self, dtype, addr):
        state = self._partial_state
        # The solve is replicated; agreed on (collective) so that a failing factorisation raises
        # on every rank, naming the rank.
        res = _core.lr_solve(state, np.ascontiguousarray(self._alpha_vector(), dtype=np.float64),
                             bool(self.fit_intercept), float(getattr(self, "tol", 1e-6)),
                             bool(getattr(self, "_solve_on_gpu", False)), self._needs_spectrum,
                             type(self).__name__, addr, True)
        coef = cast_result(res["coef"], dtype)
        intercept = cast_result(res["intercept"], dtype)
        self.coef_ = coef[0].copy() if self._y_1d else coef
        if not self.fit_intercept:
            self.intercept_ = 0.0  # as scikit-learn, whatever the number of targets
        else:
            self.intercept_ = intercept[0] if self._y_1d else intercept
        finish_features(self, state["n_features"])
        self._set_solver_attributes(res)

    # Ridge needs no spectrum; LinearRegression's singular_ is computed when first read (below).
    _needs_spectrum = False

    def _set_solver_attributes(self, res):
        pass

    def predict(self, X):
        """Predictions for this rank's rows (local); a CUDA X gives an array of its kind on its GPU."""
        check_is_fitted(self)
        check_fitted_state(self, "coef_", "intercept_")
        coef = np.asarray(self.coef_)
        if is_cuda_array(X) and getattr(self, "device", "auto") != "cpu":
            X = check_device_input(self, X)
            like = lambda a: device_like(X, np.ascontiguousarray(a, dtype=coef.dtype))  # noqa: E731
            return X @ like(coef.T) + like(np.asarray(self.intercept_))
        if is_cuda_array(X):
            X = to_host(X)
        X = self._local_X(X, reset=False, finite=True)
        return X @ coef.T + self.intercept_

    def score(self, X, y, sample_weight=None):
        """R² of the predictions over all ranks' rows (collective), averaged over targets."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            check_is_fitted(self)
            # R² needs finite predictions (scikit-learn's r2_score refuses NaN too)
            check_fitted_state(self, "coef_", "intercept_", finite=True)
            Xl, y, Y, w, _ = _local_Xy(self, X, y, sample_weight, reset=False)
            P = self.predict(Xl)
            # The metric needs only per-target sums: device predictions and targets come to the
            # host (n values each), X stays where it is.
            if is_cuda_array(P):
                P, Y = to_host(P), to_host(Y)
                w = None if w is None else to_host(w)
            P = np.asarray(P)
            Y = np.ascontiguousarray(Y)
            P = np.ascontiguousarray(P.reshape(-1, 1) if P.ndim == 1 else P, dtype=Y.dtype)
            if P.shape != Y.shape:
                raise ValueError(f"y has {Y.shape[1]} targets but the model predicts {P.shape[1]}")
        return float(np.mean(_core.r2_score(addr, Y, P, w)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


def _agreed_y_1d(addr, y, n_targets):
    """Whether y was 1-D, agreed over the ranks (a rank without rows may pass y of shape (0,))."""
    flag = np.array([0 if y.ndim == 2 and y.shape[0] > 0 else 1], dtype=np.int64)
    _core.allreduce(addr, flag, "min")
    return bool(flag[0]) and n_targets == 1


class LinearRegression(_NormalEquationsRegressor, _SkLinearRegression):
    """Ordinary least squares over the rows of all ranks (scikit-learn's LinearRegression).

    ``fit`` merges every rank's weighted, centred ``X^T X`` and ``X^T y`` exactly (Chan merges
    against the global means) and solves by Cholesky, or, when ``X`` (centred, over all ranks) is
    rank-deficient -- collinear columns, fewer rows than features -- returns scikit-learn's
    minimum-norm solution from a symmetric eigen-decomposition. ``coef_``, ``intercept_``,
    ``rank_`` and ``singular_`` are identical on every rank. ``predict`` is local; ``score`` is
    the R² over all ranks' rows (collective).

    Parameters
    ----------
    fit_intercept : bool, default=True
    copy_X : bool, default=True
        X is never modified (kept for scikit-learn compatibility).
    tol : float, default=1e-6
        Singular values of X below ``tol`` times the largest count as zero (the rank cutoff
        scikit-learn passes to lstsq).
    positive : bool, default=False
        True raises NotImplementedError (scikit-learn uses non-negative least squares).
    comm : mpi4py communicator or None
        None means :func:`spmdlearn.default_comm` (``MPI.COMM_WORLD``).
    device : {"auto", "cpu", "cuda"}, default="auto"
        "auto": a CUDA X (cupy, torch; y and sample_weight CUDA arrays on the same device) is
        fitted on its GPU in place; "cuda" copies host data to this rank's GPU; "cpu" brings
        device arrays to the host. ``predict`` of a CUDA array returns one of its kind.

    Notes
    -----
    Normal equations square the condition number of X: coefficients agree with scikit-learn's
    SVD-based lstsq to about cond(X)^2 * 1e-16 relative -- 1e-6 up to cond(X) ~ 1e5 (after
    centring when fit_intercept). Raw breast_cancer without an intercept (cond 1.5e6) agrees to
    6e-6. Sample weights must be >= 0.
    """

    _parameter_constraints = {
        "fit_intercept": ["boolean"],
        "copy_X": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "positive": ["boolean"],
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, *, fit_intercept=True, copy_X=True, tol=1e-6, positive=False, comm=None,
                 device="auto"):
        self.fit_intercept = fit_intercept
        self.copy_X = copy_X
        self.tol = tol
        self.positive = positive
        self.comm = comm
        self.device = device

    def fit(self, X, y, sample_weight=None):
        """Fit on all ranks' rows (collective)."""
        return self._merge(X, y, sample_weight, reset=True)

    def _set_solver_attributes(self, res):
        self.rank_ = int(res["rank"])
        # as lstsq: min(n_samples, n_features) values (n_samples over all ranks)
        k = min(int(self._partial_state["n_rows"]), int(self._partial_state["n_features"]))
        self._spectrum_k = k
        self._spectrum_fit_intercept = bool(self.fit_intercept)
        # Empty when the solver proved the rank full without the spectrum (see singular_).
        self._singular = cast_result(res["singular"][:k], self.coef_.dtype) if len(res["singular"]) else None

    @property
    def singular_(self):
        """Singular values of the (centred) X over all ranks, descending (scikit-learn's ``singular_``).

        When the fit proved X of full rank by a Cholesky bound it skipped the eigen-decomposition
        (about 1 ms at 100 features, as much as a GPU pass over 2M rows); the values are then
        computed on first read by the same C++ solve with the spectrum asked for, from the merged
        normal equations on the host: identical on every rank.
        """
        if "_spectrum_k" not in self.__dict__:
            raise AttributeError("'LinearRegression' object has no attribute 'singular_' (not fitted, or "
                                 "_spectrum_k is missing from a corrupt model state)")
        if self._singular is None:
            check_fitted_state(self, "coef_", "_partial_state", finite=True)
            k = fitted_count(self, "_spectrum_k")
            # Not collective: one rank may read the attribute alone (an error names this rank).
            res = _core.lr_solve(self._partial_state, np.zeros(0), bool(self._spectrum_fit_intercept),
                                 float(getattr(self, "tol", 1e-6)), False, True, type(self).__name__,
                                 self._resolve_comm()[1], False)
            self._singular = cast_result(res["singular"][:k], self.coef_.dtype)
        return self._singular


class Ridge(_NormalEquationsRegressor, _SkRidge):
    """L2-regularised least squares over the rows of all ranks (scikit-learn's Ridge).

    Solves ``(X^T X + alpha I) coef = X^T y`` on the merged, centred normal equations by Cholesky
    (scikit-learn's "cholesky" solver); ``alpha`` is a scalar or one value per target.

    Parameters
    ----------
    alpha : float or array of shape (n_targets,), default=1.0
    fit_intercept : bool, default=True
    copy_X : bool, default=True
    positive : bool, default=False
        True raises NotImplementedError.
    comm : mpi4py communicator or None
    device : {"auto", "cpu", "cuda"}, default="auto"
    """

    _caller = "Ridge"
    solver = "cholesky"  # not a parameter: read by scikit-learn's Ridge tags
    _parameter_constraints = {
        "alpha": [Interval(Real, 0, None, closed="left"), np.ndarray],
        "fit_intercept": ["boolean"],
        "copy_X": ["boolean"],
        "positive": ["boolean"],
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, alpha=1.0, *, fit_intercept=True, copy_X=True, positive=False, comm=None,
                 device="auto"):
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.copy_X = copy_X
        self.positive = positive
        self.comm = comm
        self.device = device

    def _alpha_vector(self):
        a = np.asarray(self.alpha, dtype=np.float64).reshape(-1)
        if np.any(~np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"alpha must be >= 0 and finite, got {self.alpha!r}")
        return a

    def _check_params(self):
        super()._check_params()
        self._alpha_vector()

    def fit(self, X, y, sample_weight=None):
        """Fit on all ranks' rows (collective)."""
        return self._merge(X, y, sample_weight, reset=True)

    def _set_solver_attributes(self, res):
        self.n_iter_ = None
        self.solver_ = "cholesky"


class _IncrementalMixin:
    """partial_fit: merge one round's blocks of all ranks into the replicated state and re-solve."""

    def partial_fit(self, X, y, sample_weight=None):
        """Merge this round's blocks of all ranks (collective)."""
        self._merge(X, y, sample_weight, reset=False)
        self.n_samples_seen_ = int(self._partial_state["n_rows"])
        return self

    def fit(self, X, y, sample_weight=None):
        """Fit on all ranks' rows, forgetting earlier rounds (collective)."""
        self._merge(X, y, sample_weight, reset=True)
        self.n_samples_seen_ = int(self._partial_state["n_rows"])
        return self


class IncrementalLinearRegression(_IncrementalMixin, LinearRegression):
    """LinearRegression over blocks arriving in several collective ``partial_fit`` calls.

    Each ``partial_fit`` merges the round's blocks of every rank (a rank without rows passes a
    ``(0, n_features)`` block) into the replicated normal-equation state and re-solves, so the
    attributes after any round equal ``LinearRegression`` fitted on all blocks of all ranks so far.
    """


class IncrementalRidge(_IncrementalMixin, Ridge):
    """Ridge over blocks arriving in several collective ``partial_fit`` calls (see
    IncrementalLinearRegression)."""
