#include "spmdlearn/core/device.hpp"

#include <cstdlib>
#include <string>

#include "backend/cuda/moments_cuda.hpp"

#include "spmdlearn/core/error.hpp"

namespace spmdlearn {

#ifdef SPMDLEARN_WITH_CUDA
namespace cuda {
int device_count() noexcept;   // src/backend/cuda/device_cuda.cu
bool set_device(int) noexcept;  // src/backend/cuda/device_cuda.cu
}
bool built_with_cuda() noexcept { return true; }
int cuda_device_count() noexcept { return cuda::device_count(); }

device_copy::device_copy(const void* host, std::size_t bytes) {
  select_local_gpu();
  ptr_ = cuda::to_device(host, bytes).release();
}
device_copy::~device_copy() { cuda::free_device(ptr_); }

int select_local_gpu() noexcept {
  static const int chosen = [] {
    const int count = cuda::device_count();
    if (count <= 0) return -1;
    int local = 0;
    for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                          "SLURM_LOCALID", "LOCAL_RANK"})
      if (const char* s = std::getenv(v)) {
        local = std::atoi(s);
        break;
      }
    const int dev = local % count;
    return cuda::set_device(dev) ? dev : -1;
  }();
  return chosen;
}
#else
bool built_with_cuda() noexcept { return false; }
int cuda_device_count() noexcept { return 0; }
device_copy::device_copy(const void*, std::size_t) {
  throw not_implemented("device='cuda' needs a GPU, but spmdlearn was built without CUDA support "
                        "(rebuild with -DSPMDLEARN_ENABLE_CUDA=ON)");
}
device_copy::~device_copy() = default;
int select_local_gpu() noexcept { return -1; }
#endif

void require_cpu(device_kind dev, const char* what) {
  if (dev == device_kind::cpu) return;
  if (!built_with_cuda())
    throw not_implemented(std::string(what) +
                          ": data is on a CUDA device but spmdlearn was built without CUDA "
                          "support (rebuild with -DSPMDLEARN_ENABLE_CUDA=ON)");
  throw not_implemented(std::string(what) + ": no CUDA path yet; pass host (numpy) data");
}

}  // namespace spmdlearn
