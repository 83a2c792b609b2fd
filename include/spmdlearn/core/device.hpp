// Which compute backends this build has.
#pragma once

#include "spmdlearn/core/table.hpp"

namespace spmdlearn {

// True when the library was compiled with SPMDLEARN_ENABLE_CUDA.
bool built_with_cuda() noexcept;
// Number of visible CUDA devices (0 without CUDA support or without a GPU).
int cuda_device_count() noexcept;

// Throws not_implemented ("built without CUDA support", or "no CUDA path yet for <what>") when
// `dev` is not the CPU. The single place where an algorithm learns it cannot serve a device.
void require_cpu(device_kind dev, const char* what);

}  // namespace spmdlearn
