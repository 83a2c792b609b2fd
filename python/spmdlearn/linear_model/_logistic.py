"""LogisticRegression (binary and multinomial, L2 or no penalty, lbfgs / newton-cg) over all ranks.

fit and score are collective; predict, predict_proba, predict_log_proba and decision_function are
local. The C++ core evaluates the loss and gradient of scikit-learn's objective on every rank's
rows with BLAS and allreduces them once per evaluation; the optimiser runs identically everywhere.
"""
from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.exceptions import DataConversionWarning as DataConversionWarning_
from sklearn.linear_model import LogisticRegression as _SkLogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted, validate_data

from .. import _core
from .._base import (
    FLOAT_DTYPES,
    SPMDMixin,
    StateArray,
    StateLabels,
    _dtype_name,
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


class LogisticRegression(SPMDMixin, _SkLogisticRegression):
    """L2-penalised logistic regression over the rows of all ranks (scikit-learn's defaults).

    Two classes: one coefficient row (the log-odds of ``classes_[1]``); more: the multinomial
    (softmax) model with one row per class, as scikit-learn's default. ``classes_`` is the sorted
    union of the labels of all ranks (a rank may lack some classes or hold no rows); labels may be
    numbers or strings. The objective is scikit-learn's -- weighted mean log-loss plus
    ``||coef||^2 / (2 C sum(w))`` -- minimised by L-BFGS (``solver="lbfgs"``) or Newton-CG with
    Hessian-vector products (``"newton-cg"``); each loss/gradient (or Hessian-vector product) is
    one allreduce. Stops when max |gradient| <= ``tol`` (L-BFGS also when the loss stops
    decreasing, as scipy's L-BFGS-B); a ConvergenceWarning when ``max_iter`` is reached.

    Parameters
    ----------
    penalty : {"l2", None}, default="l2"
    C : float, default=1.0
    fit_intercept : bool, default=True
    tol : float, default=1e-4
    max_iter : int, default=100
    solver : {"lbfgs", "newton-cg"}, default="lbfgs"
    class_weight : dict, "balanced" or None
        "balanced" uses the class counts of all ranks.
    warm_start : bool, default=False
    verbose : int, default=0
        > 0: one line per iteration (loss, max |gradient|) printed by rank 0.
    comm : mpi4py communicator or None
    device : {"auto", "cpu", "cuda"}, default="auto"
        "auto": a CUDA X (cupy, torch; y and sample_weight CUDA arrays on the same device) is
        fitted on its GPU (loss and gradient by cuBLAS and one kernel per row); "cuda" copies
        host data to this rank's GPU; "cpu" brings device arrays to the host. ``predict``,
        ``predict_proba`` and ``decision_function`` of a CUDA array return one of its kind.

    Attributes
    ----------
    classes_, coef_ (1 or n_classes rows), intercept_, n_iter_ (array of one int), n_features_in_:
    identical on every rank.
    """

    _parameter_constraints = {
        "penalty": [StrOptions({"l2"}), None],
        "C": [Interval(Real, 0, None, closed="neither")],
        "fit_intercept": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "solver": [StrOptions({"lbfgs", "newton-cg"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "comm": "no_validation",
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, penalty="l2", *, C=1.0, fit_intercept=True, tol=1e-4, max_iter=100,
                 solver="lbfgs", class_weight=None, warm_start=False, verbose=0, comm=None,
                 device="auto"):
        self.penalty = penalty
        self.C = C
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.verbose = verbose
        self.comm = comm
        self.device = device

    _state_marker = "n_iter_"

    def _state_spec(self, warm_start=False):
        # classes_ comes first in every check: the shapes of coef_ and intercept_ derive from it.
        # A warm start compares coef_ with the new data itself (n_features_in_ is already the new
        # one), so its width is free there.
        classes = vars(self).get("classes_")
        n = len(classes) if isinstance(classes, np.ndarray) and classes.ndim == 1 else 0
        kp = 1 if n == 2 else n
        d = None if warm_start else fitted_count(self, "n_features_in_")
        context = f"classes_ holds {n} classes" + ("" if warm_start else f" and n_features_in_={d}")
        return context, {
            "classes_": StateLabels(),
            "coef_": StateArray((kp, d), sparse=True),
            "intercept_": StateArray((kp,)),
        }

    # scikit-learn's LogisticRegression methods read these; they are not parameters here.
    l1_ratio = 0.0
    dual = False
    intercept_scaling = 1.0
    random_state = None
    n_jobs = None

    def _local_Xy(self, X, y, sample_weight, *, reset):
        """(X, y, w, on_device): a CUDA X stays on its GPU with y (and w) CUDA arrays there too;
        host data is validated here (device="cuda": copied to this rank's GPU by the C++ core)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        device = getattr(self, "device", "auto")
        if is_cuda_array(X) and device != "cpu":
            check_cuda_array(X, "X")
            if not is_cuda_array(y):
                raise ValueError("X is a CUDA array, so y must be one too (same device)")
            if len(y.shape) != 1:
                raise ValueError(f"y should be a 1d array, got an array of shape {tuple(y.shape)} instead.")
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                                 f"[{X.shape[0]}, {y.shape[0]}]")
            if reset:
                self.n_features_in_ = int(X.shape[1])
            elif X.shape[1] != self.n_features_in_ and X.shape[0] > 0:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input.")
            return X, y, device_weights(sample_weight, X), True
        if is_cuda_array(X) or is_cuda_array(y):
            X, y = (to_host(a) if is_cuda_array(a) else a for a in (X, y))
            if is_cuda_array(sample_weight):
                sample_weight = to_host(sample_weight)
        X = validate_data(self, widen_empty_block(self, X, reset=reset), reset=reset, dtype=list(FLOAT_DTYPES), order="C",
                          ensure_all_finite=False, ensure_min_samples=0, ensure_min_features=0,
                          accept_sparse=False)
        y = check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=False, ensure_min_samples=0,
                        input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected.",
                          DataConversionWarning_)
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y should be a 1d array, got an array of shape {y.shape} instead.")
        check_consistent_length(X, y)
        if len(y):
            if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
                raise ValueError("Input y contains NaN or infinity.")
            check_classification_targets(y)
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=X.dtype)
            if w.ndim == 0:
                w = np.full(X.shape[0], w, dtype=X.dtype)
            if w.shape != (X.shape[0],):
                raise ValueError(f"sample_weight.shape == {w.shape}, expected ({X.shape[0]},)!")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("sample_weight must be finite and >= 0")
        if device == "cuda" and not _core.built_with_cuda():
            raise NotImplementedError("device='cuda' but spmdlearn was built without CUDA support "
                                      "(rebuild with CMAKE_ARGS=-DSPMDLEARN_ENABLE_CUDA=ON)")
        return X, y, w, False

    def fit(self, X, y, sample_weight=None):
        """Fit on all ranks' rows (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._validate_params()
            X, y, w, on_device = self._local_Xy(X, y, sample_weight, reset=True)
            local_classes = _unique(y, on_device)
        # The sorted union of all ranks' labels (object arrays for strings, as np.unique gives).
        gathered = comm.allgather(local_classes)
        nonempty = [g for g in gathered if len(g)]
        with collective(addr, self):
            classes = np.unique(np.concatenate(nonempty)) if nonempty else np.array([])
            if len(classes) < 2:
                raise ValueError(
                    "This solver needs samples of at least 2 classes in the data, but the data "
                    f"contains only one class: {classes[0] if len(classes) else None!r}"
                )
            y_idx = _encode(y, classes, on_device)
            cw = self._class_weights(classes)
        counts = _bincount(y_idx, len(classes), on_device)
        _core.allreduce(addr, counts, "sum")  # global class counts (for "balanced")
        # n_features agreed over the ranks (a rank may pass a (0, 0) block): the warm start must
        # be taken, or not, on every rank alike.
        cols = np.array([X.shape[1]], dtype=np.int64)
        _core.allreduce(addr, cols, "max")
        dtype = np.dtype(_dtype_name(X))
        with collective(addr, self):
            if cw is None and self.class_weight == "balanced":
                n = counts.sum()
                cw = n / (len(classes) * np.maximum(counts, 1)).astype(np.float64)
            if cw is not None:
                cls_w = (device_like(X, cw.astype(dtype)) if on_device else cw.astype(dtype))[y_idx]
                w = cls_w if w is None else w * cls_w
            init = self._warm_start_coef(classes, int(cols[0]))
            if not on_device and w is not None:
                w = np.ascontiguousarray(w, dtype=dtype)
            to_device = (not on_device) and getattr(self, "device", "auto") == "cuda"
        res = _core.logreg_fit(
            addr, X, y_idx, len(classes), w,
            float(self.C), self.penalty is not None, bool(self.fit_intercept), float(self.tol),
            int(self.max_iter), self.solver, int(self.verbose), init, to_device,
        )
        self.classes_ = classes
        self.coef_ = res["coef"].astype(dtype, copy=False)
        self.intercept_ = res["intercept"].astype(dtype, copy=False)
        self.n_iter_ = np.array([res["n_iter"]], dtype=np.int32)
        finish_features(self, self.coef_.shape[1])
        if not res["converged"]:
            warnings.warn(
                f"{self.solver} failed to converge after {res['n_iter']} iteration(s) "
                f"({res['message']}). Increase the number of iterations (max_iter) or scale the "
                "data.", ConvergenceWarning,
            )
        return self

    def _class_weights(self, classes):
        if self.class_weight is None or self.class_weight == "balanced":
            return None
        cw = np.ones(len(classes))
        for label, weight in self.class_weight.items():
            idx = np.searchsorted(classes, label)
            if idx >= len(classes) or classes[idx] != label:
                raise ValueError(f"The classes, {[label]}, are not in class, {classes}")
            cw[idx] = weight
        return cw

    def _warm_start_coef(self, classes, d):
        if not (self.warm_start and hasattr(self, "coef_")):
            return None
        # its values start the optimiser: NaN/inf would be its first step
        check_fitted_state(self, "classes_", "coef_", "intercept_", finite=True, warm_start=True)
        kp = 1 if len(classes) == 2 else len(classes)
        if self.coef_.shape != (kp, d) or not np.array_equal(self.classes_, classes):
            return None
        theta = self.coef_.astype(np.float64)
        if self.fit_intercept:
            theta = np.hstack([theta, np.asarray(self.intercept_, dtype=np.float64)[:, None]])
        return np.ascontiguousarray(theta.ravel())

    def decision_function(self, X):
        """Scores of this rank's rows (local); a rank without rows gets an empty array. A CUDA X
        gives an array of its kind on its GPU."""
        check_is_fitted(self)
        check_fitted_state(self, "classes_", "coef_", "intercept_")
        if is_cuda_array(X) and getattr(self, "device", "auto") != "cpu":
            X = check_device_input(self, X)
            dt = np.dtype(_dtype_name(X))
            scores = X @ device_like(X, self.coef_.T.astype(dt)) + device_like(X, self.intercept_.astype(dt))
            return scores.reshape(-1) if scores.shape[1] == 1 else scores
        if is_cuda_array(X):
            X = to_host(X)
        X = self._local_X(X, reset=False, finite=True)
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X):
        """Class probabilities of this rank's rows (local; on the GPU for a CUDA X)."""
        check_is_fitted(self)
        check_fitted_state(self, "classes_", "coef_", "intercept_")
        if is_cuda_array(X) and getattr(self, "device", "auto") != "cpu":
            s = self.decision_function(X)
            if len(s.shape) == 1:
                p1 = 1.0 / (1.0 + _exp(-s))
                return _stack([1.0 - p1, p1])
            e = _exp(s - s.max(1, keepdims=True) if hasattr(s, "get") else s - s.max(1, keepdim=True).values)
            return e / e.sum(1, keepdims=True) if hasattr(e, "get") else e / e.sum(1, keepdim=True)
        return super().predict_proba(X)

    def predict(self, X):
        """Class labels of this rank's rows (local; a CUDA X gives a device array of labels)."""
        if is_cuda_array(X) and getattr(self, "device", "auto") != "cpu":
            s = self.decision_function(X)
            idx = (s > 0).astype("int64") if len(s.shape) == 1 and hasattr(s, "get") else (
                (s > 0).long() if len(s.shape) == 1 else s.argmax(1))
            return device_like(X, np.asarray(self.classes_))[idx]
        # scikit-learn's rule on our decision_function (its predict indexes the first prediction,
        # which a rank without rows does not have)
        s = self.decision_function(X)
        idx = (s > 0).astype(np.intp) if s.ndim == 1 else s.argmax(axis=1)
        return self.classes_[idx]

    def score(self, X, y, sample_weight=None):
        """Accuracy over all ranks' rows (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            check_is_fitted(self)
            check_fitted_state(self, "classes_", "coef_", "intercept_")
            Xl, yl, w, on_device = self._local_Xy(X, y, sample_weight, reset=False)
            pred = self.predict(Xl) if Xl.shape[0] else yl[:0]
            if on_device:  # n labels to the host; X stays where it is
                pred, yl = to_host(pred), to_host(yl)
                w = None if w is None else to_host(w)
            ww = np.ones(len(yl)) if w is None else np.asarray(w, dtype=np.float64)
            sums = np.array([float(np.sum(ww * (np.asarray(pred) == np.asarray(yl)))), float(np.sum(ww))])
        _core.allreduce(addr, sums, "sum")
        return float(sums[0] / sums[1]) if sums[1] > 0 else 0.0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


# --- small helpers for labels on the host or on a GPU (cupy or torch) --------------------------

def _unique(y, on_device):
    if not on_device:
        return np.unique(y)
    return np.asarray(to_host(y.unique() if hasattr(y, "unique") and not hasattr(y, "get") else _cupy().unique(y)))


def _encode(y, classes, on_device):
    """Class indices (int32) of y's labels in the sorted classes, on y's device."""
    if not on_device:
        return np.ascontiguousarray(np.searchsorted(classes, y).astype(np.int32))
    if hasattr(y, "get"):  # cupy
        cp = _cupy()
        return cp.ascontiguousarray(cp.searchsorted(cp.asarray(classes, dtype=y.dtype), y).astype(cp.int32))
    import torch

    c = torch.as_tensor(np.asarray(classes), device=y.device, dtype=y.dtype)
    return torch.searchsorted(c, y.contiguous()).to(torch.int32).contiguous()


def _bincount(y_idx, n_classes, on_device):
    if not on_device:
        return np.bincount(y_idx, minlength=n_classes).astype(np.int64)
    if hasattr(y_idx, "get"):
        return to_host(_cupy().bincount(y_idx, minlength=n_classes)).astype(np.int64)
    return to_host(y_idx.long().bincount(minlength=n_classes)).astype(np.int64)


def _exp(a):
    return _cupy().exp(a) if hasattr(a, "get") else a.exp()


def _stack(cols):
    if hasattr(cols[0], "get"):
        return _cupy().stack(cols, axis=1)
    import torch

    return torch.stack(cols, dim=1)


def _cupy():
    import cupy

    return cupy
