// Which compute backends this build has.
#pragma once

#include <cstddef>

#include "spmdlearn/core/table.hpp"

namespace spmdlearn {

// True when the library was compiled with SPMDLEARN_ENABLE_CUDA.
bool built_with_cuda() noexcept;
// Number of visible CUDA devices (0 without CUDA support or without a GPU).
int cuda_device_count() noexcept;

// Throws not_implemented ("built without CUDA support", or "no CUDA path yet for <what>") when
// `dev` is not the CPU. The single place where an algorithm learns it cannot serve a device.
void require_cpu(device_kind dev, const char* what);

// A copy of host memory on this process's current CUDA device (device="cuda" with host data).
// Throws not_implemented without CUDA support, out_of_memory when the GPU is full.
class device_copy {
 public:
  device_copy(const void* host, std::size_t bytes);
  ~device_copy();
  device_copy(const device_copy&) = delete;
  device_copy& operator=(const device_copy&) = delete;
  const void* data() const noexcept { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

// Selects this rank's GPU: (rank on the node) modulo (visible GPUs), once per process. The local
// rank comes from the launcher's environment (OpenMPI, MPICH, Slurm); CUDA_VISIBLE_DEVICES is
// honoured by the CUDA runtime. Returns the device index, or -1 without CUDA / GPUs.
int select_local_gpu() noexcept;

}  // namespace spmdlearn
