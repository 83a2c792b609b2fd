"""Shared pieces of the GPU benchmarks (gpu_linear_bench.py, gpu_logistic_bench.py,
gpu_pca_bench.py): one GPU per rank, and wall-clock timing of a synchronised call."""
import statistics
import time

import cupy as cp
import torch
from mpi4py import MPI


def use_local_gpu(comm):
    """This rank's GPU (rank modulo the visible GPUs) for cupy and torch; returns the card's name."""
    dev = comm.rank % cp.cuda.runtime.getDeviceCount()
    cp.cuda.Device(dev).use()
    torch.cuda.set_device(dev)
    return torch.cuda.get_device_name()


def timed(fn, repeats=5, warmup=1, comm=None):
    """Median over `repeats` of the wall time (ms) of `sync; [Barrier;] fn(); sync; [Barrier]`
    after `warmup` calls; with `comm`, each repeat's time is the max over the ranks."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        cp.cuda.Device().synchronize()
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        fn()
        cp.cuda.Device().synchronize()
        if comm is not None:
            comm.Barrier()
        dt = time.perf_counter() - t0
        if comm is not None:
            dt = comm.allreduce(dt, op=MPI.MAX)
        ts.append(dt * 1e3)
    return statistics.median(ts)
