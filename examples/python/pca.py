"""spmdlearn PCA on shards of scikit-learn's digits.

    mpirun -n 2 python examples/python/pca.py

Every rank holds an uneven slice of the rows. The ranks fit PCA with each solver and an
IncrementalPCA over two rounds; rank 0 prints the explained variances next to scikit-learn's
exact PCA on all rows, and whether every rank holds the same components.
"""
import numpy as np
from mpi4py import MPI
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA as SkPCA

from spmdlearn.decomposition import PCA, IncrementalPCA

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
X = load_digits().data
cuts = np.round(np.cumsum([0] + [r + 1 for r in range(size)]) / (size * (size + 1) / 2) * len(X)).astype(int)
mine = X[cuts[rank]:cuts[rank + 1]]

ref = SkPCA(n_components=8, svd_solver="full").fit(X)
for solver in ("full", "covariance_eigh", "randomized"):
    pca = PCA(n_components=8, svd_solver=solver, random_state=0).fit(mine)   # collective
    Z = pca.transform(mine)                                                  # local
    same = all(np.array_equal(pca.components_, c) for c in comm.allgather(pca.components_))
    if rank == 0:
        err = np.max(np.abs(pca.explained_variance_ - ref.explained_variance_) / ref.explained_variance_)
        print(f"PCA({solver:15s}) explained variance vs scikit-learn: {err:.1e}; "
              f"identical on all {size} ranks: {same}; local transform {Z.shape}", flush=True)

inc = IncrementalPCA(n_components=8)
half = len(X) // 2
for block in (X[:half], X[half:]):
    c = np.round(np.linspace(0, len(block), size + 1)).astype(int)
    inc.partial_fit(block[c[rank]:c[rank + 1]])                               # collective
if rank == 0:
    err = np.max(np.abs(inc.explained_variance_ - ref.explained_variance_) / ref.explained_variance_)
    print(f"IncrementalPCA (2 rounds)      explained variance vs scikit-learn's exact PCA: {err:.1e}")
