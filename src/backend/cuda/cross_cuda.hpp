// Host-side interface of the CUDA cross-product kernels (covariance and friends); needs no CUDA
// headers, so the CPU translation units can call it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace spmdlearn::cuda {

// Doubles in the memory of one CUDA device (freed on destruction; move-only).
class device_doubles {
 public:
  device_doubles() = default;
  // n zeros on the current device.
  explicit device_doubles(std::size_t n);
  ~device_doubles();
  device_doubles(device_doubles&& o) noexcept;
  device_doubles& operator=(device_doubles&& o) noexcept;
  device_doubles(const device_doubles&) = delete;
  device_doubles& operator=(const device_doubles&) = delete;
  double* data() noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }
  int device() const noexcept { return dev_; }
  std::vector<double> to_host() const;
  void from_host(const std::vector<double>& v);

 private:
  double* p_ = nullptr;
  std::size_t n_ = 0;
  int dev_ = -1;
};

// The centred cross-products of the rows of a device matrix X (n x d, row stride `stride`):
//   mean = Σ x / n,  cross = Σ (x - mean)(x - mean)ᵀ  (d x d, both triangles, in double, left on
//   X's device, or on the current device when n == 0).
// d <= 64: one fused pass -- rows are shifted by the first row while a shared-memory tile is
// loaded, every thread adds 4 x 4 blocks of outer products in registers (float work for float
// data, double accumulation per tile), the blocks' partials are combined in a fixed order
// (bitwise reproducible); cross = S - s sᵀ / n with S, s the shifted sums. A second pass about the
// mean runs only if the first row was a poor shift for some column. d > 64: an exact mean pass,
// then centred chunks added by cuBLAS dgemm (compute-bound there, where cuBLAS is good).
// Throws invalid_argument naming the first NaN/inf.
struct local_cross {
  double weight = 0.0;
  std::vector<double> mean;
  device_doubles cross;
};
template <class T>
local_cross centered_cross(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride);

// Weighted centred cross-products of the rows z = [x | y] of two device matrices (X: n x d, row
// stride sx; Y: n x t, row stride sy; w: n weights or null; all on one device), for the linear
// models: weight = Σ w, mean (d + t), cross = Σ w (z - mean)(z - mean)ᵀ ((d + t)², row-major, on
// the host). Rows are shifted by the first row and scaled by sqrt(w) into a buffer of the input
// type with one more column (sqrt(w)), in 1024-row batches; one strided-batched gemm gives each
// batch's S, s and W, summed across batches in double in a fixed order; cross = S - s sᵀ / W, with a
// second pass about the mean when the first row was a poor shift. Deterministic (no atomics in
// the sums). Throws invalid_argument for NaN/inf in X or Y (naming the first) and for negative or
// non-finite weights.
struct weighted_moments {
  double weight = 0.0;
  std::vector<double> mean, cross;
};
template <class T>
weighted_moments weighted_cross(const T* X, std::int64_t n, std::int64_t d, std::int64_t sx,
                                const T* Y, std::int64_t t, std::int64_t sy, const T* w);

// C += f v vᵀ for a d x d device matrix.
void add_outer(device_doubles& C, std::int64_t d, double f, const std::vector<double>& v);

// out[i] = (x_i - location)ᵀ P (x_i - location) for each row of the device matrix X; `out` is a
// device array of n doubles on X's device. P is d x d (symmetric).
template <class T>
void mahalanobis(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                 const std::vector<double>& location, const std::vector<double>& precision,
                 double* out);

}  // namespace spmdlearn::cuda
