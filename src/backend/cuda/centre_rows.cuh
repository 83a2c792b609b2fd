// out (rows x d, contiguous row-major) = X - mean, computed in the mean's type M and stored as O:
// shared by the covariance/Mahalanobis path (M = O = double) and k-means (M = O = T, as
// scikit-learn's X -= X.mean(axis=0) in the precision of X).
#pragma once

#include <cstdint>

namespace spmdlearn::cuda {

template <class T, class M, class O>
__global__ void centre_rows_kernel(const T* __restrict__ X, std::int64_t rows, int d, std::int64_t stride,
                                   const M* __restrict__ mean, O* __restrict__ out) {
  const std::int64_t total = rows * d;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e / d;
    const int j = static_cast<int>(e - i * d);
    out[e] = static_cast<O>(static_cast<M>(X[i * stride + j]) - mean[j]);
  }
}

}  // namespace spmdlearn::cuda
