// Arithmetic type of the per-row work in the one-pass kernels (needs nvcc only by convention).
#pragma once

namespace spmdlearn::cuda {

// Float data is shifted, multiplied and min/maxed in float, and only short runs of rows' sums go
// to double accumulators -- FP64 throughput (half of FP32 on Hopper) would otherwise cap the pass
// below memory speed. Double data works in double.
template <class T>
struct work_type {
  using type = double;
};
template <>
struct work_type<float> {
  using type = float;
};

}  // namespace spmdlearn::cuda
