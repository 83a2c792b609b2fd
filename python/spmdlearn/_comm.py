"""Communicator handling and the Python half of the collective error guard.

Every public collective method of every estimator runs its Python-side work (conversion,
validation) inside :func:`collective`, which agrees with all other ranks before the C++ core is
called. If any rank fails, every rank raises -- the failing rank's exception type and message,
prefixed with ``rank R:`` -- instead of one rank raising while the others wait forever.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import numbers
import re
import struct
import threading

import numpy as np

_state = threading.local()


def _mpi():
    from mpi4py import MPI  # imported lazily: importing spmdlearn must not initialise MPI

    return MPI


def default_comm():
    """The communicator used when an estimator's ``comm`` is None.

    ``mpi4py.MPI.COMM_WORLD`` unless a :func:`comm_context` is active.
    """
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    return _mpi().COMM_WORLD


@contextlib.contextmanager
def comm_context(comm):
    """Use ``comm`` (an mpi4py communicator) for every estimator with ``comm=None`` in this block.

    >>> sub = MPI.COMM_WORLD.Split(color=MPI.COMM_WORLD.rank % 2)
    >>> with spmdlearn.comm_context(sub):
    ...     BasicStatistics().fit(X)          # collective over `sub` only
    """
    _check_comm(comm)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(comm)
    try:
        yield comm
    finally:
        stack.pop()


def _check_comm(comm):
    MPI = _mpi()
    if not isinstance(comm, MPI.Comm):
        raise TypeError(
            f"comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD), got {type(comm).__name__}"
        )
    if comm == MPI.COMM_NULL:
        raise ValueError("comm is MPI.COMM_NULL")
    if comm.Is_inter():
        raise ValueError(
            "comm is an intercommunicator; spmdlearn needs an intracommunicator (merge the two "
            "groups first, e.g. intercomm.Merge())"
        )


def resolve(comm):
    """(mpi4py communicator, address of its MPI_Comm handle for the C++ core)."""
    if comm is None:
        comm = default_comm()
    _check_comm(comm)
    return comm, _mpi()._addressof(comm)


def _kind_of(exc):
    from sklearn.utils._param_validation import InvalidParameterError

    if isinstance(exc, InvalidParameterError):
        return 6
    for t, k in ((ValueError, 1), (TypeError, 5), (MemoryError, 2), (NotImplementedError, 3)):
        if isinstance(exc, t):
            return k
    return 4


def _exception_class(kind):
    from sklearn.utils._param_validation import InvalidParameterError

    return {1: ValueError, 2: MemoryError, 3: NotImplementedError, 5: TypeError,
            6: InvalidParameterError}.get(kind, RuntimeError)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


# --- exact digests of parameters and state ------------------------------------------------------
#
# Every rank must hold the same parameters (and, for calls that read it, the same fitted state).
# They are compared by a digest of a canonical encoding of their exact values: arrays by dtype,
# shape and every byte (never numpy's repr, which elides the middle of long arrays), numbers by
# value (1 and 1.0 are the same parameter), dicts by their sorted items (class_weight={0: 1, 1: 2}
# equals {1: 2, 0: 1}), estimators by class and parameters, callables by qualified name.

def _encode(v, out):
    t = type(v)
    # Fast paths by exact type (the common parameters and fitted attributes), then the general
    # (abstract-class) checks.
    if t is np.ndarray and not v.dtype.hasobject:
        out.append(b"a" + v.dtype.str.encode() + repr(v.shape).encode())
        out.append(v.tobytes() if v.flags.c_contiguous else np.ascontiguousarray(v).tobytes())
    elif v is None:
        out.append(b"N")
    elif t is bool or t is np.bool_:
        out.append(b"b1" if v else b"b0")
    elif t is float or t is np.float64:
        f = float(v)
        out.append(b"nNaN" if f != f else b"n" + struct.pack("<d", f))
    elif t is int and abs(v) < 2**53:
        out.append(b"n" + struct.pack("<d", float(v)))
    elif t is str:
        b = v.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(b) + b)
    elif isinstance(v, numbers.Integral):
        i = int(v)
        out.append(b"n" + struct.pack("<d", float(i)) if abs(i) < 2**53 else b"i" + str(i).encode())
    elif isinstance(v, numbers.Real):
        f = float(v)
        out.append(b"nNaN" if f != f else b"n" + struct.pack("<d", f))
    elif isinstance(v, numbers.Complex):
        out.append(b"c" + struct.pack("<dd", complex(v).real, complex(v).imag))
    elif isinstance(v, str):
        b = str(v).encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(b) + b)
    elif isinstance(v, (bytes, bytearray)):
        out.append(b"y%d:" % len(v) + bytes(v))
    elif isinstance(v, np.ndarray):  # object arrays (and subclasses): element by element
        out.append(b"a" + v.dtype.str.encode() + repr(v.shape).encode())
        if v.dtype.hasobject:
            for x in v.reshape(-1):
                _encode(x, out)
        else:
            out.append(np.ascontiguousarray(v).tobytes())
    elif isinstance(v, (list, tuple)):
        out.append(b"l%d" % len(v))
        for x in v:
            _encode(x, out)
    elif isinstance(v, dict):
        enc = []
        for k, x in v.items():
            kb, xb = [], []
            _encode(k, kb)
            _encode(x, xb)
            enc.append((b"".join(kb), b"".join(xb)))
        out.append(b"d%d" % len(enc))
        for kb, xb in sorted(enc):
            out.extend((kb, xb))
    elif isinstance(v, (set, frozenset)):
        enc = []
        for x in v:
            xb = []
            _encode(x, xb)
            enc.append(b"".join(xb))
        out.append(b"S%d" % len(enc))
        out.extend(sorted(enc))
    elif isinstance(v, np.random.RandomState):
        out.append(b"R")
        _encode(list(v.get_state()), out)
    elif isinstance(v, np.random.Generator):
        out.append(b"G")
        _encode(v.bit_generator.state, out)
    elif hasattr(v, "get_params") and not isinstance(v, type):
        out.append(b"e" + type(v).__qualname__.encode())
        _encode({k: x for k, x in v.get_params(deep=False).items() if k != "comm"}, out)
    elif callable(v):
        out.append(b"f" + (getattr(v, "__module__", "") or "").encode() + b"."
                   + getattr(v, "__qualname__", type(v).__name__).encode())
    else:
        out.append(b"o" + type(v).__qualname__.encode() + _ADDRESS.sub("", repr(v)).encode())


def digest(value):
    """A non-negative 63-bit digest of ``value``'s canonical encoding (the same in every process
    for equal values)."""
    parts = []
    _encode(value, parts)
    h = hashlib.blake2b(b"".join(parts), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFFFFFFFFFF


def params_digests(estimator):
    """[(name, digest)] of get_params(deep=False) without comm, sorted by name."""
    if estimator is None:
        return []
    return [(k, digest(v)) for k, v in sorted(estimator.get_params(deep=False).items()) if k != "comm"]


def state_digests(estimator, method):
    """[(name, digest)] of the state that enters ``method``: nothing for a fit that starts afresh;
    for every other collective call (partial_fit, score, a warm-started fit) whether the estimator
    is fitted and every fitted attribute (``name_``) except the local ones
    (``_local_attributes``: labels_, ...), plus, except for score, its private incremental state
    (``_agreed_private_state``)."""
    if estimator is None:
        return []
    if method in ("fit", "fit_transform", "fit_predict") and not getattr(estimator, "warm_start", False):
        return []
    local = set(getattr(estimator, "_local_attributes", ())) | {"feature_names_in_"}
    # The private incremental state enters partial_fit and a warm start, not score or predict.
    private = getattr(estimator, "_agreed_private_state", ()) if method != "score" else ()
    names = sorted(
        k for k in vars(estimator)
        if (k.endswith("_") and not k.startswith("_") and k not in local) or k in private
    )
    return [("fitted", int(bool(names)))] + [(k, digest(vars(estimator)[k])) for k in names]


# --- one thread per communicator at a time --------------------------------------------------------

_owners_lock = threading.Lock()
_owners = {}  # MPI handle of a communicator -> [owning thread id, depth]
_conflicts = {}  # MPI handle -> description of the other thread's attempt


@contextlib.contextmanager
def _owned(comm):
    """This thread owns ``comm`` for a public collective call (re-entrant). A second thread that
    tries to use it at the same time gets a clear RuntimeError at once (no collective, so it
    cannot hang), and the owner's next agreement raises on every rank: a communicator's
    collectives must come from one thread at a time, else ranks would pair different calls."""
    key = _mpi()._handleof(comm)
    me = threading.get_ident()
    with _owners_lock:
        entry = _owners.get(key)
        if entry is not None and entry[0] != me:
            _conflicts[key] = threading.current_thread().name
            raise RuntimeError(
                f"rank {comm.Get_rank()}: this communicator is already in use by another thread of "
                "this process (a collective spmdlearn call is running there); MPI collectives on "
                "one communicator must be called by one thread at a time -- give each thread its "
                "own communicator (comm.Dup()) or run the calls one after the other"
            )
        if entry is None:
            _owners[key] = entry = [me, 0]
        entry[1] += 1
    try:
        yield
    finally:
        with _owners_lock:
            entry[1] -= 1
            if entry[1] == 0:
                del _owners[key]


def _conflict_text(comm):
    with _owners_lock:
        other = _conflicts.pop(_mpi()._handleof(comm), None)
    if other is None:
        return None
    return (f"thread {other!r} tried to use this communicator while this call was running on it; "
            "MPI collectives on one communicator must be called by one thread at a time -- give "
            "each thread its own communicator (comm.Dup())")


# --- the agreement of a public call -------------------------------------------------------------

class AgreedError(Exception):
    """Marker base: an exception already raised on every rank (no closing agreement needed)."""


_agreed_classes = {}


def _raise_agreed(kind, message, cause=None):
    base = _exception_class(kind)
    cls = _agreed_classes.get(base)
    if cls is None:
        cls = _agreed_classes[base] = type(base.__name__, (base, AgreedError), {
            "__module__": base.__module__, "__doc__": base.__doc__})
    exc = cls(message)
    if cause is not None:
        raise exc from cause
    raise exc


def _call_name(estimator):
    stack = getattr(_state, "calls", None)
    method = stack[0][1] if stack else "collective call"
    owner = type(estimator).__name__ if estimator is not None else (stack[0][0] if stack else "spmdlearn")
    return f"{owner}.{method}", (stack[0][1] if stack else None)


def _identity(estimator):
    """(call name, parameter digests, state digests) of the current call. The state is compared
    at the first agreement of a call only: later ones see it half-updated by the call itself."""
    call, method = _call_name(estimator)
    stack = getattr(_state, "calls", None)
    if stack:
        first = not stack[0][2]
        stack[0][2] = True
    else:
        first = True
    state = state_digests(estimator, method) if (first and estimator is not None) else []
    return call, params_digests(estimator), state


def _agree(address, kind, text, identity):
    from . import _core

    return _core.agree(address, kind, text, *identity)


@contextlib.contextmanager
def collective(address, estimator=None):
    """Run the block locally, then agree with every rank of the communicator on its success, on
    the call (which public method), on the estimator's parameters and on the state it reads.

    One small collective on success. On failure anywhere (or a call, parameter or state that
    differs), every rank raises the same exception class with the same message, naming the
    failing rank. The state is taken as it is when the block starts (the block may change it).
    """
    try:
        identity = _identity(estimator)
    except Exception:  # noqa: BLE001 - e.g. an unhashable parameter: still agree, then raise
        identity = (_call_name(estimator)[0], [], [])
        raise_later = True
    else:
        raise_later = False
    try:
        if raise_later:
            _identity(estimator)  # raises the same error inside the block, to be agreed
        yield
    except Exception as exc:  # noqa: BLE001 - every local failure must be shared, whatever it is
        if isinstance(exc, AgreedError):
            raise
        kind = _kind_of(exc)
        text = f"{type(exc).__name__}: {exc}" if kind == 4 else str(exc)
        agreed_kind, message = _agree(address, kind, text, identity)
        _raise_agreed(agreed_kind, message, exc)
    else:
        agreed_kind, message = _agree(address, 0, "", identity)
        if agreed_kind:
            _raise_agreed(agreed_kind, message)


def _restore(estimator, before):
    vars(estimator).clear()
    vars(estimator).update(before)


def collective_method(method):
    """Decorator of a public collective method of an SPMDMixin estimator.

    The outermost such call on a thread owns the communicator (see ``_owned``) and names the call
    every agreement inside it compares ("Ridge.fit"). When it ends it agrees once more with every
    rank: a failure that escaped the method on one rank only (after its opening agreement) then
    raises on every rank instead of leaving the others waiting in a collective, and a thread
    conflict seen on any rank fails the call everywhere.
    """
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        stack = getattr(_state, "calls", None)
        if stack is None:
            stack = _state.calls = []
        if stack:  # nested (fit_transform -> fit): the outer call agrees
            return method(self, *args, **kwargs)
        comm, address = self._resolve_comm()
        with _owned(comm):
            stack.append([type(self).__name__, name, False])
            # A failed call leaves the estimator as it was (validation may already have set
            # n_features_in_ from this rank's block): the ranks' states stay agreed.
            before = dict(vars(self))
            try:
                try:
                    result = method(self, *args, **kwargs)
                except AgreedError:
                    _restore(self, before)
                    raise
                except Exception as exc:  # noqa: BLE001 - a failure on this rank only
                    _restore(self, before)
                    kind = _kind_of(exc)
                    text = f"{type(exc).__name__}: {exc}" if kind == 4 else str(exc)
                    agreed_kind, message = _agree(address, kind, text, _identity(None))
                    _raise_agreed(agreed_kind, message, exc)
                conflict = _conflict_text(comm)
                agreed_kind, message = _agree(address, 4 if conflict else 0, conflict or "",
                                              _identity(None))
                if agreed_kind:
                    _restore(self, before)
                    _raise_agreed(agreed_kind, message)
                return result
            finally:
                stack.pop()

    wrapper._spmdlearn_collective = True
    return wrapper
