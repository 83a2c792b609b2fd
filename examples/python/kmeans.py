"""spmdlearn KMeans on shards of scikit-learn's digits.

    mpirun -n 4 python examples/python/kmeans.py

Every rank holds an uneven slice of the rows. The ranks fit KMeans (k-means++, then k-means||,
then from given centres); rank 0 prints the inertia next to scikit-learn's, and every rank checks
that all ranks hold the same centres.
"""
import numpy as np
from mpi4py import MPI
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_digits

from spmdlearn.cluster import KMeans

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
X = load_digits().data
cuts = np.round(np.cumsum([0] + [r + 1 for r in range(size)]) / (size * (size + 1) / 2) * len(X)).astype(int)
mine = X[cuts[rank]:cuts[rank + 1]]

ok = True
for init in ("k-means++", "k-means||"):
    km = KMeans(n_clusters=10, init=init, n_init=4, random_state=0).fit(mine)   # collective
    labels = km.predict(mine)                                                      # local
    same = all(np.array_equal(km.cluster_centers_, c) for c in comm.allgather(km.cluster_centers_))
    ok = ok and same and np.array_equal(labels, km.labels_)
    if rank == 0:
        ref = SkKMeans(n_clusters=10, init="k-means++", n_init=4, random_state=0).fit(X)
        print(f"KMeans(init={init!r:12s}) inertia {km.inertia_:.1f} in {km.n_iter_} iterations "
              f"(scikit-learn k-means++: {ref.inertia_:.1f}); identical on all {size} ranks: {same}",
              flush=True)

# From given centres the model equals scikit-learn's on all rows.
init = X[:10] + 0.01
km = KMeans(n_clusters=10, init=init, n_init=1).fit(mine)
same = all(np.array_equal(km.cluster_centers_, c) for c in comm.allgather(km.cluster_centers_))
ok = ok and same
if rank == 0:
    ref = SkKMeans(n_clusters=10, init=init, n_init=1).fit(X)
    err = np.abs(km.cluster_centers_ - ref.cluster_centers_).max()
    print(f"KMeans(init=array) inertia {km.inertia_:.4f} vs scikit-learn {ref.inertia_:.4f}, "
          f"n_iter {km.n_iter_} vs {ref.n_iter_}, max centre difference {err:.1e}")
    ok = ok and err < 1e-8 and km.n_iter_ == ref.n_iter_
score = km.score(mine)                                                             # collective
ok = comm.allreduce(int(ok), op=MPI.MIN) == 1
if rank == 0:
    print(f"score (-inertia over all ranks' rows): {score:.4f}")
    print("check:", "ok" if ok else "FAILED")
