// The per-device CUDA context and the checked-call helpers (see cuda_common.hpp).
#include <cstdlib>
#include <cstdint>
#include <memory>
#include <mutex>

#include "backend/cuda/cuda_common.hpp"

namespace spmdlearn::cuda {

void fail(cudaError_t e, const char* what, std::size_t bytes) {
  cudaGetLastError();
  if (e == cudaErrorMemoryAllocation) {
    std::size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    int dev = -1;
    cudaGetDevice(&dev);
    throw out_of_memory(std::string(what) + ": out of GPU memory on CUDA device " +
                        std::to_string(dev) + " asking for " + std::to_string(bytes) + " bytes (" +
                        std::to_string(free_b) + " of " + std::to_string(total_b) +
                        " bytes free)");
  }
  throw runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  if (s == CUBLAS_STATUS_ALLOC_FAILED) fail(cudaErrorMemoryAllocation, what);
  throw runtime_error(std::string(what) + " failed (cuBLAS status " +
                      std::to_string(static_cast<int>(s)) + ")");
}

void check_solver(cusolverStatus_t s, const char* what) {
  if (s == CUSOLVER_STATUS_SUCCESS) return;
  if (s == CUSOLVER_STATUS_ALLOC_FAILED) fail(cudaErrorMemoryAllocation, what);
  throw runtime_error(std::string(what) + " failed (cuSOLVER status " +
                      std::to_string(static_cast<int>(s)) + ")");
}

namespace {
std::mutex context_mutex;
}

context& context_for(int device) {
  static std::unique_ptr<context> contexts[64];
  if (device < 0 || device >= 64) throw runtime_error("CUDA device index out of range");
  std::lock_guard<std::mutex> lock(context_mutex);
  if (!contexts[device]) {
    auto c = std::make_unique<context>();
    c->device = device;
    check(cudaStreamCreate(&c->stream), "cudaStreamCreate");
    check_blas(cublasCreate(&c->blas), "cublasCreate");
    check_blas(cublasSetStream(c->blas, c->stream), "cublasSetStream");
    cudaMemPool_t pool = nullptr;
    if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
      std::uint64_t keep = 1ULL << 30;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cudaGetLastError();
    contexts[device] = std::move(c);
  }
  return *contexts[device];
}

cusolverDnHandle_t context::solver() {
  std::lock_guard<std::mutex> lock(context_mutex);
  if (!solver_handle) {
    check_solver(cusolverDnCreate(&solver_handle), "cusolverDnCreate");
    check_solver(cusolverDnSetStream(solver_handle, stream), "cusolverDnSetStream");
  }
  return solver_handle;
}

device_scope::device_scope(const void* ptr, bool synchronize) {
  cudaPointerAttributes a{};
  check(cudaPointerGetAttributes(&a, ptr), "cudaPointerGetAttributes");
  if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
    throw invalid_argument("the array is not in CUDA device memory");
  check(cudaGetDevice(&previous), "cudaGetDevice");
  device = a.type == cudaMemoryTypeManaged && a.device < 0 ? previous : a.device;
  if (device != previous) check(cudaSetDevice(device), "cudaSetDevice");
  ctx = &context_for(device);
  // Data written by other libraries on their own streams must be complete before we read it.
  if (synchronize) check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

device_scope::~device_scope() {
  if (previous >= 0 && previous != device) cudaSetDevice(previous);
}

void require_same_device(const void* ptr, int device, const char* what) {
  cudaPointerAttributes a{};
  check(cudaPointerGetAttributes(&a, ptr), "cudaPointerGetAttributes");
  if ((a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged) ||
      (a.type == cudaMemoryTypeDevice && a.device != device))
    throw invalid_argument(std::string(what) + " must be on the same CUDA device as X (device " +
                           std::to_string(device) + ")");
}

bool tf32x3_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("SPMDLEARN_FP32_SIMT");
    if (env && env[0] == '1' && env[1] == '\0') return false;
    int dev = 0, major = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute");
    return major >= 8;
  }();
  return on;
}

int multiprocessors() {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  return sms;
}

}  // namespace spmdlearn::cuda

#include "backend/cuda/memory.hpp"

namespace spmdlearn::cuda {
void copy_device_to_host(void* host, const void* device, std::size_t bytes) {
  if (bytes) check(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (device to host)");
}
void copy_host_to_device(void* device, const void* host, std::size_t bytes) {
  if (bytes) check(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (host to device)");
}
}  // namespace spmdlearn::cuda
