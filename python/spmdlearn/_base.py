"""What every spmdlearn estimator shares: communicator handling, clone support, input checks."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import validate_data

from . import _comm
from ._comm import collective_method

FLOAT_DTYPES = (np.float64, np.float32)


_PARAM_NAMES = {}  # class -> its __init__ parameter names (SPMDMixin._get_param_names)


class SPMDMixin:
    """Mixin for estimators whose fit is collective over an MPI communicator.

    ``comm`` (constructor argument) is an mpi4py communicator or None (then
    :func:`spmdlearn.default_comm`, i.e. ``MPI.COMM_WORLD`` unless a :func:`spmdlearn.comm_context`
    is active). Communicators are handles: cloning an estimator shares its communicator instead
    of copying it (mpi4py communicators other than the predefined ones cannot be deep-copied).
    """

    # Public methods that are collective (every rank calls them, in the same order). Each is
    # wrapped once by collective_method: one thread per communicator, the call's name in every
    # agreement, and a closing agreement (see _comm.collective_method).
    _collective_methods = ("fit", "partial_fit", "score", "fit_transform", "fit_predict")
    # Fitted attributes that hold this rank's rows (not compared across ranks).
    _local_attributes = ()
    # Private attributes that carry incremental state and are compared across ranks like the
    # fitted attributes when a call reads them (partial_fit, score, a warm start).
    _agreed_private_state = ("_partial_state",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Methods found anywhere in the MRO (mixins such as _IncrementalMixin are not SPMDMixin
        # subclasses; a user's subclass may override fit), except scikit-learn's own, which are
        # local (e.g. IncrementalPCA.score) or call a wrapped method (fit_transform -> fit).
        for name in cls._collective_methods:
            f = getattr(cls, name, None)
            if (callable(f) and not getattr(f, "_spmdlearn_collective", False)
                    and not (getattr(f, "__module__", "") or "").startswith("sklearn")):
                setattr(cls, name, collective_method(f))

    def __sklearn_clone__(self):
        from sklearn.base import clone

        params = self.get_params(deep=False)
        new = {k: (v if k == "comm" else clone(v, safe=False)) for k, v in params.items()}
        return type(self)(**new)

    @classmethod
    def _get_param_names(cls):
        # scikit-learn inspects __init__'s signature on every get_params(); a fit calls it twice
        # (parameter validation, and the parameter checksum every rank agrees on): ~60 us of a
        # 1.9 ms GPU fit. The signature of a class does not change: inspect it once.
        names = _PARAM_NAMES.get(cls)
        if names is None:
            names = _PARAM_NAMES[cls] = tuple(super()._get_param_names())
        return list(names)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN/inf are rejected on every rank (one pass, in C++), never silently skipped.
        tags.input_tags.allow_nan = False
        # numpy in, numpy out; device arrays arrive with the CUDA backend.
        tags.array_api_support = False
        return tags

    def __setstate__(self, state):
        super().__setstate__(state)
        # An unpickled model is checked at once, so that a corrupt or foreign state is reported
        # where it was loaded, naming the attribute -- not later, inside a method, or never.
        # _state_marker: the attribute a successful fit sets last, so that a model pickled before
        # its first fit, or after a fit that failed half-way, is not taken for a corrupt one.
        marker = getattr(self, "_state_marker", None)
        if marker is not None and marker in state:
            check_fitted_state(self)

    def _resolve_comm(self):
        return _comm.resolve(self.comm)

    def _device_X(self, X, *, reset):
        """(X, to_device): a CUDA array stays where it is (checked here: 2-D, float32/float64);
        host data is converted as usual and, with device="cuda", copied to this rank's GPU by the
        C++ core; device="cpu" brings a CUDA array to the host."""
        device = getattr(self, "device", "auto")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if is_cuda_array(X):
            if device == "cpu":
                X = to_host(X)
            else:
                check_cuda_array(X, "X")
                X = widen_empty_block(self, X, reset=reset)
                if reset:
                    self.n_features_in_ = int(X.shape[1])
                    if hasattr(self, "feature_names_in_"):
                        del self.feature_names_in_
                elif X.shape[1] != getattr(self, "n_features_in_", X.shape[1]) and X.shape[0] > 0:
                    raise ValueError(
                        f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                        f"{self.n_features_in_} features as input."
                    )
                return X, False
        X = self._local_X(X, reset=reset)
        if device == "cuda":
            from . import _core

            if not _core.built_with_cuda():
                raise NotImplementedError(
                    "device='cuda' but spmdlearn was built without CUDA support "
                    "(rebuild with CMAKE_ARGS=-DSPMDLEARN_ENABLE_CUDA=ON)"
                )
        return X, device == "cuda"

    def _local_X(self, X, *, reset, finite=False):
        """This rank's block as a C-contiguous float32/float64 array (ints become float64).

        Zero rows are fine (a rank may hold none); NaN/inf are checked by the C++ core in its single
        pass over the data unless ``finite`` asks for it here (local-only methods).
        """
        return validate_data(
            self,
            widen_empty_block(self, X, reset=reset),
            reset=reset,
            dtype=list(FLOAT_DTYPES),
            order="C",
            ensure_all_finite=finite,
            ensure_min_samples=0,  # a rank may hold no rows, in local methods too
            ensure_min_features=1 if finite else 0,
            accept_sparse=False,
        )


def widen_empty_block(estimator, X, *, reset):
    """A (0, 0) block stands for (0, n_features_in_) once the estimator knows n_features_in_.

    A rank without rows may not know the width of the data (DESIGN section 2), so every method,
    collective or local, accepts an empty (0, 0) block from it; scikit-learn's validation would
    refuse it as having the wrong number of features. Only host arrays of exactly shape (0, 0):
    a (0, d') block with another d' is still an error. A CUDA array stays one of its kind (cupy,
    torch: an empty reshape)."""
    if reset or not hasattr(estimator, "n_features_in_"):
        return X
    shape = getattr(X, "shape", None)
    if shape is None or tuple(shape) != (0, 0):
        return X
    if is_cuda_array(X):
        return X.reshape(0, int(estimator.n_features_in_)) if hasattr(X, "reshape") else X
    dtype = getattr(X, "dtype", None)
    dtype = dtype if dtype in FLOAT_DTYPES else np.float64
    return np.empty((0, int(estimator.n_features_in_)), dtype=dtype)


# --- checked restores ----------------------------------------------------------------------------
#
# A fitted model's attributes may come from a pickle, from another model or from a user's hand, and
# the C++ core reads arrays by the sizes the model declares: an array of the wrong size would be
# read past its end. Each estimator describes what its fitted state must look like (_state_spec:
# the dimensions it derives from its own counts, and a rule per attribute); check_fitted_state
# checks the attributes a method is about to read against it and raises ValueError naming the
# attribute. Collective methods call it inside their `collective` block, so a state that is corrupt
# on one rank raises on every rank; local methods call it before reading; __setstate__ calls it on
# everything a fitted model carries. State dicts (_partial_state) are checked by the C++ helper
# (_core.check_state), the same code that reads them for the core.


def _corrupt(est, problem):
    return ValueError(f"{type(est).__name__}: {problem}; the model state is corrupt or from another model")


def _shape_text(shape):
    inner = ", ".join("any" if n is None else str(n) for n in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _check_finite(est, name, values):
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise _corrupt(est, f"{name} contains NaN or infinity")


def fitted_count(est, name, *, low=0):
    """A fitted (or parameter) integer the state's shapes derive from, such as n_features_in_ or
    n_clusters: a Python or numpy integer >= low, else ValueError naming it."""
    if name not in vars(est) and not hasattr(type(est), name):
        raise _corrupt(est, f"{name} is missing")
    value = getattr(est, name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _corrupt(est, f"{name} is {value!r}, expected an integer >= {low}")
    if value < low:
        raise _corrupt(est, f"{name} is {value}, expected an integer >= {low}")
    return int(value)


class StateArray:
    """Rule for a fitted array attribute: a floating-point numpy array of one of `shapes` (None:
    any extent; () also accepts a Python or numpy real scalar). none: None is allowed too. sparse:
    a scipy sparse matrix is allowed too (coef_ after scikit-learn's sparsify())."""

    def __init__(self, *shapes, none=False, sparse=False):
        self.shapes, self.none, self.sparse = shapes, none, sparse

    def check(self, est, name, value, context, finite):
        if value is None:
            if self.none:
                return
            raise _corrupt(est, f"{name} is None but {context}")
        want = " or ".join(_shape_text(s) for s in self.shapes)
        if () in self.shapes and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        ):
            value = np.asarray(value, dtype=np.float64)  # a scalar (intercept_ = 0.0 without intercept)
        sparse = self.sparse and sp.issparse(value)
        if not isinstance(value, np.ndarray) and not sparse:
            raise _corrupt(est, f"{name} is a {type(value).__name__}, expected an array of shape {want}")
        if value.dtype.kind != "f":
            raise _corrupt(est, f"{name} has dtype {value.dtype}, expected floating-point numbers")
        if not any(len(s) == value.ndim and all(w is None or w == n for w, n in zip(s, value.shape))
                   for s in self.shapes):
            raise _corrupt(est, f"{name} has shape {value.shape} but {context} (expected {want})")
        if finite:
            _check_finite(est, name, value.data if sparse else value)


class StateLabels:
    """Rule for classes_: a 1-D array of at least `low` labels (any dtype: numbers or strings)."""

    def __init__(self, low=2):
        self.low = low

    def check(self, est, name, value, context, finite):
        if not isinstance(value, np.ndarray) or value.ndim != 1 or len(value) < self.low:
            shape = getattr(value, "shape", type(value).__name__)
            raise _corrupt(est, f"{name} is {shape}, expected a 1-D array of at least {self.low} labels")


class StateFlag:
    """Rule for a fitted flag (a Python or numpy bool)."""

    def check(self, est, name, value, context, finite):
        if not isinstance(value, (bool, np.bool_)):
            raise _corrupt(est, f"{name} is {value!r}, expected True or False")


class StateDict:
    """Rule for a state dict (_partial_state) of one of the C++ core's kinds ("basic_statistics",
    "covariance", "normal_equations"): checked by the C++ helper, then its n_features against the
    model's."""

    def __init__(self, kind, n_features):
        self.kind, self.n_features = kind, n_features

    def check(self, est, name, value, context, finite):
        from . import _core

        _core.check_state(self.kind, value, type(est).__name__)
        if value["n_features"] != self.n_features:
            raise _corrupt(est, f"{name}['n_features'] is {value['n_features']} but {context}")
        if finite:
            for key, entry in value.items():
                if isinstance(entry, np.ndarray):
                    _check_finite(est, f"{name}[{key!r}]", entry)


def check_fitted_state(est, *names, finite=False, **spec):
    """Check the fitted attributes `names` (default: all in est._state_spec(**spec)) before a
    method reads them; ValueError naming the first one that does not fit the model. finite: NaN
    and infinity are refused too, where the method cannot give a meaningful result from them (a
    factorisation of merged state, a likelihood, the start of an optimiser)."""
    context, rules = est._state_spec(**spec)
    for name in names or rules:
        if name not in vars(est):
            raise _corrupt(est, f"{name} is missing")
        rules[name].check(est, name, vars(est)[name], context, finite)


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


def cast_result(a, dtype):
    """A float64 result of the C++ core in the estimator's dtype. Values beyond float32's range
    become +-inf, the documented result for them (docs/reliability.md, "Extreme values"), without
    numpy's overflow warning."""
    with np.errstate(over="ignore"):
        return np.asarray(a).astype(dtype, copy=False)


def finish_features(estimator, n_features):
    """Set n_features_in_ to the global value (an empty rank's local array may say 0)."""
    estimator.n_features_in_ = int(n_features)


# --- device arrays ------------------------------------------------------------------------------

_CUDA_DLPACK = (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged


def is_cuda_array(X):
    """True for cupy arrays, torch CUDA tensors and anything exposing a CUDA DLPack device or
    ``__cuda_array_interface__``."""
    dev = getattr(X, "__dlpack_device__", None)
    if dev is not None and not isinstance(X, np.ndarray):
        try:
            return int(dev()[0]) in _CUDA_DLPACK
        except Exception:  # noqa: BLE001 - not a usable DLPack producer
            return False
    return hasattr(X, "__cuda_array_interface__")


def all_ranks_on_gpu(addr, mine):
    """Whether every rank's rows are on a GPU (one allreduce; the same answer on every rank).
    Then a fit's small d x d factorisations run on the GPU (cuSOLVER) rather than the host's
    LAPACK -- the same solver on every rank, so the model stays bitwise identical."""
    from . import _core

    if not _core.built_with_cuda():  # the same build on every rank: no collective needed
        return False
    flag = np.array([1 if mine else 0], dtype=np.int64)
    _core.allreduce(addr, flag, "min")
    return bool(flag[0])


def _dtype_name(X):
    return str(getattr(X, "dtype", "")).replace("torch.", "")


def check_cuda_array(X, what):
    if len(X.shape) != 2 and what == "X":
        raise ValueError(f"{what} must be 2-D, got a device array of shape {tuple(X.shape)}")
    if _dtype_name(X) not in ("float32", "float64"):
        raise TypeError(
            f"{what} is a device array of dtype {_dtype_name(X)}; spmdlearn computes in float32 or "
            f"float64: convert it on the device first (e.g. X.astype(cupy.float32), X.float())"
        )


def to_host(X):
    """A CUDA array copied to a numpy array (cupy: .get(); torch: .cpu().numpy())."""
    if hasattr(X, "get"):
        return X.get()
    if hasattr(X, "cpu"):
        return X.detach().cpu().numpy()
    raise TypeError(f"cannot bring a {type(X).__name__} to the host; pass a numpy array")


def device_empty(X, shape, dtype=None):
    """An uninitialised C-contiguous array on X's GPU from X's own library (cupy or torch), so
    that local outputs of device input are arrays of the input's kind."""
    lib = type(X).__module__.split(".")[0]
    dtype = _dtype_name(X) if dtype is None else dtype
    if lib == "cupy":
        import cupy

        with cupy.cuda.Device(X.device.id):
            return cupy.empty(tuple(shape), dtype=dtype)
    if lib == "torch":
        import torch

        return torch.empty(tuple(shape), dtype=getattr(torch, dtype), device=X.device)
    raise TypeError(f"local outputs of a {type(X).__name__} device array are not supported; "
                    "pass a cupy array or a torch CUDA tensor")


def check_device_input(est, X):
    """A CUDA X for a fitted estimator's method: 2-D float32/float64 with n_features_in_ columns.
    Returns X (the (0, 0) block of a rank without rows as (0, n_features_in_))."""
    check_cuda_array(X, "X")
    X = widen_empty_block(est, X, reset=False)
    if X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")
    return X


def device_like(X, a):
    """A host numpy array copied to X's GPU, as an array of X's library (cupy or torch)."""
    lib = type(X).__module__.split(".")[0]
    if lib == "cupy":
        import cupy

        with cupy.cuda.Device(X.device.id):
            return cupy.asarray(a)
    if lib == "torch":
        import torch

        return torch.as_tensor(a, device=X.device)
    raise TypeError(f"local outputs of a {type(X).__name__} device array are not supported; "
                    "pass a cupy array or a torch CUDA tensor")


def device_weights(sample_weight, X):
    """sample_weight for a CUDA X: must be a 1-D CUDA array of X's dtype (checked in C++)."""
    if sample_weight is None:
        return None
    if not is_cuda_array(sample_weight):
        raise ValueError("X is a CUDA array, so sample_weight must be one too (same device, dtype)")
    check_cuda_array(sample_weight, "sample_weight")
    if _dtype_name(sample_weight) != _dtype_name(X):
        raise TypeError(
            f"sample_weight has dtype {_dtype_name(sample_weight)} but X has {_dtype_name(X)}"
        )
    return sample_weight
