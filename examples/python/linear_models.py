"""spmdlearn linear models on shards of scikit-learn's data sets.

    mpirun -n 2 python examples/python/linear_models.py

Every rank holds an uneven slice of the rows (the last rank none when there are several). The
ranks fit LinearRegression, Ridge, IncrementalLinearRegression (two partial_fit rounds) and
LogisticRegression together; rank 0 prints each model's agreement with scikit-learn fitted on all
rows in one process, the global score, and whether every rank holds the same model.
"""
import warnings

import numpy as np
import sklearn.linear_model as sk
from mpi4py import MPI
from sklearn.datasets import load_diabetes, load_digits
from sklearn.preprocessing import StandardScaler as SkStandardScaler

from spmdlearn.linear_model import IncrementalLinearRegression, LinearRegression, LogisticRegression, Ridge

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size


def my_slice(n):
    """Uneven contiguous slices; the last rank gets nothing when there are several ranks."""
    holders = max(size - 1, 1)
    cuts = np.round(np.cumsum([0] + [r + 1 for r in range(holders)]) / (holders * (holders + 1) / 2) * n)
    cuts = list(cuts.astype(int)) + [n] * (size + 1 - len(cuts))
    return slice(cuts[rank], cuts[rank + 1])


def report(name, est, ref, score, ref_score):
    mine = np.concatenate([np.ravel(est.coef_), np.ravel(est.intercept_)])
    same = all(np.array_equal(mine, other) for other in comm.allgather(mine))
    if rank == 0:
        err = np.linalg.norm(est.coef_ - ref.coef_) / np.linalg.norm(ref.coef_)
        print(f"{name:28s} coef vs scikit-learn {err:.1e}   score {score:.6f} "
              f"(scikit-learn {ref_score:.6f})   identical on all {size} ranks: {same}", flush=True)


X, y = load_diabetes(return_X_y=True)
s = my_slice(len(X))
lr = LinearRegression().fit(X[s], y[s])                                   # collective
report("LinearRegression", lr, sk.LinearRegression().fit(X, y), lr.score(X[s], y[s]),
       sk.LinearRegression().fit(X, y).score(X, y))
ridge = Ridge(alpha=0.5).fit(X[s], y[s])                                  # collective
report("Ridge(alpha=0.5)", ridge, sk.Ridge(alpha=0.5).fit(X, y), ridge.score(X[s], y[s]),
       sk.Ridge(alpha=0.5).fit(X, y).score(X, y))
inc = IncrementalLinearRegression()
half = len(X) // 2
for rows in (np.arange(half), np.arange(half, len(X))):                  # two rounds of blocks
    inc.partial_fit(X[rows][my_slice(len(rows))], y[rows][my_slice(len(rows))])
report("IncrementalLinearRegression", inc, sk.LinearRegression().fit(X, y), inc.score(X[s], y[s]),
       sk.LinearRegression().fit(X, y).score(X, y))

X, y = load_digits(return_X_y=True)
X = SkStandardScaler().fit_transform(X)
s = my_slice(len(X))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # digits needs more than max_iter=100 to converge fully
    logreg = LogisticRegression().fit(X[s], y[s])                         # collective, 10 classes
    ref = sk.LogisticRegression().fit(X, y)
report("LogisticRegression (10 cl.)", logreg, ref, logreg.score(X[s], y[s]), ref.score(X, y))
