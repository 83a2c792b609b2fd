"""What every spmdlearn estimator shares: communicator handling, clone support, input checks."""
from __future__ import annotations

import numpy as np
from sklearn.utils.validation import validate_data

from . import _comm

FLOAT_DTYPES = (np.float64, np.float32)


class SPMDMixin:
    """Mixin for estimators whose fit is collective over an MPI communicator.

    ``comm`` (constructor argument) is an mpi4py communicator or None (then
    :func:`spmdlearn.default_comm`, i.e. ``MPI.COMM_WORLD`` unless a :func:`spmdlearn.comm_context`
    is active). Communicators are handles: cloning an estimator shares its communicator instead
    of copying it (mpi4py communicators other than the predefined ones cannot be deep-copied).
    """

    def __sklearn_clone__(self):
        from sklearn.base import clone

        params = self.get_params(deep=False)
        new = {k: (v if k == "comm" else clone(v, safe=False)) for k, v in params.items()}
        return type(self)(**new)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN/inf are rejected on every rank (one pass, in C++), never silently skipped.
        tags.input_tags.allow_nan = False
        # numpy in, numpy out; device arrays arrive with the CUDA backend.
        tags.array_api_support = False
        return tags

    def _resolve_comm(self):
        return _comm.resolve(self.comm)

    def _local_X(self, X, *, reset, finite=False):
        """This rank's block as a C-contiguous float32/float64 array (ints become float64).

        Zero rows are fine (a rank may hold none); NaN/inf are checked by the C++ core in its single
        pass over the data unless ``finite`` asks for it here (local-only methods).
        """
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=list(FLOAT_DTYPES),
            order="C",
            ensure_all_finite=finite,
            ensure_min_samples=0,  # a rank may hold no rows, in local methods too
            ensure_min_features=1 if finite else 0,
            accept_sparse=False,
        )


def local_weights(sample_weight, X):
    """sample_weight as a 1-D C-contiguous array of X's dtype (length and values checked in C++)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.ndim == 0:
        w = np.full(X.shape[0], w, dtype=X.dtype)
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, got shape {w.shape}")
    return np.ascontiguousarray(w, dtype=X.dtype)


def finish_features(estimator, n_features):
    """Set n_features_in_ to the global value (an empty rank's local array may say 0)."""
    estimator.n_features_in_ = int(n_features)
