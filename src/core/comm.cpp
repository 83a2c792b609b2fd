#include <algorithm>
#include <cstdint>

#include "core/comm_detail.hpp"

namespace spmdlearn {
namespace {
template <class T>
void reduce_typed(T* acc, const T* in, std::size_t n, reduce_op op) {
  switch (op) {
    case reduce_op::sum:
      for (std::size_t i = 0; i < n; ++i) acc[i] += in[i];
      break;
    case reduce_op::min:
      for (std::size_t i = 0; i < n; ++i) acc[i] = std::min(acc[i], in[i]);
      break;
    case reduce_op::max:
      for (std::size_t i = 0; i < n; ++i) acc[i] = std::max(acc[i], in[i]);
      break;
  }
}
}  // namespace

void reduce_into(void* acc, const void* in, std::size_t n, comm_type t, reduce_op op) {
  switch (t) {
    case comm_type::int8: reduce_typed(static_cast<char*>(acc), static_cast<const char*>(in), n, op); break;
    case comm_type::int32: reduce_typed(static_cast<std::int32_t*>(acc), static_cast<const std::int32_t*>(in), n, op); break;
    case comm_type::int64: reduce_typed(static_cast<std::int64_t*>(acc), static_cast<const std::int64_t*>(in), n, op); break;
    case comm_type::float32: reduce_typed(static_cast<float*>(acc), static_cast<const float*>(in), n, op); break;
    case comm_type::float64: reduce_typed(static_cast<double*>(acc), static_cast<const double*>(in), n, op); break;
  }
}

}  // namespace spmdlearn
