"""Filling a GPU on purpose, for the out-of-memory tests (test_gpu.py, gpu_spmd_check.py)."""


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
