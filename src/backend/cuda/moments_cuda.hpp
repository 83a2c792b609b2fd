// Host-side interface of the CUDA statistics kernels (compiled by nvcc in moments_cuda.cu; this
// header needs no CUDA headers, so the CPU translation units can call it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace spmdlearn::cuda {

// Column moments of a device matrix X (row-major, n x d, row stride `stride` elements) about
// `shift` (host, d values), accumulated in double on the device and returned on the host:
//   s1 = Σ w (x - shift), s2 = Σ w (x - shift)², lo / hi = min / max over rows with w > 0,
//   weight = Σ w (n without weights).
// w is a device pointer or null. Deterministic: fixed grid, fixed reduction order.
// Throws invalid_argument naming the first NaN/inf (row, column), out_of_memory with the sizes
// asked and free, runtime_error for any other CUDA failure.
// `shift_used` is the shift the kernel really subtracted (rounded to float for float data, where
// the per-row arithmetic is float): mean = shift_used + s1 / weight.
struct column_moments {
  std::vector<double> s1, s2, lo, hi, shift_used;
  double weight = 0.0;
};
template <class T>
column_moments moments(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                       const T* w, const std::vector<double>& shift);

// Exact column moments of a device matrix: one pass about the first row, a second about the mean
// only when that shift was poor for some column (shifted sum of squares > 64x the centred one).
struct exact_moments {
  double weight = 0.0;
  std::vector<double> mean, m2, lo, hi;
};
template <class T>
exact_moments column_moments_exact(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                                   const T* w);

// Throws invalid_argument naming the first NaN/inf (row, column) of a device matrix, if any.
template <class T>
void throw_first_nonfinite(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride);

// Row 0 of a device matrix, as double on the host.
template <class T>
std::vector<double> first_row(const T* X, std::int64_t d);

// out (contiguous n x d, same device) = X * a + b per column, computed in double. Throws
// invalid_argument if X holds NaN/inf (checked in the same pass).
template <class T>
void scale_columns(const T* X, T* out, std::int64_t n, std::int64_t d, std::int64_t stride,
                   const std::vector<double>& a, const std::vector<double>& b);

// Copies a host block to a new buffer on the current device; free it with free_device.
struct device_buffer {
  void* ptr = nullptr;
  void* release() noexcept {
    void* p = ptr;
    ptr = nullptr;
    return p;
  }
};
device_buffer to_device(const void* host, std::size_t bytes);
void free_device(void* p) noexcept;

}  // namespace spmdlearn::cuda
