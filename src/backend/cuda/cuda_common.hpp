// Helpers shared by the CUDA units: checked calls, stream-ordered scratch, the device a pointer
// lives on, and the per-device context (stream, cuBLAS and cuSOLVER handles). Needs the CUDA
// headers (not nvcc): the NCCL unit, a plain C++ file, uses it too.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstddef>
#include <string>

#include "spmdlearn/core/error.hpp"

namespace spmdlearn::cuda {

// Throws out_of_memory (with the bytes asked and free) for cudaErrorMemoryAllocation, otherwise
// runtime_error with CUDA's message; clears the (non-sticky) error first.
[[noreturn]] void fail(cudaError_t e, const char* what, std::size_t bytes = 0);
inline void check(cudaError_t e, const char* what, std::size_t bytes = 0) {
  if (e != cudaSuccess) fail(e, what, bytes);
}
void check_blas(cublasStatus_t s, const char* what);
void check_solver(cusolverStatus_t s, const char* what);

// One per device, created on first use and kept for the life of the process:
//   stream  -- where every spmdlearn kernel, cuBLAS/cuSOLVER call and NCCL collective of that
//              device runs. A blocking stream: it is ordered after work other libraries queued on
//              the legacy default stream, and we synchronise the device before reading their data.
//   blas, solver -- handles bound to that stream.
// The device's default memory pool (cudaMallocAsync) keeps up to 1 GiB between calls instead of
// returning it to the driver after every synchronisation.
struct context {
  int device = -1;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver_handle = nullptr;
  cusolverDnHandle_t solver();  // created on first use (cuSOLVER initialisation is slow)
};
context& context_for(int device);

// Whether float32 products may run as 3xTF32 on tensor cores (tf32x3.cuh): the current device is
// sm_80 or newer and SPMDLEARN_FP32_SIMT is not "1" (that asks for the plain fp32 SIMT kernels,
// kept for comparison in the benchmarks). Read once a process (every GPU of a host is the same
// model here).
bool tf32x3_enabled();

// Scratch from the stream-ordered pool on the context stream; no device-wide synchronisation.
template <class T>
struct dev_array {
  T* p = nullptr;
  cudaStream_t s = nullptr;
  dev_array(std::size_t n, cudaStream_t stream) : s(stream) {
    if (n == 0) return;
    check(cudaMallocAsync(reinterpret_cast<void**>(&p), n * sizeof(T), s), "cudaMallocAsync",
          n * sizeof(T));
  }
  ~dev_array() {
    if (p) cudaFreeAsync(p, s);
  }
  dev_array(const dev_array&) = delete;
  dev_array& operator=(const dev_array&) = delete;
};

// Makes the device that holds `ptr` current for the scope (kernels must run where the data is),
// and waits for work other libraries queued there, so their data is complete before we read it.
struct device_scope {
  int previous = -1;
  int device = -1;
  context* ctx = nullptr;
  explicit device_scope(const void* ptr, bool synchronize = true);
  ~device_scope();
  cudaStream_t stream() const { return ctx->stream; }
};

// Throws invalid_argument unless `ptr` is device memory of `device` (for a second input array).
void require_same_device(const void* ptr, int device, const char* what);

int multiprocessors();

}  // namespace spmdlearn::cuda
