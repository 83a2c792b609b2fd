"""Shared by the GPU tests (test_gpu.py, gpu_spmd_check.py): the numpy reference of the ten
statistics, and filling a GPU on purpose for the out-of-memory tests."""

import numpy as np


def numpy_reference(X, sample_weight=None):
    """The ten statistics in float64 with numpy (integer weights: rows repeated)."""
    X = np.asarray(X, dtype=np.float64)
    if sample_weight is not None:
        X = np.repeat(X, np.asarray(sample_weight).astype(np.int64), axis=0)
    n = X.shape[0]
    mean = X.mean(axis=0)
    ssc = ((X - mean) ** 2).sum(axis=0)
    ss = (X * X).sum(axis=0)
    var = ssc / (n - 1)
    std = np.sqrt(var)
    return {
        "min": X.min(axis=0), "max": X.max(axis=0), "sum": X.sum(axis=0), "mean": mean,
        "variance": var, "standard_deviation": std, "sum_squares": ss,
        "sum_squares_centered": ssc, "second_order_raw_moment": ss / n, "variation": std / mean,
    }


def grab_gpu_memory(cp, device, leave):
    """All but about `leave` bytes of the GPU's free memory, taken with raw cudaMalloc in chunks
    (bypassing cupy's pool). Returns (pointers, free bytes left); free them with release_gpu_memory."""
    rt = cp.cuda.runtime
    granule = 2 << 20
    ptrs = []
    with cp.cuda.Device(device):
        cp.get_default_memory_pool().free_all_blocks()
        cp.cuda.Device(device).synchronize()
        try:
            chunk = 1 << 30
            for _ in range(1 << 16):
                free, _total = rt.memGetInfo()
                want = (free - leave) // granule * granule
                if want < granule:
                    break
                try:
                    ptrs.append(rt.malloc(min(chunk, want)))
                except rt.CUDARuntimeError:
                    if chunk <= granule:
                        break
                    chunk //= 2
            return ptrs, int(rt.memGetInfo()[0])
        except BaseException:
            release_gpu_memory(cp, device, ptrs)
            raise


def release_gpu_memory(cp, device, ptrs):
    with cp.cuda.Device(device):
        while ptrs:
            cp.cuda.runtime.free(ptrs.pop())
        cp.cuda.Device(device).synchronize()
