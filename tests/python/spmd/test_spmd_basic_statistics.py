"""BasicStatistics / IncrementalBasicStatistics under MPI: parity with numpy on the full data,
bitwise-identical attributes on every rank, sample weights, result_options, partial_fit rounds."""
import numpy as np
import pytest

from spmdlearn.basic_statistics import BasicStatistics, IncrementalBasicStatistics
from spmd_helpers import (
    BS_NAMES,
    DATASETS,
    FLOAT_DTYPES,
    assert_basic_statistics,
    assert_close,
    assert_every_rank_raises,
    check_replicated,
    frac_weights,
    int_weights,
    load,
    round_blocks,
    shard,
)

ATTRS = [n + "_" for n in BS_NAMES] + ["n_samples_seen_", "n_features_in_"]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_parity(comm, dataset, dtype, empty_rank):
    X = load(dataset, dtype)
    est = BasicStatistics().fit(shard(X, comm, empty_rank))
    check_replicated(est, ATTRS, comm)
    assert_basic_statistics(est, X, None, dtype, what=dataset)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("weights", ["int", "frac"])
@pytest.mark.parametrize("dataset", ["wine", "normal", "mean1e4"])
def test_sample_weight(comm, dataset, weights, dtype, empty_rank):
    X = load(dataset, dtype)
    w = (int_weights if weights == "int" else frac_weights)(len(X))
    est = BasicStatistics().fit(shard(X, comm, empty_rank), sample_weight=shard(w, comm, empty_rank))
    check_replicated(est, ATTRS, comm)
    assert_basic_statistics(est, X, w, dtype, what=f"{dataset} {weights} weights")


def test_sample_weight_list_and_scalar(comm):
    X = load("iris")
    Xl = shard(X, comm, empty_rank=False)
    a = BasicStatistics().fit(Xl, sample_weight=[2.0] * len(Xl))
    b = BasicStatistics().fit(Xl, sample_weight=2.0)
    check_replicated(a, ATTRS, comm)
    assert_basic_statistics(a, X, np.full(len(X), 2), np.float64)
    assert_basic_statistics(b, X, np.full(len(X), 2), np.float64)


@pytest.mark.parametrize(
    "options",
    ["mean", ["min", "max"], ("variance", "sum_squares_centered", "variation"), ["all"]],
    ids=["mean", "minmax", "var_tuple", "all_list"],
)
def test_result_options(comm, options):
    X = load("breast_cancer")
    est = BasicStatistics(result_options=options).fit(shard(X, comm))
    names = BS_NAMES if options == ["all"] else ([options] if isinstance(options, str) else list(options))
    check_replicated(est, [n + "_" for n in names], comm)
    assert_basic_statistics(est, X, None, np.float64, names=names)


def test_int_input_becomes_float64(comm):
    X = np.arange(60, dtype=np.int64).reshape(20, 3) % 7
    est = BasicStatistics().fit(shard(X, comm))
    check_replicated(est, ATTRS, comm)
    assert_basic_statistics(est, X.astype(np.float64), None, np.float64)


def test_refit_forgets(comm):
    X1, X2 = load("iris"), load("wine")
    est = BasicStatistics()
    est.fit(shard(X1, comm))
    est.fit(shard(X2, comm, seed=1))
    check_replicated(est, ATTRS, comm)
    assert_basic_statistics(est, X2, None, np.float64)


def test_one_row_per_rank_fewer_rows_than_features(comm, size):
    # every rank holds one row of 64 features (sklearnex fails when n_r < n_features)
    X = load("digits")[: size]
    est = BasicStatistics().fit(X[comm.Get_rank(): comm.Get_rank() + 1])
    check_replicated(est, ATTRS, comm)
    assert_basic_statistics(est, X, None, np.float64)


def test_single_row_total(comm):
    # one row on rank 0 only: variance is NaN (ddof=1), min == max == mean
    X = load("iris")[:1]
    est = BasicStatistics().fit(X if comm.Get_rank() == 0 else X[:0])
    check_replicated(est, ATTRS, comm)
    assert est.n_samples_seen_ == 1
    assert np.all(np.isnan(est.variance_))
    np.testing.assert_array_equal(est.mean_, X[0])
    np.testing.assert_array_equal(est.min_, X[0])
    np.testing.assert_array_equal(est.max_, X[0])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("dataset", ["breast_cancer", "mean1e4", "digits"])
def test_incremental_rounds(comm, dataset, dtype):
    X = load(dataset, dtype)
    w = frac_weights(len(X), seed=3)
    inc = IncrementalBasicStatistics()
    incw = IncrementalBasicStatistics()
    for rows in round_blocks(len(X), comm, 5, seed=1):
        inc.partial_fit(X[rows])
        incw.partial_fit(X[rows], sample_weight=w[rows])
    one = BasicStatistics().fit(shard(X, comm))
    check_replicated(inc, ATTRS, comm)
    check_replicated(incw, ATTRS, comm)
    assert_basic_statistics(inc, X, None, dtype, what="partial_fit")
    assert_basic_statistics(incw, X, w, dtype, what="weighted partial_fit")
    for name in BS_NAMES:
        if name != "variation":
            assert_close(getattr(inc, name + "_"), getattr(one, name + "_"), dtype,
                         atol=1e-12 * np.abs(getattr(one, name + "_")).max(), what=name)


def test_incremental_fit_resets(comm):
    X = load("wine")
    inc = IncrementalBasicStatistics()
    inc.partial_fit(shard(load("iris"), comm))
    inc.fit(shard(X, comm))  # fit forgets earlier rounds
    inc.partial_fit(shard(X, comm, seed=2))  # the same rows a second time
    check_replicated(inc, ATTRS, comm)
    assert_basic_statistics(inc, np.vstack([X, X]), None, np.float64)


def test_incremental_empty_round_on_every_rank_keeps_state(comm):
    X = load("iris")
    inc = IncrementalBasicStatistics()
    inc.partial_fit(shard(X[:70], comm))
    assert_every_rank_raises(lambda: inc.partial_fit(X[:0]))
    inc.partial_fit(shard(X[70:], comm, empty_rank=False))
    check_replicated(inc, ATTRS, comm)
    assert_basic_statistics(inc, X, None, np.float64)
