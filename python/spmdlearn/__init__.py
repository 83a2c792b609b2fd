"""spmdlearn: distributed (SPMD, MPI) scikit-learn-compatible estimators in C++.

Run the same program on every MPI rank, give each rank its own rows, and ``fit`` collectively:

    mpirun -n 4 python fit.py

Every rank ends up with the same model, equal to what scikit-learn fits on all rows together.
"""
from . import _core
from ._comm import comm_context, default_comm
from .cluster import KMeans

__version__ = "0.1.0"


def set_timeout(seconds: float) -> None:
    """Seconds a rank may wait in one spmdlearn collective before the job is aborted with a
    message naming the collective and the missing ranks (the collective watchdog). Default: the
    environment variable ``SPMDLEARN_TIMEOUT``, else 300; 0 or less disables it. Set it to the same
    value on every rank."""
    _core.set_timeout(float(seconds))


def get_timeout() -> float:
    """The collective watchdog's timeout in seconds (see :func:`set_timeout`)."""
    return _core.get_timeout()


def built_with_cuda() -> bool:
    """Whether the C++ core was compiled with the CUDA backend."""
    return _core.built_with_cuda()


__all__ = ["comm_context", "default_comm", "built_with_cuda", "set_timeout", "get_timeout", "KMeans",
           "__version__"]
