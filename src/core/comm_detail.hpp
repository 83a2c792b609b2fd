// Shared helpers of the communicator implementations.
#pragma once

#include <cstddef>
#include <cstring>

#include "spmdlearn/core/comm.hpp"

namespace spmdlearn {

inline std::size_t element_size(comm_type t) {
  switch (t) {
    case comm_type::int8: return 1;
    case comm_type::int32: return 4;
    case comm_type::float32: return 4;
    default: return 8;
  }
}

inline void copy_elements(const void* src, void* dst, std::size_t count, comm_type t) {
  if (count && src != dst) std::memcpy(dst, src, count * element_size(t));
}

// acc[i] = op(acc[i], in[i]) for the given element type.
void reduce_into(void* acc, const void* in, std::size_t count, comm_type t, reduce_op op);

}  // namespace spmdlearn
