// StandardScaler / MaxAbsScaler: the statistics state, finalised the scikit-learn way.
#include <cmath>
#include <limits>
#include <string>

#include "backend/cuda/moments_cuda.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/preprocessing.hpp"

namespace spmdlearn::preprocessing {

namespace {
constexpr double eps = std::numeric_limits<double>::epsilon();

template <class T>
void check_shapes(const char* what, std::int64_t d, matrix_view<const T> X, matrix_view<T> out) {
  detail::check_host_matrix(what, X);
  if (X.rows > 0 && X.cols != d)
    throw invalid_argument(std::string(what) + ": X has " + std::to_string(X.cols) +
                           " features, but the scaler was fitted with " + std::to_string(d));
  if (out.rows != X.rows || out.cols != X.cols)
    throw invalid_argument(std::string(what) + ": output has the wrong shape");
}

// out = (X - shift) / scale, or X * scale + shift for the inverse; shift/scale may be empty.
template <class T>
void affine(matrix_view<const T> X, matrix_view<T> out, const std::vector<double>& shift,
            const std::vector<double>& scale, bool inverse) {
  const std::int64_t d = X.cols;
  std::vector<double> a(d, 1.0), b(d, 0.0);  // out = x * a + b
  for (std::int64_t j = 0; j < d; ++j) {
    const double s = scale.empty() ? 1.0 : scale[j];
    const double m = shift.empty() ? 0.0 : shift[j];
    a[j] = inverse ? s : 1.0 / s;
    b[j] = inverse ? m : -m / s;
  }
  for (std::int64_t i = 0; i < X.rows; ++i) {
    const T* x = X.row(i);
    T* o = out.row(i);
    for (std::int64_t j = 0; j < d; ++j)
      o[j] = inverse ? static_cast<T>(static_cast<double>(x[j]) * a[j] + b[j])
                     : static_cast<T>((static_cast<double>(x[j]) - (shift.empty() ? 0.0 : shift[j])) * a[j]);
  }
}
}  // namespace

standard_scaler_result standard_scaler_finalize(const basic_statistics::state& s,
                                                const standard_scaler_params& p) {
  standard_scaler_result r;
  const std::int64_t d = s.n_features;
  const double W = s.weight_sum;
  if (p.with_mean || p.with_std) r.mean = s.mean;
  if (!p.with_std) return r;
  r.var.resize(d);
  r.scale.resize(d);
  for (std::int64_t j = 0; j < d; ++j) {
    const double var = W > 0 ? s.m2[j] / W : 0.0;
    r.var[j] = var;
    // scikit-learn's test for a constant feature: var within the rounding of the computation.
    const double nm = W * s.mean[j] * eps;
    const bool constant = var <= W * eps * var + nm * nm;
    const double sc = std::sqrt(var);
    r.scale[j] = constant ? 1.0 : sc;  // scikit-learn uses only the mask here
    // A variance beyond the float range (deviations beyond ~1e154): scikit-learn's var_ is inf or
    // NaN (inf - inf), and its scale_ NaN (or, by its constant-feature test, 1). NaN, which
    // transform carries into its output, rather than a 1 or an inf that would look valid.
    if (!std::isfinite(var)) r.scale[j] = std::numeric_limits<double>::quiet_NaN();
  }
  return r;
}

max_abs_scaler_result max_abs_scaler_finalize(const basic_statistics::state& s, dtype t) {
  // scikit-learn: scales below 10 eps of the data's dtype count as zero.
  const double tiny = 10.0 * (t == dtype::float32 ? std::numeric_limits<float>::epsilon() : eps);
  max_abs_scaler_result r;
  const std::int64_t d = s.n_features;
  r.max_abs.resize(d);
  r.scale.resize(d);
  for (std::int64_t j = 0; j < d; ++j) {
    const double m = std::max(std::abs(s.min[j]), std::abs(s.max[j]));
    r.max_abs[j] = m;
    r.scale[j] = m < tiny ? 1.0 : m;
  }
  return r;
}

template <class T>
void standard_scaler::transform(matrix_view<const T> X, matrix_view<T> out) const {
  check_shapes("StandardScaler.transform", state_.n_features, X, out);
  affine(X, out, params_.with_mean ? result_.mean : std::vector<double>{}, result_.scale, false);
}
template <class T>
void standard_scaler::inverse_transform(matrix_view<const T> X, matrix_view<T> out) const {
  check_shapes("StandardScaler.inverse_transform", state_.n_features, X, out);
  affine(X, out, params_.with_mean ? result_.mean : std::vector<double>{}, result_.scale, true);
}
template <class T>
void max_abs_scaler::transform(matrix_view<const T> X, matrix_view<T> out) const {
  check_shapes("MaxAbsScaler.transform", state_.n_features, X, out);
  affine(X, out, {}, result_.scale, false);
}
template <class T>
void max_abs_scaler::inverse_transform(matrix_view<const T> X, matrix_view<T> out) const {
  check_shapes("MaxAbsScaler.inverse_transform", state_.n_features, X, out);
  affine(X, out, {}, result_.scale, true);
}

template <class T>
void scale_columns(matrix_view<const T> X, matrix_view<T> out, std::span<const double> a,
                   std::span<const double> b) {
  const std::int64_t d = X.cols;
  if (out.rows != X.rows || out.cols != d || static_cast<std::int64_t>(a.size()) != d ||
      static_cast<std::int64_t>(b.size()) != d)
    throw invalid_argument("scale_columns: shapes do not match (X has " + std::to_string(d) +
                           " columns)");
  if (out.device != X.device)
    throw invalid_argument("scale_columns: X and out live on different devices");
  if (X.device == device_kind::cuda) {
#ifdef SPMDLEARN_WITH_CUDA
    if (out.stride() != d) throw invalid_argument("scale_columns: out must be contiguous");
    cuda::scale_columns(X.data, out.data, X.rows, d, X.stride(), std::vector<double>(a.begin(), a.end()),
                        std::vector<double>(b.begin(), b.end()));
    return;
#else
    require_cpu(X.device, "scale_columns");
#endif
  }
  for (std::int64_t i = 0; i < X.rows; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double v = static_cast<double>(X(i, j));
      if (!std::isfinite(v))
        throw invalid_argument("Input X contains NaN or infinity; remove or impute non-finite "
                               "values first");
      out(i, j) = static_cast<T>(v * a[j] + b[j]);
    }
}

#define SPMDLEARN_INSTANTIATE(T)                                                                   \
  template void scale_columns<T>(matrix_view<const T>, matrix_view<T>, std::span<const double>,    \
                                 std::span<const double>);                                         \
  template void standard_scaler::transform<T>(matrix_view<const T>, matrix_view<T>) const;         \
  template void standard_scaler::inverse_transform<T>(matrix_view<const T>, matrix_view<T>) const; \
  template void max_abs_scaler::transform<T>(matrix_view<const T>, matrix_view<T>) const;          \
  template void max_abs_scaler::inverse_transform<T>(matrix_view<const T>, matrix_view<T>) const;
SPMDLEARN_INSTANTIATE(float)
SPMDLEARN_INSTANTIATE(double)
#undef SPMDLEARN_INSTANTIATE

}  // namespace spmdlearn::preprocessing
