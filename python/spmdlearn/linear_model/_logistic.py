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
from .._base import FLOAT_DTYPES, SPMDMixin, finish_features, is_cuda_array, to_host
from .._comm import collective
from ._linear import host_Xy


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

    # scikit-learn's LogisticRegression methods read these; they are not parameters here.
    l1_ratio = 0.0
    dual = False
    intercept_scaling = 1.0
    random_state = None
    n_jobs = None

    def _local_Xy(self, X, y, sample_weight, *, reset):
        X, y = host_Xy(self, X, y)
        X = validate_data(self, X, reset=reset, dtype=list(FLOAT_DTYPES), order="C",
                          ensure_all_finite=False, ensure_min_samples=0, accept_sparse=False)
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
        return X, y, w

    def fit(self, X, y, sample_weight=None):
        """Fit on all ranks' rows (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._validate_params()
            X, y, w = self._local_Xy(X, y, sample_weight, reset=True)
            local_classes = np.unique(y)
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
            y_idx = np.searchsorted(classes, y).astype(np.int32)
            cw = self._class_weights(classes)
        counts = np.bincount(y_idx, minlength=len(classes)).astype(np.int64)
        _core.allreduce(addr, counts, "sum")  # global class counts (for "balanced")
        with collective(addr, self):
            if cw is None and self.class_weight == "balanced":
                n = counts.sum()
                cw = n / (len(classes) * np.maximum(counts, 1)).astype(np.float64)
            if cw is not None:
                cls_w = cw[y_idx].astype(X.dtype)
                w = cls_w if w is None else w * cls_w
            init = self._warm_start_coef(classes, X.shape[1])
        res = _core.logreg_fit(
            addr, X, np.ascontiguousarray(y_idx), len(classes),
            None if w is None else np.ascontiguousarray(w, dtype=X.dtype),
            float(self.C), self.penalty is not None, bool(self.fit_intercept), float(self.tol),
            int(self.max_iter), self.solver, int(self.verbose), init,
        )
        self.classes_ = classes
        self.coef_ = res["coef"].astype(X.dtype, copy=False)
        self.intercept_ = res["intercept"].astype(X.dtype, copy=False)
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
        kp = 1 if len(classes) == 2 else len(classes)
        if self.coef_.shape != (kp, d) or not np.array_equal(self.classes_, classes):
            return None
        theta = self.coef_.astype(np.float64)
        if self.fit_intercept:
            theta = np.hstack([theta, np.asarray(self.intercept_, dtype=np.float64)[:, None]])
        return np.ascontiguousarray(theta.ravel())

    def decision_function(self, X):
        """Scores of this rank's rows (local); a rank without rows gets an empty array."""
        check_is_fitted(self)
        if is_cuda_array(X):
            X = to_host(X)
        X = self._local_X(X, reset=False, finite=True)
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def score(self, X, y, sample_weight=None):
        """Accuracy over all ranks' rows (collective)."""
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            check_is_fitted(self)
            Xl, yl, w = self._local_Xy(X, y, sample_weight, reset=False)
            pred = self.predict(Xl) if len(Xl) else yl[:0]
            ww = np.ones(len(yl)) if w is None else w.astype(np.float64)
            sums = np.array([float(np.sum(ww * (pred == yl))), float(np.sum(ww))])
        _core.allreduce(addr, sums, "sum")
        return float(sums[0] / sums[1]) if sums[1] > 0 else 0.0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

