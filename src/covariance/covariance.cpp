// EmpiricalCovariance: local centred cross-products (BLAS syrk per chunk) -> merge -> finalize.
#include "spmdlearn/covariance.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>

#include "backend/cpu/lapack.hpp"
#include "backend/cuda/cross_cuda.hpp"
#include "core/merge.hpp"
#include "core/threads.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"
#include "spmdlearn/core/device.hpp"

namespace spmdlearn::covariance {

namespace {

struct local_cross {
  double weight = 0.0;
  std::vector<double> mean;
  std::vector<double> cross;  // column-major upper triangle valid
};

// Rows per chunk: the centred double copy stays around 1 MiB, and syrk gets k >= 64.
std::int64_t cov_chunk_rows(std::int64_t d) {
  const std::int64_t r = (1 << 20) / (8 * std::max<std::int64_t>(d, 1));
  return std::clamp<std::int64_t>(r, 64, 8192);
}

// One pass per chunk: rows are shifted (by the running mean, or the block's first row before there
// is one) into a double buffer while the shifted sums and squares are taken; BLAS syrk adds the
// buffer's cross-products, and rank-1 updates turn them into centred ones (-n u uᵀ, u = chunk mean
// - shift) and merge the chunk (Chan). If the shift was poor for a column (shifted squares > 64x
// the centred ones), the buffer is re-centred on the chunk mean first (from cache): exact always.
template <class T>
void accumulate(const char* what, matrix_view<const T> X, local_cross& acc) {
  const std::int64_t n = X.rows, d = X.cols;
  acc.mean.assign(d, 0.0);
  acc.cross.assign(d * d, 0.0);
  acc.weight = 0.0;
  if (n == 0) return;
  const std::int64_t B = cov_chunk_rows(d);
  std::vector<double> buf(B * d), s1(d), s2(d), shift(d), u(d), mb(d), delta(d);
  for (std::int64_t j = 0; j < d; ++j) {
    shift[j] = static_cast<double>(X(0, j));
    if (!std::isfinite(shift[j])) shift[j] = 0.0;  // reported by the pass below
  }
  double* __restrict p1 = s1.data();
  double* __restrict p2 = s2.data();
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    if (acc.weight > 0.0) shift = acc.mean;
    const double* __restrict sh = shift.data();
    std::fill(s1.begin(), s1.end(), 0.0);
    std::fill(s2.begin(), s2.end(), 0.0);
    for (std::int64_t i = 0; i < nb; ++i) {
      const T* __restrict x = X.row(i0 + i);
      double* __restrict out = buf.data() + i * d;
      for (std::int64_t j = 0; j < d; ++j) {
        const double t = static_cast<double>(x[j]) - sh[j];
        out[j] = t;
        p1[j] += t;
        p2[j] += t * t;
      }
    }
    for (std::int64_t j = 0; j < d; ++j)
      if (!std::isfinite(p1[j]) || !std::isfinite(p2[j])) {
        detail::throw_if_nonfinite(what, X, i0, nb);
        break;
      }
    const double inv = 1.0 / static_cast<double>(nb);
    bool poor_shift = false, shifted = false;
    for (std::int64_t j = 0; j < d; ++j) {
      u[j] = p1[j] * inv;
      mb[j] = sh[j] + u[j];
      const double centred = p2[j] - p1[j] * u[j];
      poor_shift |= p2[j] > 64.0 * centred && p2[j] > 0.0;
      shifted |= u[j] != 0.0;
    }
    if (poor_shift) {
      for (std::int64_t i = 0; i < nb; ++i)
        for (std::int64_t j = 0; j < d; ++j) buf[i * d + j] -= u[j];
      shifted = false;
    }
    cpu::syrk_acc(static_cast<int>(d), static_cast<int>(nb), buf.data(), acc.cross.data());
    if (shifted) cpu::syr(static_cast<int>(d), -static_cast<double>(nb), u.data(), acc.cross.data());
    const double f = detail::merge_mean(acc.weight, acc.mean, static_cast<double>(nb), mb, delta);
    if (f != 0.0) cpu::syr(static_cast<int>(d), f, delta.data(), acc.cross.data());
  }
}

// Values beyond ~1e154 from their mean have squares beyond the float64 range: the covariance is
// not representable, and scikit-learn raises ValueError. So does every rank here (the state is
// replicated, so every rank finds the same; the guard names the rank), leaving s as it was.
void check_in_range(const comm& c, const char* what, const state& s) {
  const std::int64_t d = s.n_features;
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j <= i; ++j) {
      if (std::isfinite(s.cross[i * d + j])) continue;
      const std::string cols = i == j ? "feature " + std::to_string(i)
                                      : "features " + std::to_string(j) + " and " + std::to_string(i);
      agree(c, std::make_exception_ptr(invalid_argument(
                   std::string(what) + ": the covariance of " + cols +
                   " overflows the float64 range (deviations from the mean beyond ~1e154 have "
                   "squares beyond ~1.8e308; scikit-learn raises here too). Scale the feature down "
                   "first, e.g. divide it by a power of ten")));
    }
}

// Collective: the centred cross-products of all ranks' rows, merged into s.
template <class T>
void merge_block(const comm& c, state& s, matrix_view<const T> X, const char* what) {
  detail::configure_blas_threads(c);
  local_cross loc;
  const bool on_device = X.device == device_kind::cuda;
#ifdef SPMDLEARN_WITH_CUDA
  cuda::local_cross dev;  // the device path keeps its cross-products on the GPU until merged
#endif
  std::exception_ptr err;
  try {
    if (on_device)
      detail::check_device_matrix(what, X);
    else
      detail::check_host_matrix(what, X);
    if (s.n_features > 0 && detail::declared_features(X) >= 0 && X.cols != s.n_features)
      throw invalid_argument("X has " + std::to_string(X.cols) +
                             " features, but the covariance was fitted with " +
                             std::to_string(s.n_features));
#ifdef SPMDLEARN_WITH_CUDA
    if (on_device) {
      dev = cuda::centered_cross<T>(X.data, X.rows, X.cols, X.stride());
      loc.weight = dev.weight;
      loc.mean = dev.mean;
    } else
#endif
      accumulate(what, X, loc);
  } catch (...) {
    err = std::current_exception();
  }
  const std::int64_t d = detail::agree_on_block(c, err, X);
  if (static_cast<std::int64_t>(loc.mean.size()) != d) {
    loc.mean.assign(d, 0.0);
    loc.cross.assign(d * d, 0.0);
  }
  detail::global_mean g =
      detail::merge_means_across(c, loc.weight, static_cast<std::int64_t>(loc.weight), loc.mean);
  if (g.rows == 0)
    throw invalid_argument(std::string(what) +
                           ": no rank holds any row (0 samples in total); at least one sample is "
                           "required");
  std::vector<double> block(d * d);
#ifdef SPMDLEARN_WITH_CUDA
  // When every rank's block is on a GPU, the d x d matrices are merged there (NCCL for MPI);
  // ranks that mix host and device data merge on the host. Decided together: one int allreduce.
  const bool all_device = c.allreduce_value<std::int32_t>(on_device ? 1 : 0, reduce_op::min) == 1;
  if (all_device) {
    if (dev.cross.size() != static_cast<std::size_t>(d * d))
      dev.cross = cuda::device_doubles(static_cast<std::size_t>(d * d));  // a rank without columns
    if (loc.weight > 0) cuda::add_outer(dev.cross, d, loc.weight, g.local_delta);
    c.device_allreduce(dev.cross.data(), static_cast<std::size_t>(d * d), comm_type::float64,
                       reduce_op::sum);
    block = dev.cross.to_host();
  } else {
    if (on_device) loc.cross = dev.cross.to_host();
#else
  {
#endif
    if (loc.weight > 0)
      cpu::syr(static_cast<int>(d), loc.weight, g.local_delta.data(), loc.cross.data());
    // Reduce the upper triangle only.
    std::vector<double> packed;
    packed.reserve(d * (d + 1) / 2);
    for (std::int64_t j = 0; j < d; ++j)
      for (std::int64_t i = 0; i <= j; ++i) packed.push_back(loc.cross[i + j * d]);
    c.allreduce<double>(packed, reduce_op::sum);
    std::size_t k = 0;
    for (std::int64_t j = 0; j < d; ++j)
      for (std::int64_t i = 0; i <= j; ++i, ++k) block[i + j * d] = block[j + i * d] = packed[k];
  }

  state next = s;
  if (next.n_features == 0) {
    next.n_features = d;
    next.mean.assign(d, 0.0);
    next.cross.assign(d * d, 0.0);
  }
  std::vector<double> delta(d);
  double w = static_cast<double>(next.n_rows);
  const double f = detail::merge_mean(w, next.mean, g.weight, g.mean, delta);
  next.n_rows += g.rows;
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j)
      next.cross[i * d + j] += block[i * d + j] + f * delta[i] * delta[j];
  check_in_range(c, what, next);
  s = std::move(next);
}


}  // namespace

template <class T>
void partial_fit(const comm& c, state& s, matrix_view<const T> X) {
  merge_block(c, s, X, "EmpiricalCovariance");
}

std::vector<double> pinvh(std::span<const double> a, std::int64_t d, dtype eps_dtype) {
  std::vector<double> v(a.begin(), a.end());
  std::vector<double> lam = cpu::eigh(v, static_cast<int>(d), true, "covariance matrix");
  double maxabs = 0.0;
  for (double l : lam) maxabs = std::max(maxabs, std::abs(l));
  const double eps = eps_dtype == dtype::float32 ? std::numeric_limits<float>::epsilon()
                                                 : std::numeric_limits<double>::epsilon();
  const double cutoff = maxabs * static_cast<double>(d) * eps;
  std::vector<double> out(d * d, 0.0);
  for (std::int64_t k = 0; k < d; ++k) {
    if (!(std::abs(lam[k]) > cutoff)) continue;
    const double inv = 1.0 / lam[k];
    const double* u = v.data() + k * d;  // column k of the eigenvectors
    for (std::int64_t i = 0; i < d; ++i) {
      const double ui = u[i] * inv;
      for (std::int64_t j = 0; j < d; ++j) out[i * d + j] += ui * u[j];
    }
  }
  return out;
}

result finalize(const state& s, const params& p, dtype precision_dtype) {
  result r;
  const std::int64_t d = s.n_features;
  r.n_features = d;
  const double n = static_cast<double>(s.n_rows);
  r.location = p.assume_centered ? std::vector<double>(d, 0.0) : s.mean;
  r.covariance.resize(d * d);
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      double v = s.cross[i * d + j];
      if (p.assume_centered) v += n * s.mean[i] * s.mean[j];
      r.covariance[i * d + j] = n > 0 ? v / n : 0.0;
    }
  if (p.store_precision) r.precision = pinvh(r.covariance, d, precision_dtype);
  return r;
}

template <class T>
result compute(const comm& c, matrix_view<const T> X, const params& p) {
  state s;
  partial_fit(c, s, X);
  return finalize(s, p, dtype_of<T>());
}

template <class T>
std::vector<double> mahalanobis(std::span<const double> location, std::span<const double> precision,
                                matrix_view<const T> X) {
  detail::check_host_matrix("EmpiricalCovariance.mahalanobis", X);
  const std::int64_t n = X.rows, d = X.cols;
  if (static_cast<std::int64_t>(location.size()) != d || static_cast<std::int64_t>(precision.size()) != d * d)
    throw invalid_argument("mahalanobis: X has " + std::to_string(d) +
                           " features, but the covariance was fitted with " +
                           std::to_string(location.size()));
  std::vector<double> out(n);
  const std::int64_t B = cov_chunk_rows(d);
  std::vector<double> buf(B * d), y(B * d);
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    for (std::int64_t i = 0; i < nb; ++i)
      for (std::int64_t j = 0; j < d; ++j)
        buf[i * d + j] = static_cast<double>(X(i0 + i, j)) - location[j];
    // Column-major view: buf is d x nb; y = P buf (P symmetric).
    const int di = static_cast<int>(d), ni = static_cast<int>(nb);
    const double one = 1.0, zero = 0.0;
    dgemm_("N", "N", &di, &ni, &di, &one, precision.data(), &di, buf.data(), &di, &zero, y.data(), &di);
    for (std::int64_t i = 0; i < nb; ++i) {
      double acc = 0.0;
      for (std::int64_t j = 0; j < d; ++j) acc += buf[i * d + j] * y[i * d + j];
      out[i0 + i] = acc;
    }
  }
  return out;
}

template <class T>
void mahalanobis(std::span<const double> location, std::span<const double> precision,
                 matrix_view<const T> X, vector_view<double> out) {
  detail::check_device_matrix("EmpiricalCovariance.mahalanobis", X);
  if (static_cast<std::int64_t>(location.size()) != X.cols ||
      static_cast<std::int64_t>(precision.size()) != X.cols * X.cols)
    throw invalid_argument("mahalanobis: X has " + std::to_string(X.cols) +
                           " features, but the covariance was fitted with " +
                           std::to_string(location.size()));
  if (out.size != X.rows || (X.rows > 0 && out.device != device_kind::cuda))
    throw invalid_argument("mahalanobis: the output must be a device array of X.rows doubles");
#ifdef SPMDLEARN_WITH_CUDA
  cuda::mahalanobis<T>(X.data, X.rows, X.cols, X.stride(),
                       std::vector<double>(location.begin(), location.end()),
                       std::vector<double>(precision.begin(), precision.end()), out.data);
#else
  require_cpu(X.device, "EmpiricalCovariance.mahalanobis");
#endif
}

template <class T>
double score(const comm& c, std::span<const double> location, std::span<const double> precision,
             matrix_view<const T> X) {
  state s;
  merge_block(c, s, X, "EmpiricalCovariance.score");
  const std::int64_t d = s.n_features;
  if (static_cast<std::int64_t>(location.size()) != d || static_cast<std::int64_t>(precision.size()) != d * d)
    throw invalid_argument("score: X has " + std::to_string(d) +
                           " features, but the covariance was fitted with " +
                           std::to_string(location.size()));
  const double n = static_cast<double>(s.n_rows);
  // Σ_ij test_cov_ij P_ij with test_cov = cross/n + (μ - loc)(μ - loc)ᵀ.
  double tr = 0.0;
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double tc = s.cross[i * d + j] / n + (s.mean[i] - location[i]) * (s.mean[j] - location[j]);
      tr += tc * precision[i * d + j];
    }
  std::vector<double> p(precision.begin(), precision.end());
  std::vector<double> lam;
  guarded(c, [&] { lam = cpu::eigh(p, static_cast<int>(d), true, "precision matrix"); });
  double logdet = 0.0;
  for (double l : lam) {
    if (!(l > 0.0)) {
      logdet = -std::numeric_limits<double>::infinity();
      break;
    }
    logdet += std::log(l);
  }
  return (-tr + logdet - static_cast<double>(d) * std::log(2.0 * M_PI)) / 2.0;
}

#define SPMDLEARN_INSTANTIATE(T)                                                               \
  template void partial_fit<T>(const comm&, state&, matrix_view<const T>);                     \
  template result compute<T>(const comm&, matrix_view<const T>, const params&);                \
  template std::vector<double> mahalanobis<T>(std::span<const double>, std::span<const double>, \
                                              matrix_view<const T>);                           \
  template void mahalanobis<T>(std::span<const double>, std::span<const double>,                \
                               matrix_view<const T>, vector_view<double>);                      \
  template double score<T>(const comm&, std::span<const double>, std::span<const double>,      \
                           matrix_view<const T>);
SPMDLEARN_INSTANTIATE(float)
SPMDLEARN_INSTANTIATE(double)
#undef SPMDLEARN_INSTANTIATE

}  // namespace spmdlearn::covariance
