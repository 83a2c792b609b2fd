#include "spmdlearn/core/device.hpp"

#include <string>

#include "spmdlearn/core/error.hpp"

namespace spmdlearn {

#ifdef SPMDLEARN_WITH_CUDA
namespace cuda {
int device_count() noexcept;  // src/backend/cuda/device_cuda.cu
}
bool built_with_cuda() noexcept { return true; }
int cuda_device_count() noexcept { return cuda::device_count(); }
#else
bool built_with_cuda() noexcept { return false; }
int cuda_device_count() noexcept { return 0; }
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
