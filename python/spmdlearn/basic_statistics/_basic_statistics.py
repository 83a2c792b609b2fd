from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from .. import _core
from .._base import (
    SPMDMixin,
    StateDict,
    _dtype_name,
    cast_result,
    check_fitted_state,
    device_weights,
    finish_features,
    fitted_count,
    is_cuda_array,
    local_weights,
)
from .._comm import collective

_NAMES = list(_core.bs_option_names())


def _parse_options(result_options):
    if isinstance(result_options, str):
        result_options = [result_options]
    try:
        names = list(result_options)
    except TypeError:
        raise ValueError(
            f"result_options must be a name or a list of names, got {result_options!r}"
        ) from None
    if not names:
        raise ValueError("result_options is empty")
    bits = 0
    for n in names:
        if not isinstance(n, str):
            raise ValueError(f"result_options entries must be strings, got {n!r}")
        bits |= _core.bs_parse_option(n)
    return bits


class _StatisticsBase(SPMDMixin, BaseEstimator):
    _state_marker = "n_samples_seen_"

    def _state_spec(self):
        d = fitted_count(self, "n_features_in_")
        return f"the model has n_features_in_={d}", {"_partial_state": StateDict("basic_statistics", d)}

    def _set_results(self, state, dtype):
        self._partial_state = state
        res = _core.bs_finalize(state, self._options)
        for name in _NAMES:
            if name in res:
                setattr(self, name + "_", cast_result(res[name], dtype))
            elif hasattr(self, name + "_"):
                delattr(self, name + "_")
        finish_features(self, state["n_features"])
        self.n_samples_seen_ = int(state["n_rows"])

    def _merge(self, X, sample_weight, *, reset):
        comm, addr = self._resolve_comm()
        with collective(addr, self):
            self._options = _parse_options(self.result_options)
            first = reset or not hasattr(self, "_partial_state")
            if not first:
                check_fitted_state(self, "_partial_state")
            X, to_device = self._device_X(X, reset=first)
            if is_cuda_array(X):
                w = device_weights(sample_weight, X)
            else:
                w = local_weights(sample_weight, X)
        state = None if first else self._partial_state
        state = _core.bs_partial_fit(addr, state, X, w, type(self).__name__, to_device)
        self._set_results(state, np.dtype(_dtype_name(X)))
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        return tags


class BasicStatistics(_StatisticsBase):
    """Column statistics over the rows of all ranks, computed in one pass.

    Parameters
    ----------
    result_options : str or list of str, default="all"
        Which statistics to compute: any of ``min, max, sum, mean, variance,
        standard_deviation, sum_squares, sum_squares_centered, second_order_raw_moment,
        variation`` or ``"all"``.
    comm : mpi4py communicator or None
        Ranks that take part; None means :func:`spmdlearn.default_comm` (``MPI.COMM_WORLD``).
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where to compute. "auto" follows the data: numpy on the CPU, a CUDA array (cupy, torch,
        anything with DLPack) in place on its GPU, without a copy. "cuda" copies host data to this
        rank's GPU (local rank modulo visible GPUs); "cpu" brings device data to the host.

    Attributes
    ----------
    min_, max_, sum_, mean_, variance_, standard_deviation_, sum_squares_,
    sum_squares_centered_, second_order_raw_moment_, variation_ : ndarray of shape (n_features,)
        The requested statistics (names and meanings as scikit-learn-intelex's BasicStatistics),
        in the input's dtype, identical on every rank. ``variance_`` uses ddof=1.
    n_samples_seen_ : int
        Rows over all ranks.

    Notes
    -----
    ``sample_weight`` follows scikit-learn's convention: a weight ``k`` counts a row ``k`` times
    (mean = Σwx/Σw, variance = Σw(x-mean)²/(Σw-1); ``min_``/``max_`` over rows of positive weight).
    scikit-learn-intelex instead reports the statistics of the products ``w * x``.
    ``fit`` is collective: every rank of ``comm`` must call it.
    """

    def __init__(self, result_options="all", comm=None, device="auto"):
        self.result_options = result_options
        self.comm = comm
        self.device = device

    def fit(self, X, y=None, sample_weight=None):
        """Compute the statistics of all ranks' rows (collective)."""
        return self._merge(X, sample_weight, reset=True)


class IncrementalBasicStatistics(_StatisticsBase):
    """BasicStatistics over blocks that arrive in several ``partial_fit`` calls.

    ``partial_fit`` is collective: every rank calls it the same number of times (a rank with no
    rows for a round passes an empty ``(0, n_features)`` block). Each call merges that round's
    blocks of every rank into the replicated state and updates the attributes on every rank, so
    reading an attribute never needs communication and can never hang.
    """

    def __init__(self, result_options="all", comm=None, device="auto"):
        self.result_options = result_options
        self.comm = comm
        self.device = device

    def partial_fit(self, X, y=None, sample_weight=None):
        """Add this round's blocks of every rank (collective)."""
        return self._merge(X, sample_weight, reset=False)

    def fit(self, X, y=None, sample_weight=None):
        """Forget previous blocks and compute on X of every rank (collective)."""
        return self._merge(X, sample_weight, reset=True)
