"""spmdlearn demo: fit statistics collectively on shards of scikit-learn's digits data.

    mpirun -n 2 python examples/python/demo.py

Every rank holds an uneven slice of the rows. The ranks fit BasicStatistics, EmpiricalCovariance
and StandardScaler together; rank 0 prints the result next to numpy / scikit-learn fitted on all
rows in one process, and whether they agree (and whether every rank holds the same model).
"""
import numpy as np
import sklearn.covariance
import sklearn.preprocessing
from mpi4py import MPI
from sklearn.datasets import load_digits

from spmdlearn.basic_statistics import BasicStatistics
from spmdlearn.covariance import EmpiricalCovariance
from spmdlearn.preprocessing import StandardScaler

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size

X = load_digits().data  # 1797 x 64, every rank loads it here only to cut its own slice
# Uneven shards: rank r gets a block proportional to r + 1.
bounds = np.round(np.cumsum([0] + [r + 1 for r in range(size)]) / (size * (size + 1) / 2) * len(X))
lo, hi = int(bounds[rank]), int(bounds[rank + 1])
X_local = X[lo:hi]
print(f"rank {rank}/{size}: rows {lo}..{hi} ({hi - lo} rows)", flush=True)

stats = BasicStatistics().fit(X_local)            # collective
cov = EmpiricalCovariance().fit(X_local)          # collective
scaler = StandardScaler().fit(X_local)            # collective
Z_local = scaler.transform(X_local)               # local

# Every rank must hold bitwise the same model.
mine = np.concatenate([stats.mean_, stats.variance_, cov.covariance_.ravel(), scaler.scale_])
same = all(np.array_equal(mine, other) for other in comm.allgather(mine))

if rank == 0:
    ref_cov = sklearn.covariance.EmpiricalCovariance().fit(X)
    ref_sc = sklearn.preprocessing.StandardScaler().fit(X)
    checks = {
        "mean": (stats.mean_, X.mean(0)),
        "variance (ddof=1)": (stats.variance_, X.var(0, ddof=1)),
        "min": (stats.min_, X.min(0)),
        "max": (stats.max_, X.max(0)),
        "sum_squares": (stats.sum_squares_, (X**2).sum(0)),
        "covariance row 36": (cov.covariance_[36], ref_cov.covariance_[36]),
        "covariance (all)": (cov.covariance_, ref_cov.covariance_),
        "scaler scale_": (scaler.scale_, ref_sc.scale_),
    }
    cols = [10, 20, 36, 43]
    print(f"\nspmdlearn on {size} ranks vs one process, digits {X.shape}; columns {cols}:")
    print(f"{'statistic':<20} {'spmdlearn':>44} {'single process':>44}  max rel diff")
    ok = True
    for name, (got, ref) in checks.items():
        g, r = np.ravel(got), np.ravel(ref)
        # relative to each entry, with a floor at 1e-12 of the largest (exact zeros stay exact)
        diff = np.max(np.abs(g - r) / np.maximum(np.abs(r), 1e-12 * np.abs(r).max() + 1e-300))
        ok &= bool(diff < 1e-9)
        show = lambda v: " ".join(f"{x:10.4f}" for x in np.ravel(v)[cols])
        if np.ndim(got) == 2:
            print(f"{name:<20} {'(every entry of the 64 x 64 matrix)':>44} {'':>44}  {diff:.1e}")
        else:
            print(f"{name:<20} {show(g):>44} {show(r):>44}  {diff:.1e}")
    print(f"\nidentical model on every rank: {same}")
    print("RESULT:", "AGREE" if ok and same else "DIFFER",
          "(spmdlearn on", size, "ranks equals the single-process fit to 1e-9 relative)")
