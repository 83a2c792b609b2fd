// Row-major strided matrix views.
//
// A view does not own memory. Element (i, j) lives at data[i * row_stride + j]; rows = 0 is a
// valid, empty block (a rank that holds no rows). The device tag says where `data` lives; the CPU
// algorithms reject device views, the CUDA backend accepts them.
//
//   std::vector<double> buf(n * d);
//   spmdlearn::matrix_view<const double> X{buf.data(), n, d};
#pragma once

#include <cstdint>
#include <type_traits>

namespace spmdlearn {

enum class dtype : int { float32 = 0, float64 = 1 };
enum class device_kind : int { cpu = 0, cuda = 1 };

template <class T>
constexpr dtype dtype_of() {
  static_assert(std::is_same_v<std::remove_const_t<T>, float> ||
                    std::is_same_v<std::remove_const_t<T>, double>,
                "spmdlearn supports float and double");
  return std::is_same_v<std::remove_const_t<T>, float> ? dtype::float32 : dtype::float64;
}

constexpr const char* dtype_name(dtype t) { return t == dtype::float32 ? "float32" : "float64"; }

template <class T>
struct matrix_view {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = -1;  // -1: contiguous rows (stride = cols)
  device_kind device = device_kind::cpu;

  matrix_view() = default;
  matrix_view(T* d, std::int64_t r, std::int64_t c, std::int64_t stride = -1,
              device_kind dev = device_kind::cpu)
      : data(d), rows(r), cols(c), row_stride(stride < 0 ? c : stride), device(dev) {}
  // A view of non-const elements converts to a view of const elements.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T>>>
  matrix_view(const matrix_view<U>& o)
      : data(o.data), rows(o.rows), cols(o.cols), row_stride(o.row_stride), device(o.device) {}

  std::int64_t stride() const { return row_stride < 0 ? cols : row_stride; }
  T* row(std::int64_t i) const { return data + i * stride(); }
  T& operator()(std::int64_t i, std::int64_t j) const { return data[i * stride() + j]; }
  bool empty() const { return rows == 0; }
};

// A 1-D view (sample weights, targets). size may be 0. Optional inputs are passed as
// std::optional<vector_view<const T>>.
template <class T>
struct vector_view {
  T* data = nullptr;
  std::int64_t size = 0;
  device_kind device = device_kind::cpu;
  T& operator[](std::int64_t i) const { return data[i]; }
};

}  // namespace spmdlearn
