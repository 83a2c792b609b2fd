// Plain device <-> host copies for the CPU translation units (no CUDA headers needed).
#pragma once

#include <cstddef>

namespace spmdlearn::cuda {
// Synchronous copies; the device pointer's device is used. Throw runtime_error on failure.
void copy_device_to_host(void* host, const void* device, std::size_t bytes);
void copy_host_to_device(void* device, const void* host, std::size_t bytes);
}  // namespace spmdlearn::cuda
