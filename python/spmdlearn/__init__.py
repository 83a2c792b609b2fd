"""spmdlearn: distributed (SPMD, MPI) scikit-learn-compatible estimators in C++.

Run the same program on every MPI rank, give each rank its own rows, and ``fit`` collectively:

    mpirun -n 4 python fit.py

Every rank ends up with the same model, equal to what scikit-learn fits on all rows together.
"""
from . import _core
from ._comm import comm_context, default_comm
from .cluster import KMeans

__version__ = "0.1.0"


def built_with_cuda() -> bool:
    """Whether the C++ core was compiled with the CUDA backend."""
    return _core.built_with_cuda()


__all__ = ["comm_context", "default_comm", "built_with_cuda", "KMeans", "__version__"]
