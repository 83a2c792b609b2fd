// The CUDA backend's entry point. The GPU algorithms arrive with the CUDA issue; this unit keeps
// the CUDA toolchain part of every build so that it keeps compiling.
#include <cuda_runtime.h>

namespace spmdlearn::cuda {

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

bool set_device(int dev) noexcept {
  if (cudaSetDevice(dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return true;
}

}  // namespace spmdlearn::cuda
