"""Communicator handling and the Python half of the collective error guard.

Every public collective method of every estimator runs its Python-side work (conversion,
validation) inside :func:`collective`, which agrees with all other ranks before the C++ core is
called. If any rank fails, every rank raises -- the failing rank's exception type and message,
prefixed with ``rank R:`` -- instead of one rank raising while the others wait forever.
"""
from __future__ import annotations

import contextlib
import re
import threading
import zlib

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


def params_checksum(estimator):
    """A checksum of get_params() (without comm) that is the same in every process for equal
    parameters: reprs with memory addresses stripped, callables by qualified name."""
    if estimator is None:
        return -1
    items = []
    for k, v in sorted(estimator.get_params(deep=False).items()):
        if k == "comm":
            continue
        if callable(v) and not hasattr(v, "get_params"):
            text = getattr(v, "__module__", "") + "." + getattr(v, "__qualname__", type(v).__name__)
        else:
            text = _ADDRESS.sub("", repr(v))
        items.append(f"{k}={text}")
    return zlib.crc32("\x00".join(items).encode())


@contextlib.contextmanager
def collective(address, estimator=None):
    """Run the block locally, then agree with every rank of the communicator on its success and
    on the estimator's parameters.

    One small collective on success. On failure anywhere (or parameters that differ), every rank
    raises the same exception class with the same message, naming the failing rank.
    """
    from . import _core

    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every local failure must be shared, whatever it is
        kind = _kind_of(exc)
        text = f"{type(exc).__name__}: {exc}" if kind == 4 else str(exc)
        agreed_kind, message = _core.agree(address, kind, text, params_checksum(estimator))
        raise _exception_class(agreed_kind)(message) from exc
    else:
        agreed_kind, message = _core.agree(address, 0, "", params_checksum(estimator))
        if agreed_kind:
            raise _exception_class(agreed_kind)(message)
