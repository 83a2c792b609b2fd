"""GPU benchmark of spmdlearn's BasicStatistics against PyTorch and CuPy on the same card.

Three things, all timed after warm-up as the median of >= 10 repeats (DESIGN.md section 6):

(a) the card's device-to-device copy bandwidth (cudaMemcpy D2D and a copy kernel on a large
    buffer, bytes read + written, CUDA events) and a read-only reduction, for the floor;
(b) ``BasicStatistics(result_options="all").fit`` on a cupy matrix (float32 200M x 16 and float64
    100M x 16 by default, fewer rows when the card's free memory is short) next to the same ten
    statistics written the straightforward way in PyTorch (zero-copy view of the same memory via
    DLPack) and in CuPy; reports ms, GB/s (bytes of X read once / time) and that read bandwidth as
    a percentage of the copy bandwidth (which counts read + write), as DESIGN.md section 7 does;
    checks spmdlearn's numbers against a float64 reference computed with torch;
(c) under ``mpirun -n N`` with ``--mode weak|strong``: weak scaling (``--rows-per-gpu`` rows on every
    GPU) or strong scaling (``--total-rows`` split over the GPUs) of BasicStatistics fit, one GPU
    per rank (local rank % visible GPUs); the time of a repeat is the max over ranks. Rank 0
    prints one ``@@GPU_SCALING {json}`` line and appends it to ``--jsonl``; ``--assemble JSONL``
    turns such lines (1-GPU runs included) into a table with the efficiency against 1 GPU.

Usage (on the GPU machine, spmdlearn built with CUDA importable):

    python bench/gpu_bench.py --out bench/results/gpu_<date>.md          # (a) + (b), one GPU
    mpirun -n 1 python bench/gpu_bench.py --mode weak --rows-per-gpu 100000000 --jsonl s.jsonl
    mpirun -n 2 python bench/gpu_bench.py --mode weak --rows-per-gpu 100000000 --jsonl s.jsonl
    mpirun -n 2 python bench/gpu_bench.py --mode strong --total-rows 200000000 --jsonl s.jsonl
    python bench/gpu_bench.py --assemble s.jsonl --out scaling.md        # table, no GPU needed

The CuPy baseline is the same ten statistics with CuPy's axis-0 reductions on the same device
memory. Those can take seconds to minutes a call at full size and need about 2x X of temporaries,
so it is guarded: a probe on a slice of X predicts the full-size time and skips it over
``--cupy-budget-s``; out of GPU memory or any other CuPy failure prints a ``failed: why`` row (and
a line under the table) instead of stopping the benchmark.

Exit status: 0 when everything ran and spmdlearn's results matched the reference, 1 otherwise; a
failed CuPy baseline is reported but does not count.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
import traceback

import numpy as np

NAMES = [
    "min", "max", "sum", "mean", "variance", "standard_deviation", "sum_squares",
    "sum_squares_centered", "second_order_raw_moment", "variation",
]
SCALING_MARK = "@@GPU_SCALING "
# spmdlearn vs the float64 reference: float32 data / float64 data
CHECK_RTOL = {"float32": 1e-4, "float64": 1e-9}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="write the markdown report here (default: print only)")
    p.add_argument("--json", help="write the raw numbers of a single-GPU run here")
    p.add_argument("--cols", type=int, default=16)
    p.add_argument("--rows-f32", type=int, default=200_000_000, help="rows of the float32 case (0: skip)")
    p.add_argument("--rows-f64", type=int, default=100_000_000, help="rows of the float64 case (0: skip)")
    p.add_argument("--mem-fraction", type=float, default=0.22,
                   help="largest share of the free GPU memory X may take in (b); the torch/cupy "
                        "baselines need about 3x X at their peak")
    p.add_argument("--copy-gib", type=float, default=4.0, help="size of each copy buffer in (a), GiB")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--libs", nargs="+", default=["spmdlearn", "torch", "cupy"],
                   choices=["spmdlearn", "torch", "cupy"])
    p.add_argument("--cupy-budget-s", type=float, default=120.0,
                   help="CuPy baseline: skip it (reported as a failed row) when a probe on a slice of X "
                        "predicts its warm-up + repeats at full size would take longer than this "
                        "(its axis-0 reductions can take seconds to minutes a call; 0: no limit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["single", "weak", "strong"], default="single",
                   help="single: (a)+(b) on one GPU; weak/strong: scaling run (c) under mpirun")
    p.add_argument("--rows-per-gpu", type=int, default=100_000_000, help="weak scaling: rows per GPU")
    p.add_argument("--total-rows", type=int, default=200_000_000, help="strong scaling: rows in total")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="scaling runs' dtype")
    p.add_argument("--jsonl", help="scaling runs: append the result line to this file")
    p.add_argument("--assemble", metavar="JSONL", help="make the scaling table from result lines and exit")
    args = p.parse_args(argv)
    if args.repeats < 10:
        p.error("--repeats must be >= 10")
    return args


# --- environment --------------------------------------------------------------------------------

def now_utc():
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def command_line():
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv])


def _run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return _run(["git", "-C", root, "rev-parse", "--short", "HEAD"]) or "unknown (no git checkout)"


def local_rank(comm):
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return node.Get_rank()
    finally:
        node.Free()


def select_gpu(comm=None):
    """This process's GPU: local rank % visible GPUs (0 without a communicator)."""
    import cupy as cp

    count = cp.cuda.runtime.getDeviceCount()
    dev = (local_rank(comm) % count) if comm is not None else 0
    cp.cuda.Device(dev).use()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(dev)
    except ImportError:
        pass
    return cp, dev, count


def card_info(cp, dev):
    props = cp.cuda.runtime.getDeviceProperties(dev)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    free, total = cp.cuda.Device(dev).mem_info
    smi = _run(["nvidia-smi", f"--id={dev}", "--query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem",
                "--format=csv,noheader"])
    return {
        "device": dev, "name": name, "sms": int(props["multiProcessorCount"]),
        "memory_total_gib": total / 2**30, "memory_free_gib": free / 2**30,
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cp.cuda.runtime.driverGetVersion(), "nvidia_smi": smi,
    }


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("spmdlearn", "torch", "cupy", "mpi4py"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # noqa: BLE001
            out[mod] = f"not importable ({type(exc).__name__})"
    try:
        import spmdlearn

        out["spmdlearn_built_with_cuda"] = bool(spmdlearn.built_with_cuda())
        out["spmdlearn_file"] = spmdlearn.__file__
    except Exception:  # noqa: BLE001
        pass
    return out


# --- timing -------------------------------------------------------------------------------------

def time_gpu(cp, fn, repeats, warmup):
    """Warm-up calls, then `repeats` timed calls: CUDA events on the current (legacy default)
    stream around the call, and the wall time between device synchronizations (which also
    catches work on other streams and the host-side cost of the call)."""
    dev = cp.cuda.Device()
    for _ in range(warmup):
        fn()
    dev.synchronize()
    ev, wall = [], []
    for _ in range(repeats):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        dev.synchronize()
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        end.synchronize()
        dev.synchronize()
        t1 = time.perf_counter()
        ev.append(float(cp.cuda.get_elapsed_time(start, end)))
        wall.append((t1 - t0) * 1e3)
    return {"events_ms": ev, "wall_ms": wall,
            "median_events_ms": statistics.median(ev), "median_wall_ms": statistics.median(wall)}


def free_pools(cp):
    cp.get_default_memory_pool().free_all_blocks()
    try:
        import torch

        torch.cuda.empty_cache()
    except ImportError:
        pass


# --- (a) bandwidth ceilings ---------------------------------------------------------------------

def measure_ceilings(cp, args):
    free, _ = cp.cuda.Device().mem_info
    nbytes = int(min(args.copy_gib * 2**30, 0.4 * free)) // 4096 * 4096
    src = cp.empty(nbytes, dtype=cp.uint8)
    dst = cp.empty_like(src)
    src.view(cp.float32).fill(1.0)
    dst.fill(0)

    def memcpy():
        dst.data.copy_from_device_async(src.data, nbytes)

    s32, d32 = src.view(cp.float32), dst.view(cp.float32)

    def kernel_copy():
        cp.copyto(d32, s32)

    res = {"buffer_bytes": nbytes}
    t = time_gpu(cp, memcpy, args.repeats, args.warmup)
    res["memcpy_d2d"] = {**t, "GBps": 2 * nbytes / (t["median_events_ms"] * 1e-3) / 1e9}
    t = time_gpu(cp, kernel_copy, args.repeats, args.warmup)
    res["copy_kernel"] = {**t, "GBps": 2 * nbytes / (t["median_events_ms"] * 1e-3) / 1e9}
    try:
        import torch

        ts = torch.from_dlpack(s32)
        t = time_gpu(cp, lambda: ts.sum(), args.repeats, args.warmup)
        res["read_reduction"] = {**t, "how": "torch.sum of a 1-D float32 buffer",
                                 "GBps": nbytes / (t["median_events_ms"] * 1e-3) / 1e9}
        del ts
    except ImportError:
        t = time_gpu(cp, lambda: cp.sum(s32), args.repeats, args.warmup)
        res["read_reduction"] = {**t, "how": "cupy.sum of a 1-D float32 buffer",
                                 "GBps": nbytes / (t["median_events_ms"] * 1e-3) / 1e9}
    del src, dst, s32, d32
    free_pools(cp)
    # The ceiling: the better of the two copies, counting bytes read + written.
    res["copy_GBps"] = max(res["memcpy_d2d"]["GBps"], res["copy_kernel"]["GBps"])
    return res


# --- data and the statistics, three ways --------------------------------------------------------

def make_matrix(cp, n, d, dtype, seed):
    """n x d on the current GPU; column j ~ N(j + 1, (1 + 0.1 j)^2), generated in row blocks."""
    X = cp.empty((n, d), dtype=dtype)
    rs = cp.random.RandomState(seed)
    step = 1 << 23
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        X[lo:hi] = rs.standard_normal((hi - lo, d), dtype=dtype)
    X *= cp.asarray(1.0 + 0.1 * np.arange(d), dtype=dtype)
    X += cp.asarray(np.arange(d) + 1.0, dtype=dtype)
    cp.cuda.Device().synchronize()
    cp.get_default_memory_pool().free_all_blocks()
    return X


def torch_stats(t):
    """The ten statistics written the straightforward PyTorch way."""
    import torch

    n = t.shape[0]
    mean = t.mean(0)
    std = t.std(0)
    ss = (t * t).sum(0)
    return {
        "min": torch.amin(t, 0), "max": torch.amax(t, 0), "sum": t.sum(0), "mean": mean,
        "variance": t.var(0), "standard_deviation": std, "sum_squares": ss,
        "sum_squares_centered": ((t - mean) ** 2).sum(0), "second_order_raw_moment": ss / n,
        "variation": std / mean,
    }


def cupy_stats(X):
    """The ten statistics written the straightforward CuPy way."""
    n = X.shape[0]
    mean = X.mean(axis=0)
    std = X.std(axis=0, ddof=1)
    ss = (X * X).sum(axis=0)
    return {
        "min": X.min(axis=0), "max": X.max(axis=0), "sum": X.sum(axis=0), "mean": mean,
        "variance": X.var(axis=0, ddof=1), "standard_deviation": std, "sum_squares": ss,
        "sum_squares_centered": ((X - mean) ** 2).sum(axis=0), "second_order_raw_moment": ss / n,
        "variation": std / mean,
    }


class BaselineFailed(Exception):
    """A baseline library could not be timed (out of memory, too slow, ...): reported in its row,
    the benchmark goes on."""


def _cupy_oom_types(cp):
    types = []
    for mod, name in ((getattr(cp.cuda, "memory", None), "OutOfMemoryError"),
                      (cp.cuda, "OutOfMemoryError")):
        t = getattr(mod, name, None) if mod is not None else None
        if isinstance(t, type) and issubclass(t, BaseException):
            types.append(t)
    return tuple(types) or (MemoryError,)


def cupy_baseline(cp, X, args):
    """Time ``cupy_stats`` on X as ``time_gpu`` times the others (warm-up, median of the repeats).

    CuPy's axis-0 reductions of a tall, narrow matrix are slow (few blocks, strided reads), so a
    first call on a slice of X (which also compiles CuPy's kernels) predicts the full-size cost; if
    warm-up + repeats would take longer than ``--cupy-budget-s`` it raises BaselineFailed instead of
    running for minutes. Out of GPU memory (temporaries of about 2x X on top of X) also becomes a
    BaselineFailed. Returns (timing, host statistics of the last call)."""
    oom = _cupy_oom_types(cp)
    dev = cp.cuda.Device()
    n = X.shape[0]
    calls = args.warmup + args.repeats + 1
    try:
        cupy_stats(X[: min(n, 4096)])  # compiles every reduction kernel once, off the clock
        dev.synchronize()
        if args.cupy_budget_s > 0 and n > 4096:
            rows = max(4096, n // 16)
            t0 = time.perf_counter()
            cupy_stats(X[:rows])
            dev.synchronize()
            per_call = (time.perf_counter() - t0) * n / rows
            if per_call * calls > args.cupy_budget_s:
                raise BaselineFailed(
                    f"too slow: a call on {rows:,} rows took {per_call * rows / n:.2f} s, so about "
                    f"{per_call:.1f} s a call at full size and {per_call * calls:.0f} s for "
                    f"{args.warmup} warm-up + {args.repeats} repeats + 1, over --cupy-budget-s "
                    f"{args.cupy_budget_s:g} (raise it to run CuPy anyway)")
        free_pools(cp)
        timing = time_gpu(cp, lambda: cupy_stats(X), args.repeats, args.warmup)
        stats = to_host_stats(cupy_stats(X))
        return timing, stats
    except oom as exc:
        raise BaselineFailed(f"out of GPU memory ({type(exc).__module__}.{type(exc).__name__}: {exc})") from exc
    finally:
        free_pools(cp)


def reference64(cp, X):
    """The ten statistics in float64, in row blocks (two passes), with torch (cupy without it)."""
    n, d = X.shape
    step = max(1, (1 << 30) // (8 * d))  # ~1 GiB float64 blocks
    try:
        import torch

        t = torch.from_dlpack(X)
        blocks = lambda: (t[lo:lo + step].double() for lo in range(0, n, step))  # noqa: E731
        tonp = lambda a: a.cpu().numpy()  # noqa: E731
        amin, amax = (lambda b: torch.amin(b, 0)), (lambda b: torch.amax(b, 0))
        minimum, maximum = torch.minimum, torch.maximum
        how = "torch, float64, row blocks"
    except ImportError:
        blocks = lambda: (X[lo:lo + step].astype(cp.float64) for lo in range(0, n, step))  # noqa: E731
        tonp = cp.asnumpy
        amin, amax = (lambda b: b.min(axis=0)), (lambda b: b.max(axis=0))
        minimum, maximum = cp.minimum, cp.maximum
        how = "cupy, float64, row blocks"
    lo_ = hi_ = s = ss = None
    for b in blocks():
        bl, bh, bs, bss = amin(b), amax(b), b.sum(0), (b * b).sum(0)
        lo_ = bl if lo_ is None else minimum(lo_, bl)
        hi_ = bh if hi_ is None else maximum(hi_, bh)
        s = bs if s is None else s + bs
        ss = bss if ss is None else ss + bss
    mean = s / n
    ssc = None
    for b in blocks():
        c = ((b - mean) ** 2).sum(0)
        ssc = c if ssc is None else ssc + c
    out = {"min": tonp(lo_), "max": tonp(hi_), "sum": tonp(s), "mean": tonp(mean),
           "sum_squares": tonp(ss), "sum_squares_centered": tonp(ssc)}
    out["variance"] = out["sum_squares_centered"] / (n - 1)
    out["standard_deviation"] = np.sqrt(out["variance"])
    out["second_order_raw_moment"] = out["sum_squares"] / n
    out["variation"] = out["standard_deviation"] / out["mean"]
    free_pools(cp)
    return out, how


def max_rel_diff(got, ref):
    worst = 0.0
    for name in NAMES:
        g = np.asarray(got[name], dtype=np.float64)
        r = np.asarray(ref[name], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(g == r, 0.0, np.abs(g - r) / np.abs(r))
        worst = max(worst, float(np.nanmax(rel)) if np.isfinite(rel).all() else float("inf"))
    return worst


def to_host_stats(stats):
    out = {}
    for k, v in stats.items():
        if hasattr(v, "cpu"):
            v = v.cpu().numpy()
        elif hasattr(v, "get"):
            v = v.get()
        out[k] = np.asarray(v)
    return out


def bench_case(cp, args, dtype, rows_wanted, ceilings):
    d = args.cols
    itemsize = np.dtype(dtype).itemsize
    free, _ = cp.cuda.Device().mem_info
    rows = int(min(rows_wanted, args.mem_fraction * free // (d * itemsize)))
    case = {"dtype": dtype, "rows_wanted": rows_wanted, "rows": rows, "cols": d,
            "bytes": rows * d * itemsize, "free_gib_before": free / 2**30, "libs": {}}
    if rows < rows_wanted:
        case["note"] = (f"rows cut from {rows_wanted:,} to {rows:,}: X may take at most "
                        f"{args.mem_fraction:.0%} of the {free / 2**30:.1f} GiB free")
    print(f"== {dtype} {rows:,} x {d} ({case['bytes'] / 1e9:.1f} GB)", flush=True)
    X = make_matrix(cp, rows, d, dtype, args.seed)
    ref, how = reference64(cp, X)
    case["reference"] = how
    copy_Bps = ceilings["copy_GBps"] * 1e9
    floor_ms = case["bytes"] / copy_Bps * 1e3

    def record(lib, timing, stats, error=None, baseline=False):
        entry = {"error": error}
        if error and baseline:
            # a baseline that could not run: its row says so; the exit status does not change
            entry["baseline_failed"] = True
        if timing is not None:
            ms = timing["median_events_ms"]
            gbps = case["bytes"] / (ms * 1e-3) / 1e9
            entry.update(timing)
            entry.update({"GBps": gbps, "pct_of_copy": 100.0 * gbps / ceilings["copy_GBps"],
                          "x_floor": ms / floor_ms})
        if stats is not None:
            entry["max_rel_diff_vs_ref"] = max_rel_diff(stats, ref)
        case["libs"][lib] = entry
        if error and baseline:
            print(f"   {lib}: FAILED (baseline; the benchmark goes on): {error}", flush=True)
        elif error:
            print(f"   {lib}: ERROR {error}", flush=True)
        else:
            print(f"   {lib}: {entry['median_events_ms']:.3f} ms (events), {entry['median_wall_ms']:.3f} ms "
                  f"(wall), {entry['GBps']:.0f} GB/s = {entry['pct_of_copy']:.1f}% of copy, "
                  f"max rel diff vs float64 {entry.get('max_rel_diff_vs_ref', float('nan')):.2e}", flush=True)

    if "spmdlearn" in args.libs:
        try:
            from spmdlearn.basic_statistics import BasicStatistics

            est = BasicStatistics(result_options="all")
            timing = time_gpu(cp, lambda: est.fit(X), args.repeats, args.warmup)
            stats = {n: getattr(est, n + "_") for n in NAMES}
            bad_types = [n for n in NAMES if type(stats[n]) is not np.ndarray]
            record("spmdlearn", timing, stats)
            e = case["libs"]["spmdlearn"]
            e["rtol"] = CHECK_RTOL[dtype]
            e["check"] = e["max_rel_diff_vs_ref"] <= CHECK_RTOL[dtype] and not bad_types
            if bad_types:
                e["check_note"] = f"attributes not numpy: {bad_types}"
            if est.n_samples_seen_ != rows:
                e["check"] = False
                e["check_note"] = f"n_samples_seen_ {est.n_samples_seen_} != {rows}"
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            record("spmdlearn", None, None, f"{type(exc).__name__}: {exc}")
            case["libs"]["spmdlearn"]["check"] = False
        free_pools(cp)
    if "torch" in args.libs:
        try:
            import torch

            t = torch.from_dlpack(X)
            case["torch_zero_copy"] = t.data_ptr() == X.data.ptr
            timing = time_gpu(cp, lambda: torch_stats(t), args.repeats, args.warmup)
            record("torch", timing, to_host_stats(torch_stats(t)))
            del t
        except Exception as exc:  # noqa: BLE001
            record("torch", None, None, f"{type(exc).__name__}: {exc}")
        free_pools(cp)
    if "cupy" in args.libs:
        try:
            timing, stats = cupy_baseline(cp, X, args)
            record("cupy", timing, stats)
        except BaselineFailed as exc:
            record("cupy", None, None, str(exc), baseline=True)
        except Exception as exc:  # noqa: BLE001 - any CuPy failure is reported, the benchmark goes on
            traceback.print_exc()
            record("cupy", None, None, f"{type(exc).__name__}: {exc}", baseline=True)
        free_pools(cp)
    case["floor_ms"] = floor_ms
    # spmdlearn's speedup against each baseline that ran (events ms; > 1: spmdlearn is faster)
    s_ms = case["libs"].get("spmdlearn", {}).get("median_events_ms")
    case["speedup"] = {}
    for lib, e in case["libs"].items():
        if lib == "spmdlearn":
            continue
        o_ms = e.get("median_events_ms")
        e["spmdlearn_speedup"] = (o_ms / s_ms) if (s_ms and o_ms) else None
        case["speedup"][lib] = e["spmdlearn_speedup"]
    del X
    free_pools(cp)
    return case


# --- report -------------------------------------------------------------------------------------

def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def single_report(info, vers, ceilings, cases, elapsed):
    c = ceilings
    lines = [
        f"# spmdlearn GPU benchmark, {info['name']}, {now_utc()[:10]}",
        "",
        f"- Command: `{command_line()}`",
        f"- Date: {now_utc()}; took {elapsed:.0f} s; host {socket.gethostname()}; git {git_commit()}",
        f"- Card: **{info['name']}** (GPU {info['device']}), {info['sms']} SMs, {info['memory_total_gib']:.1f} GiB "
        f"({info['memory_free_gib']:.1f} GiB free at start); nvidia-smi: `{info['nvidia_smi'] or 'n/a'}`; "
        f"CUDA runtime {info['cuda_runtime']}, driver API {info['cuda_driver']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "- Timing: warm-up, then median of the repeats; `ms` = CUDA events on the legacy default stream "
        "around the call, `wall ms` = host time between device synchronizations (includes the Python call "
        "and, for spmdlearn, its argument checks and the one-rank MPI agreement). GB/s = bytes of X read "
        "once / events ms. `% of copy` compares that one-pass read bandwidth with the copy bandwidth "
        "(bytes read + written / time), as DESIGN.md section 7 does; `x floor` = ms / (bytes of X / copy "
        "bandwidth).",
        "",
        "## Bandwidth ceilings",
        "",
        "| what | buffer | median ms | GB/s |",
        "|---|---:|---:|---:|",
        f"| cudaMemcpy device-to-device (read + write) | {c['buffer_bytes'] / 2**30:.2f} GiB | "
        f"{c['memcpy_d2d']['median_events_ms']:.3f} | {c['memcpy_d2d']['GBps']:.0f} |",
        f"| copy kernel `cupy.copyto` float32 (read + write) | {c['buffer_bytes'] / 2**30:.2f} GiB | "
        f"{c['copy_kernel']['median_events_ms']:.3f} | {c['copy_kernel']['GBps']:.0f} |",
        f"| read-only reduction ({c['read_reduction']['how']}) | {c['buffer_bytes'] / 2**30:.2f} GiB | "
        f"{c['read_reduction']['median_events_ms']:.3f} | {c['read_reduction']['GBps']:.0f} |",
        "",
        f"Copy bandwidth used below: **{c['copy_GBps']:.0f} GB/s** (the better copy).",
        "",
        "## BasicStatistics(result_options=\"all\") vs the same ten statistics in PyTorch and CuPy",
        "",
        "| library | dtype | shape | GB | ms | wall ms | GB/s | % of copy | x floor | floor ms | "
        "max rel diff vs float64 ref | check |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in cases:
        for lib, e in case["libs"].items():
            shape = f"{case['rows']:,} x {case['cols']}"
            if e.get("error") and e.get("baseline_failed"):
                why = e["error"].replace("|", "/").replace("\n", " ")[:240]
                lines.append(f"| {lib} | {case['dtype']} | {shape} | {case['bytes'] / 1e9:.2f} | failed: "
                             f"{why} | | | | | | | baseline not timed |")
                continue
            if e.get("error"):
                lines.append(f"| {lib} | {case['dtype']} | {shape} | {case['bytes'] / 1e9:.2f} | error: "
                             f"{e['error'][:120]} | | | | | | | **fail** |")
                continue
            check = ""
            if "check" in e:
                check = (f"ok (rtol {e['rtol']:g})" if e["check"]
                         else f"**FAIL** (rtol {e.get('rtol', 0):g}) {e.get('check_note', '')}")
            lines.append(
                f"| {lib} | {case['dtype']} | {shape} | {case['bytes'] / 1e9:.2f} | "
                f"{e['median_events_ms']:.3f} | {e['median_wall_ms']:.3f} | {e['GBps']:.0f} | "
                f"{e['pct_of_copy']:.1f}% | {e['x_floor']:.2f} | {case['floor_ms']:.3f} | "
                f"{fmt(e.get('max_rel_diff_vs_ref'), '.1e')} | {check} |")
    lines.append("")
    for case in cases:
        s = case["libs"].get("spmdlearn", {})
        parts = []
        for other in ("torch", "cupy"):
            o = case["libs"].get(other, {})
            if s.get("median_events_ms") and o.get("median_events_ms"):
                parts.append(f"{o['median_events_ms'] / s['median_events_ms']:.1f}x faster than {other}")
        if parts:
            lines.append(f"- {case['dtype']} {case['rows']:,} x {case['cols']}: spmdlearn is " + ", ".join(parts)
                         + " (events ms; > 1 means spmdlearn is faster).")
        for other, o in case["libs"].items():
            if o.get("baseline_failed"):
                lines.append(f"- {case['dtype']}: the {other} baseline failed and was not timed (no speedup "
                             f"against it; the exit status does not count it): {o['error']}")
        if case.get("note"):
            lines.append(f"- {case['dtype']}: {case['note']}.")
        if "torch_zero_copy" in case:
            lines.append(f"- {case['dtype']}: torch tensor shares the cupy array's memory: {case['torch_zero_copy']}.")
        lines.append(f"- {case['dtype']}: reference = {case['reference']}.")
    lines.append("")
    return "\n".join(lines)


def run_single(args):
    t_start = time.perf_counter()
    cp, dev, _ = select_gpu(None)
    info, vers = card_info(cp, dev), versions()
    print(f"card: {info['name']} (GPU {dev}), {info['memory_free_gib']:.1f} GiB free", flush=True)
    ceilings = measure_ceilings(cp, args)
    print(f"copy: memcpy {ceilings['memcpy_d2d']['GBps']:.0f} GB/s, kernel {ceilings['copy_kernel']['GBps']:.0f} GB/s; "
          f"read-only reduction {ceilings['read_reduction']['GBps']:.0f} GB/s", flush=True)
    if "torch" in args.libs:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("note: torch is not importable; the PyTorch column is left out", flush=True)
            args.libs = [lib for lib in args.libs if lib != "torch"]
    cases = []
    for dtype, rows in (("float32", args.rows_f32), ("float64", args.rows_f64)):
        if rows > 0:
            cases.append(bench_case(cp, args, dtype, rows, ceilings))
    report = single_report(info, vers, ceilings, cases, time.perf_counter() - t_start)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": info, "versions": vers, "ceilings": ceilings, "cases": cases,
                       "command": command_line(), "date": now_utc()}, f, indent=1, default=str)
    ok = all(c["libs"].get("spmdlearn", {}).get("check", True) for c in cases)
    # a failed baseline (CuPy out of memory or over its time budget) is reported, not counted
    ok = ok and all(not e.get("error") or e.get("baseline_failed") for c in cases for e in c["libs"].values())
    return 0 if ok else 1


# --- (c) scaling --------------------------------------------------------------------------------

def row_range(n, rank, size):
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def run_scaling(args):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cp, dev, count = select_gpu(comm)
    info = card_info(cp, dev)
    d, dtype = args.cols, args.dtype
    itemsize = np.dtype(dtype).itemsize
    if args.mode == "weak":
        total = args.rows_per_gpu * size
        lo, hi = rank * args.rows_per_gpu, (rank + 1) * args.rows_per_gpu
    else:
        total = args.total_rows
        lo, hi = row_range(total, rank, size)
    need = (hi - lo) * d * itemsize
    free, _ = cp.cuda.Device(dev).mem_info
    fits = comm.allreduce(int(need <= 0.8 * free), op=MPI.MIN)
    gpus = comm.allgather((socket.gethostname(), dev, info["name"]))
    if rank == 0:
        print(f"== {args.mode} scaling, {size} rank(s), {total:,} x {d} {dtype} in total; "
              f"rank -> (host, GPU, card): {gpus}", flush=True)
    if len({(h, g) for h, g, _ in gpus}) < size and rank == 0:
        print(f"warning: {size} ranks share {len({(h, g) for h, g, _ in gpus})} GPU(s); "
              "the numbers are not one GPU per rank", flush=True)
    if not fits:
        if rank == 0:
            print(f"error: {need / 2**30:.1f} GiB per rank does not fit 80% of a GPU's free memory", flush=True)
        return 2
    X = make_matrix(cp, hi - lo, d, dtype, args.seed * 1000 + rank)
    from spmdlearn.basic_statistics import BasicStatistics

    est = BasicStatistics(result_options="all")
    sync = cp.cuda.Device(dev).synchronize
    for _ in range(args.warmup):
        comm.Barrier()
        est.fit(X)
    times = []
    for _ in range(args.repeats):
        sync()
        comm.Barrier()
        t0 = time.perf_counter()
        est.fit(X)
        sync()
        t = time.perf_counter() - t0
        times.append(comm.allreduce(t, op=MPI.MAX) * 1e3)
    same = comm.allgather(est.mean_.tobytes() + est.variance_.tobytes())
    replicated = all(s == same[0] for s in same)
    med = statistics.median(times)
    result = {
        "mode": args.mode, "ranks": size, "dtype": dtype, "cols": d, "total_rows": total,
        "rows_per_gpu": args.rows_per_gpu if args.mode == "weak" else None,
        "rows_per_rank": comm.allgather(hi - lo), "median_ms": med, "times_ms": times,
        "GBps": total * d * itemsize / (med * 1e-3) / 1e9, "card": info["name"], "gpus": gpus,
        "replicated": replicated, "n_samples_seen": int(est.n_samples_seen_),
        "date": now_utc(), "command": command_line(),
        "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE"),
    }
    if rank == 0:
        line = json.dumps(result)
        print(SCALING_MARK + line, flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(line + "\n")
        base = [r for r in read_jsonl(args.jsonl) if r["ranks"] == 1 and group_key(r) == group_key(result)] \
            if args.jsonl else []
        msg = (f"{args.mode} scaling, {size} GPU(s): median {med:.3f} ms (max over ranks), "
               f"{result['GBps']:.0f} GB/s in total")
        if base and size > 1:
            t1 = base[-1]["median_ms"]
            msg += f"; efficiency vs 1 GPU ({t1:.3f} ms): {efficiency(result, t1):.0%}"
        print(msg, flush=True)
        if not replicated:
            print("error: fitted mean_/variance_ differ between ranks", flush=True)
        if result["n_samples_seen"] != total:
            print(f"error: n_samples_seen_ {result['n_samples_seen']} != {total}", flush=True)
    ok = replicated and result["n_samples_seen"] == total
    return 0 if ok else 1


def group_key(r):
    size_key = r["rows_per_gpu"] if r["mode"] == "weak" else r["total_rows"]
    return (r["mode"], r["dtype"], r["cols"], size_key)


def efficiency(r, t1):
    """Weak: t1 / tN (1.0 = the same time with N times the data). Strong: t1 / (N tN)."""
    return t1 / r["median_ms"] if r["mode"] == "weak" else t1 / (r["ranks"] * r["median_ms"])


def read_jsonl(path):
    out = []
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith(SCALING_MARK):
                line = line[len(SCALING_MARK):]
            if not line.startswith("{"):
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def assemble(args):
    rows = read_jsonl(args.assemble)
    lines = [f"# spmdlearn GPU scaling, BasicStatistics(result_options=\"all\").fit, {now_utc()[:10]}", "",
             f"- Source: `{args.assemble}` ({len(rows)} runs); assembled by `{command_line()}`",
             "- Each run: `mpirun -n N python bench/gpu_bench.py --mode weak|strong ...`, one GPU per rank "
             "(local rank % visible GPUs), cupy input on that GPU; a repeat's time is the max over ranks of "
             "`sync; Barrier; fit; sync`; median of the repeats.",
             "- Efficiency against the 1-GPU run of the same group: weak t1 / tN, strong t1 / (N tN).",
             "", "| mode | dtype | GPUs | rows per GPU | total rows | median ms | GB/s total | GB/s per GPU | "
             "t1 / tN | efficiency | replicated | card |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    groups = {}
    for r in rows:
        groups.setdefault(group_key(r), []).append(r)
    for key in sorted(groups, key=lambda k: (k[0] != "weak", k[1], k[2], k[3])):
        runs = sorted(groups[key], key=lambda r: r["ranks"])
        latest = {}
        for r in runs:  # the latest run of each rank count
            latest[r["ranks"]] = r
        base = latest.get(1)
        for n in sorted(latest):
            r = latest[n]
            per = r["rows_per_rank"]
            rpg = f"{max(per):,}" if len(set(per)) > 1 else f"{per[0]:,}"
            sp = f"{base['median_ms'] / r['median_ms']:.2f}" if base else "n/a"
            eff = f"{efficiency(r, base['median_ms']):.0%}" if base else "n/a (no 1-GPU run)"
            lines.append(f"| {r['mode']} | {r['dtype']} | {n} | {rpg} | {r['total_rows']:,} | {r['median_ms']:.3f} | "
                         f"{r['GBps']:.0f} | {r['GBps'] / n:.0f} | {sp} | {eff} | {r['replicated']} | {r['card']} |")
    lines.append("")
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.assemble:
        return assemble(args)
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    if args.mode == "single":
        launched = [int(os.environ[v]) for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE") if v in os.environ]
        if launched and launched[0] > 1:
            print("error: --mode single runs in one process; use --mode weak|strong under mpirun", file=sys.stderr)
            return 2
        return run_single(args)
    try:
        return run_scaling(args)
    except Exception:  # noqa: BLE001 - one rank failing must not leave the others in a collective
        traceback.print_exc()
        sys.stderr.flush()
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(1)
        return 1


if __name__ == "__main__":
    sys.exit(main())
