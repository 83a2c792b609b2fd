// Local input checks shared by the algorithms. They throw invalid_argument with a message that
// says what is wrong and where (local row/column); the collective guard adds the rank.
#pragma once

#include <cmath>
#include <exception>
#include <optional>
#include <string>

#include "spmdlearn/core/device.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"
#include "spmdlearn/core/table.hpp"

namespace spmdlearn::detail {

template <class T>
void check_host_matrix(const char* algo, matrix_view<const T> X) {
  require_cpu(X.device, algo);
  if (X.rows < 0 || X.cols < 0)
    throw invalid_argument(std::string(algo) + ": X has a negative dimension");
  if (X.rows > 0 && X.cols == 0)
    throw invalid_argument(std::string(algo) + ": found array with 0 feature(s) (shape=(" +
                           std::to_string(X.rows) + ", 0)) while a minimum of 1 is required.");
  if (X.rows > 0 && !X.data) throw invalid_argument(std::string(algo) + ": X has no data pointer");
}

// A device matrix: the build must have CUDA (else "built without CUDA support"), and the shape
// must make sense. The CUDA kernels read any row stride.
template <class T>
void check_device_matrix(const char* algo, matrix_view<const T> X) {
  if (!built_with_cuda()) require_cpu(X.device, algo);  // throws the clear "without CUDA" error
  if (X.rows < 0 || X.cols < 0)
    throw invalid_argument(std::string(algo) + ": X has a negative dimension");
  if (X.rows > 0 && X.cols == 0)
    throw invalid_argument(std::string(algo) + ": found array with 0 feature(s) (shape=(" +
                           std::to_string(X.rows) + ", 0)) while a minimum of 1 is required.");
}

// Called when a chunk's column sums were not finite: finds the first NaN/inf and reports it.
// (Finite values whose sum overflows are not an input error; then nothing is thrown.)
template <class T>
void throw_if_nonfinite(const char* what, matrix_view<const T> X, std::int64_t row0,
                        std::int64_t rows) {
  for (std::int64_t i = row0; i < row0 + rows; ++i)
    for (std::int64_t j = 0; j < X.cols; ++j) {
      const T v = X(i, j);
      if (!std::isfinite(v))
        throw invalid_argument(std::string(what) + " contains " +
                               (std::isnan(v) ? "NaN" : "infinity") + " (local row " +
                               std::to_string(i) + ", column " + std::to_string(j) +
                               "); remove or impute non-finite values first");
    }
}

template <class T>
void check_sample_weight(const char* algo, std::int64_t rows,
                         const std::optional<vector_view<const T>>& w) {
  if (!w) return;
  require_cpu(w->device, algo);
  if (w->size != rows)
    throw invalid_argument(std::string(algo) + ": sample_weight has " + std::to_string(w->size) +
                           " entries but X has " + std::to_string(rows) + " rows");
  for (std::int64_t i = 0; i < w->size; ++i) {
    const T v = (*w)[i];
    if (!std::isfinite(v))
      throw invalid_argument(std::string(algo) + ": sample_weight contains " +
                             (std::isnan(v) ? "NaN" : "infinity") + " (local row " +
                             std::to_string(i) + ")");
    if (v < 0)
      throw invalid_argument(std::string(algo) + ": sample_weight contains a negative value (" +
                             std::to_string(v) + " at local row " + std::to_string(i) +
                             "); weights must be >= 0");
  }
}

// The n_features a rank declares: an empty block of shape (0, 0) has no opinion.
template <class T>
std::int64_t declared_features(matrix_view<const T> X) {
  return (X.rows == 0 && X.cols == 0) ? -1 : X.cols;
}

// The collective guard for a block X: every rank agrees on success, n_features and dtype (each
// rank raises the same error otherwise); returns the agreed n_features (0 when no rank had one).
template <class T>
std::int64_t agree_on_block(const comm& c, std::exception_ptr err, matrix_view<const T> X) {
  const auto agreed = agree(c, err,
                            {{"n_features", declared_features(X)},
                             {"dtype", static_cast<std::int64_t>(dtype_of<T>()), dtype_labels}});
  return agreed[0] > 0 ? agreed[0] : 0;
}

// Rows per cache-resident chunk: ~128 KiB of input (L2: the column blocks revisit it), >= 16 rows.
inline std::int64_t chunk_rows(std::int64_t d, std::size_t elem_bytes) {
  const std::int64_t target = (128 << 10) / static_cast<std::int64_t>(elem_bytes * (d > 0 ? d : 1));
  return target < 16 ? 16 : (target > 4096 ? 4096 : target);
}

}  // namespace spmdlearn::detail
