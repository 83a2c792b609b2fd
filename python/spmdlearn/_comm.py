"""Communicator handling and the Python half of the collective error guard.

Every public collective method of every estimator runs its Python-side work (conversion,
validation) inside :func:`collective`, which agrees with all other ranks before the C++ core is
called. If any rank fails, every rank raises -- the failing rank's exception type and message,
prefixed with ``rank R:`` -- instead of one rank raising while the others wait forever.
"""
from __future__ import annotations

import contextlib
import threading

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


_KIND = {TypeError: 5, ValueError: 1, MemoryError: 2, NotImplementedError: 3}


def _kind_of(exc):
    for t, k in _KIND.items():
        if isinstance(exc, t):
            return k
    return 4


@contextlib.contextmanager
def collective(address):
    """Run the block locally, then agree with every rank of the communicator on its success.

    One small collective on success; on failure anywhere, every rank raises.
    """
    from . import _core

    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every local failure must be shared, whatever it is
        _core.agree(address, _kind_of(exc), f"{type(exc).__name__}: {exc}" if _kind_of(exc) == 4 else str(exc))
        raise  # agree() raised already; this line is only reached if it did not
    else:
        _core.agree(address, 0, "")
