"""Checked restores: a fitted model whose state was damaged never crashes the process.

Every estimator is fitted (seeded data), pickled and loaded again; then each piece of its state --
every array attribute, every scalar the shapes derive from, every entry of the state dict the C++
core reads (``_partial_state``) -- is damaged in many ways (wrong shape, empty, truncated,
transposed, wrong dtype including object/int/complex/str, None, a scalar, a list, NaN, missing),
and every method that reads the state is called. Each damaged model is also pickled and loaded
again, which runs the check of ``__setstate__``. What must hold:

* no crash: the cases run in a child process (``python this_file.py <estimator>...``); a segfault
  or an abort ends the child, and that estimator's test fails naming the case that was running
  (a new child then goes on with the next estimators);
* every call either returns or raises ValueError / TypeError / AttributeError / NotFittedError
  whose message names the damaged attribute (NotFittedError may not);
* damage that makes the state unusable -- a shape that is not the model's, a non-numeric dtype,
  None or a list for an array, an invalid count, and for the C++ state dict anything but a
  float64 C-contiguous array of the declared shape -- is rejected by every method that reads it,
  and by loading the pickle;
* damage that keeps the values (read-only arrays, numpy scalars, and for fitted attributes
  Fortran-ordered or strided copies) changes nothing: the same output as the intact model.
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

ESTIMATOR_NAMES = [
    "BasicStatistics", "IncrementalBasicStatistics", "EmpiricalCovariance",
    "IncrementalEmpiricalCovariance", "StandardScaler", "MaxAbsScaler", "LinearRegression", "Ridge",
    "IncrementalLinearRegression", "IncrementalRidge", "LogisticRegression", "PCA", "IncrementalPCA",
    "KMeans",
]
CHILD_TIMEOUT_S = 300


# --- the child: builds, damages and calls -----------------------------------------------------

def _data():
    rng = np.random.default_rng(20240611)
    X = rng.normal(size=(90, 4)) * [1.0, 2.0, 3.0, 0.5] + [0.0, 1.0, -2.0, 5.0]
    y = X @ [1.0, -2.0, 0.5, 3.0] + 0.1 * rng.normal(size=90)
    labels = np.argmax(X[:, :3] * [1.0, 0.5, 0.3], axis=1)
    X2 = rng.normal(size=(17, 4)) * [1.0, 2.0, 3.0, 0.5] + [0.0, 1.0, -2.0, 5.0]
    y2 = X2 @ [1.0, -2.0, 0.5, 3.0]
    labels2 = np.argmax(X2[:, :3] * [1.0, 0.5, 0.3], axis=1)
    return X, y, labels, X2, y2, labels2


def _spec(name):
    """(make, fit, methods, reads, load_checked, shape_exceptions) of one estimator.

    methods: name -> fn(model) -> output; reads: method -> attributes it reads (damage to them
    that makes the state unusable must be rejected); load_checked: attributes that loading a
    pickle checks; shape_exceptions: (method or "load", attribute, damage) whose shape change is
    a valid model (e.g. coef_ of shape (1, d) for one target)."""
    import spmdlearn.basic_statistics as bs
    import spmdlearn.cluster as cl
    import spmdlearn.covariance as cov
    import spmdlearn.decomposition as dec
    import spmdlearn.linear_model as lm
    import spmdlearn.preprocessing as pre

    X, y, labels, X2, y2, labels2 = _data()
    d = "n_features_in_"
    if name in ("BasicStatistics", "IncrementalBasicStatistics"):
        methods = {"fit": lambda m: m.fit(X2)}
        reads = {"fit": []}
        if name.startswith("Incremental"):
            methods["partial_fit"] = lambda m: m.partial_fit(X2)
            reads["partial_fit"] = ["_partial_state", d]
        return getattr(bs, name), lambda m: m.fit(X), methods, reads, ["_partial_state", d], set()
    if name in ("EmpiricalCovariance", "IncrementalEmpiricalCovariance"):
        model = ["location_", "precision_", d]
        methods = {"mahalanobis": lambda m: m.mahalanobis(X2), "score": lambda m: m.score(X2),
                   "error_norm": lambda m: m.error_norm(np.eye(4))}
        reads = {"mahalanobis": model, "score": model, "error_norm": ["covariance_", d]}
        if name.startswith("Incremental"):
            methods["partial_fit"] = lambda m: m.partial_fit(X2)
            reads["partial_fit"] = ["_partial_state", d]
        load = ["location_", "covariance_", "precision_", "_partial_state", d]
        return getattr(cov, name), lambda m: m.fit(X), methods, reads, load, set()
    if name in ("StandardScaler", "MaxAbsScaler"):
        model = ["mean_", "scale_", d] if name == "StandardScaler" else ["scale_", d]
        methods = {"transform": lambda m: m.transform(X2), "inverse_transform": lambda m: m.inverse_transform(X2),
                   "partial_fit": lambda m: m.partial_fit(X2)}
        reads = {"transform": model, "inverse_transform": model, "partial_fit": ["_partial_state", d]}
        load = (["mean_", "var_"] if name == "StandardScaler" else ["max_abs_"]) + ["scale_", "_partial_state", d]
        return getattr(pre, name), lambda m: m.fit(X), methods, reads, load, set()
    if name in ("LinearRegression", "Ridge", "IncrementalLinearRegression", "IncrementalRidge"):
        model = ["coef_", "intercept_", d]
        methods = {"predict": lambda m: m.predict(X2), "score": lambda m: m.score(X2, y2)}
        reads = {"predict": model, "score": model}
        if name.startswith("Incremental"):
            methods["partial_fit"] = lambda m: m.partial_fit(X2, y2)
            reads["partial_fit"] = ["_partial_state", d]
        if "LinearRegression" in name:
            methods["singular_"] = lambda m: m.singular_
            reads["singular_"] = ["_partial_state", "coef_", "_spectrum_k", d]
        # one target: coef_ of shape (1, d) (and intercept_ of shape (1,)) is a valid model too
        ok_shapes = {(m, a, "extra_axis") for m in [*methods, "load"] for a in ("coef_", "intercept_")}
        load = ["coef_", "intercept_", "_partial_state", d]
        return getattr(lm, name), lambda m: m.fit(X, y), methods, reads, load, ok_shapes
    if name == "LogisticRegression":
        model = ["classes_", "coef_", "intercept_", d]
        methods = {
            "predict": lambda m: m.predict(X2), "predict_proba": lambda m: m.predict_proba(X2),
            "predict_log_proba": lambda m: m.predict_log_proba(X2),
            "decision_function": lambda m: m.decision_function(X2), "score": lambda m: m.score(X2, labels2),
            "warm_start_fit": lambda m: m.set_params(warm_start=True).fit(X2, labels2),
        }
        reads = {k: model for k in methods}
        # the warm start reads the coefficients (and compares them with the new data itself)
        reads["warm_start_fit"] = ["classes_", "coef_", "intercept_"]
        # coefficients of another width are a model of other data: a cold start, as before
        ok_shapes = {("warm_start_fit", "coef_", "truncated_last_axis")}
        return (lambda: lm.LogisticRegression(max_iter=200)), lambda m: m.fit(X, labels), methods, reads, \
            model, ok_shapes
    if name in ("PCA", "IncrementalPCA"):
        model = ["mean_", "components_", "explained_variance_", "noise_variance_", "n_components_", d]
        Z = np.random.default_rng(5).normal(size=(7, 4))
        methods = {"transform": lambda m: m.transform(X2), "inverse_transform": lambda m: m.inverse_transform(Z),
                   "get_covariance": lambda m: m.get_covariance(), "get_precision": lambda m: m.get_precision()}
        if name == "PCA":
            methods["score"] = lambda m: m.score(X2)
            methods["score_samples"] = lambda m: m.score_samples(X2)
        reads = {k: model for k in methods}
        load = model + ["explained_variance_ratio_", "singular_values_"]
        if name == "IncrementalPCA":
            methods["partial_fit"] = lambda m: m.partial_fit(X2)
            reads["partial_fit"] = ["_partial_state", d]
            load += ["var_", "_partial_state"]
        return getattr(dec, name), lambda m: m.fit(X), methods, reads, load, set()
    if name == "KMeans":
        model = ["cluster_centers_", d]
        methods = {"predict": lambda m: m.predict(X2), "transform": lambda m: m.transform(X2),
                   "score": lambda m: m.score(X2)}
        reads = {k: model for k in methods}
        return (lambda: cl.KMeans(n_clusters=3, random_state=0)), lambda m: m.fit(X), methods, reads, \
            model, set()
    raise KeyError(name)


# Damage classes: "bad" makes the state unusable wherever it is read; "bad_state" only for the C++
# state dict (which must hold float64 C-contiguous arrays and counts that fit in int64); "same"
# keeps the values (the output must not change; "same_fitted": for fitted attributes only, the
# state dict refuses them); anything else may be accepted or refused.
def _array_damage(a):
    out = {}
    if a.ndim >= 1 and a.shape[0] > 0:
        out["truncated"] = ("bad", a[:-1].copy())
        out["empty"] = ("bad", a[:0].copy())
        out["doubled"] = ("bad", np.concatenate([a, a]))
    if a.ndim == 2:
        if a.shape[1] > 0:
            out["truncated_last_axis"] = ("bad", a[:, :-1].copy())
        out["transposed"] = ("bad" if a.shape[0] != a.shape[1] else "any", a.T.copy())
        out["flattened"] = ("bad", a.ravel().copy())
        out["fortran"] = ("same_fitted", np.asfortranarray(a))
    out["extra_axis"] = ("bad", a[None].copy())
    if a.ndim >= 1:
        out["strided"] = ("same_fitted", np.repeat(a, 2, axis=-1)[..., ::2])
        out["scalar"] = ("bad", np.float64(1.0))
    ro = a.copy()
    ro.setflags(write=False)
    out["readonly"] = ("same", ro)
    out["none"] = ("bad", None)
    out["list"] = ("bad", a.tolist())
    out["string"] = ("bad", "abc")
    out["dtype_object"] = ("bad", a.astype(object))
    out["dtype_complex"] = ("bad", a.astype(np.complex128) + 1j)
    out["dtype_str"] = ("bad", a.astype(str))
    out["dtype_bool"] = ("bad", a.astype(bool))
    if a.dtype.kind == "f":
        out["dtype_int"] = ("bad", a.astype(np.int64))
        out["dtype_float32"] = ("bad_state" if a.dtype != np.float32 else "same", a.astype(np.float32))
        out["nan"] = ("any", np.full_like(a, np.nan))
        out["inf"] = ("any", np.full_like(a, np.inf))
    return out


def _count_damage(v, dim):
    return {
        "negative": ("bad", -1),
        "plus_one": ("bad" if dim else "any", v + 1),
        "zero": ("any", 0),
        "too_big": ("bad_state", 10**30),
        "float": ("bad", float(v)),
        "string": ("bad", str(v)),
        "none": ("bad", None),
        "bool": ("bad", True),
        "array": ("bad", np.array([v, v])),
        "numpy_int": ("same", np.int64(v)),
    }


def _real_damage(v):
    return {
        "nan": ("bad_state", float("nan")),
        "inf": ("bad_state", float("inf")),
        "negative": ("bad_state", -1.0),
        "string": ("bad", "abc"),
        "none": ("bad", None),
        "complex": ("bad", 1j),
        "array": ("bad", np.array([float(v), float(v)])),
        "numpy_float": ("same", np.float64(v)),
    }


DIMS = {"n_features_in_", "n_components_", "n_features", "n_targets"}


def _damages(value, attr):
    """(damage name, class, new value) for one attribute or state entry; deletion is separate."""
    if isinstance(value, np.ndarray):
        return _array_damage(value)
    if isinstance(value, (bool, np.bool_)):
        return {"none": ("any", None), "string": ("any", "abc")}
    if isinstance(value, (int, np.integer)):
        return _count_damage(int(value), attr in DIMS)
    if isinstance(value, (float, np.floating)):
        return _real_damage(value)
    if isinstance(value, dict):
        return {"none": ("bad", None), "list": ("bad", list(value)), "empty_dict": ("bad", {}),
                "string": ("bad", "abc")}
    return {}


def _digest(out, model):
    """What a call returned, comparable between two models; a model (fit, partial_fit) by its
    fitted array attributes."""
    if out is model:
        return {k: np.array(v) for k, v in vars(model).items()
                if k.endswith("_") and not k.startswith("_") and isinstance(v, np.ndarray)}
    return np.array(out)


def _same(a, b):
    """Equal up to the last bits (a Fortran-ordered copy may be multiplied in another order)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True))
    return bool(np.array_equal(a, b))


def _call(fn, model):
    try:
        with np.errstate(all="ignore"):
            return "ok", _digest(fn(model), model), None, None
    except Exception as exc:  # noqa: BLE001 - classified by the parent
        return "error", None, type(exc).__name__, str(exc)


def _emit(case, **fields):
    print(json.dumps({"case": case, **fields}, default=str), flush=True)


def run_child(names):
    import warnings

    warnings.simplefilter("ignore")
    for name in names:
        print(json.dumps({"estimator": name}), flush=True)
        run_estimator(name)


def run_estimator(name):
    make, fit, methods, reads, load_checked, ok_shapes = _spec(name)
    fitted = fit(make())
    blob = pickle.dumps(fitted)
    if name in ("LinearRegression", "IncrementalLinearRegression"):
        # singular_ reads the state only when the fit proved the rank full without the spectrum
        assert pickle.loads(blob)._singular is None
    reference = {}
    for method, fn in methods.items():
        status, out, etype, msg = _call(fn, pickle.loads(blob))
        assert status == "ok", f"{name}.{method} fails on the intact model: {etype}: {msg}"
        reference[method] = out

    targets = []  # (label, attribute, key or None, value)
    params = set(fitted.get_params(deep=False))
    for attr, value in sorted(vars(pickle.loads(blob)).items()):
        if attr in params or attr.startswith("__"):
            continue
        targets.append((attr, attr, None, value))
        if isinstance(value, dict):
            targets += [(f"{attr}['{k}']", attr, k, v) for k, v in sorted(value.items())]

    for label, attr, key, value in targets:
        damages = dict(_damages(value, key or attr))
        damages["missing"] = ("any", None)
        for damage, (cls, new) in damages.items():
            if cls == "bad_state" and key is None:
                cls = "any"
            if cls == "same_fitted":
                cls = "same" if key is None else "bad"
            if attr == "classes_" and damage.startswith("dtype_"):
                cls = "any"  # labels may be of any dtype (numbers, strings, objects)

            def damaged():
                model = pickle.loads(blob)
                holder = vars(model) if key is None else vars(model)[attr]
                if damage == "missing":
                    del holder[key or attr]
                else:
                    holder[key or attr] = new
                return model

            for method, fn in methods.items():
                case = f"{label}:{damage}:{method}"
                _emit(case, start=True)
                status, out, etype, msg = _call(fn, damaged())
                reads_it = attr in reads[method]
                must = cls if reads_it and (method, attr, damage) not in ok_shapes else "any"
                _emit(case, status=status, etype=etype, message=msg, attr=attr, must=must,
                      same=None if status != "ok" or must != "same" else _same(out, reference[method]))
            case = f"{label}:{damage}:load"
            if damage == "strided":
                cls = "same"  # a pickle stores the values: the loaded array is contiguous
            _emit(case, start=True)
            blob2 = pickle.dumps(damaged())
            status, _, etype, msg = _call(lambda _: pickle.loads(blob2), None)
            must = cls if attr in load_checked and ("load", attr, damage) not in ok_shapes else "any"
            if damage == "missing":
                must = "any"  # a model without its last fitted attribute loads as an unfitted one
            _emit(case, status=status, etype=etype, message=msg, attr=attr, must=must, same=True)

    if name == "KMeans":
        run_kmeans_init()


def run_kmeans_init():
    """KMeans(init=array): the initial centres are damaged instead (checked on the way in)."""
    from spmdlearn.cluster import KMeans

    X = _data()[0]
    centers = X[[0, 30, 60]].copy()
    for damage, (cls, new) in _array_damage(centers).items():
        case = f"init:{damage}:fit"
        _emit(case, start=True)
        status, _, etype, msg = _call(lambda m: m.fit(X), KMeans(n_clusters=3, init=new, n_init=1))
        if damage in ("dtype_object", "dtype_int", "dtype_float32", "readonly", "fortran", "strided", "list",
                      "dtype_str", "dtype_bool"):
            cls = "any"  # converted as scikit-learn's check_array converts them
        _emit(case, status=status, etype=etype, message=msg, attr="init", must="bad" if cls == "bad" else "any",
              same=None)


# --- the parent: one child per estimator ------------------------------------------------------

ACCEPTED = {"ValueError", "TypeError", "AttributeError", "NotFittedError", "InvalidParameterError"}


def _judge(r):
    """None when the outcome is allowed, else why not."""
    if r["status"] == "error":
        if r["etype"] not in ACCEPTED:
            return f"raised {r['etype']}: {r['message']}"
        if r["etype"] != "NotFittedError" and r["attr"] not in r["message"]:
            return f"{r['etype']} does not name {r['attr']}: {r['message']}"
        if r["must"] == "same":
            return f"refused a state that keeps the values: {r['etype']}: {r['message']}"
        return None
    if r["must"] in ("bad", "bad_state"):
        return "accepted a state it must refuse"
    if r["must"] == "same" and not r["same"]:
        return "gave another result than the intact model"
    return None


@pytest.fixture(scope="module")
def outcomes():
    """{estimator: (its records, None or how its child ended)}: every estimator's cases, run by
    one child process; after a crash or a hang a new child goes on with the next estimators."""
    pending, out = list(ESTIMATOR_NAMES), {}
    while pending:
        try:
            proc = subprocess.run([sys.executable, __file__, *pending], capture_output=True, text=True,
                                  timeout=CHILD_TIMEOUT_S)
            stdout, ended = proc.stdout, None
            if proc.returncode != 0:
                ended = f"the child ended with return code {proc.returncode}\n{proc.stderr[-3000:]}"
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            ended = f"the child did not finish in {CHILD_TIMEOUT_S} s"
        current = None
        for line in stdout.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if "estimator" in record:
                    current = record["estimator"]
                    out[current] = ([], None)
                else:
                    out[current][0].append(record)
        if ended is None:
            break
        if current is None:  # died before its first estimator: charge it to the first
            current = pending[0]
            out[current] = ([], None)
        out[current] = (out[current][0], ended)
        pending = pending[pending.index(current) + 1:]
    return out


@pytest.mark.parametrize("name", ESTIMATOR_NAMES)
def test_damaged_state_never_crashes(name, outcomes):
    records, ended = outcomes[name]
    started = [r["case"] for r in records if r.get("start")]
    results = [r for r in records if not r.get("start")]
    if ended is not None:
        done = {r["case"] for r in results}
        running = [c for c in started if c not in done]
        where = running[-1] if running else "(before the first case)"
        pytest.fail(f"{name}: in case {where}, {ended}")
    assert len(results) == len(started) and len(results) > 100, f"{name}: {len(results)} cases"
    bad = [(r["case"], why) for r in results if (why := _judge(r)) is not None]
    refused = sum(r["status"] == "error" for r in results)
    assert not bad, (f"{name}: {len(bad)} of {len(results)} cases misbehave ({refused} refused):\n"
                     + "\n".join(f"  {c}: {w}" for c, w in bad[:25]))


if __name__ == "__main__":
    run_child(sys.argv[1:])
