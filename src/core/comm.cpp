#include <algorithm>
#include <cstdint>

#include <vector>

#include "backend/cuda/memory.hpp"
#include "core/comm_detail.hpp"
#include "spmdlearn/core/error.hpp"

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

void comm::device_allreduce(void* device_buf, std::size_t count, comm_type t, reduce_op op) const {
#ifdef SPMDLEARN_WITH_CUDA
  if (count == 0 || size() == 1) return;
  // Staged through the host: correct everywhere, and cheap for the small buffers it serves.
  std::vector<char> host(count * element_size(t));
  cuda::copy_device_to_host(host.data(), device_buf, host.size());
  allreduce(host.data(), count, t, op);
  cuda::copy_host_to_device(device_buf, host.data(), host.size());
#else
  (void)device_buf, (void)count, (void)t, (void)op;
  throw not_implemented("device_allreduce: spmdlearn was built without CUDA support");
#endif
}

void comm::guard_exchange(const std::int64_t* mine, std::int64_t* all, std::size_t count,
                          const std::string&) const {
  allgather(mine, all, count, comm_type::int64);
}

}  // namespace spmdlearn
