// BasicStatistics: local partial (one streaming pass) -> merge over ranks -> finalize.
#include "spmdlearn/basic_statistics.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>

#include "core/merge.hpp"
#include "core/threads.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"

namespace spmdlearn::basic_statistics {

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

struct local_moments {
  double weight = 0.0;
  std::int64_t rows = 0;
  std::vector<double> mean, m2, min, max;
  void reset(std::int64_t d) {
    weight = 0.0;
    rows = 0;
    mean.assign(d, 0.0);
    m2.assign(d, 0.0);
    min.assign(d, inf);
    max.assign(d, -inf);
  }
};

// One pass over X in cache-sized chunks. Inside a chunk: sums/min/max from memory, then the
// centred squares from cache; the chunk is Chan-merged into the running moments.
template <class T, bool Weighted>
void accumulate(matrix_view<const T> X, const T* __restrict w, local_moments& acc) {
  const std::int64_t n = X.rows, d = X.cols;
  const std::int64_t B = detail::chunk_rows(d, sizeof(T));
  std::vector<double> s(d), mn(d), mx(d), mb(d), m2b(d), delta(d);
  double* __restrict sp = s.data();
  double* __restrict mnp = mn.data();
  double* __restrict mxp = mx.data();
  double* __restrict mbp = mb.data();
  double* __restrict m2p = m2b.data();
  acc.rows += n;
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    std::fill(s.begin(), s.end(), 0.0);
    std::fill(mn.begin(), mn.end(), inf);
    std::fill(mx.begin(), mx.end(), -inf);
    double wsum = 0.0;
    for (std::int64_t i = i0; i < i0 + nb; ++i) {
      const T* __restrict x = X.row(i);
      const double wi = Weighted ? static_cast<double>(w[i]) : 1.0;
      if (Weighted && wi == 0.0) {
        // Not counted, but still input: NaN/inf here is rejected as anywhere else (it would
        // otherwise turn the centred pass's 0 * NaN into a NaN variance).
        for (std::int64_t j = 0; j < d; ++j)
          if (!std::isfinite(x[j])) detail::throw_if_nonfinite("X", X, i, 1);
        continue;
      }
      wsum += wi;
      for (std::int64_t j = 0; j < d; ++j) {
        const double v = static_cast<double>(x[j]);
        sp[j] += Weighted ? wi * v : v;
        mnp[j] = v < mnp[j] ? v : mnp[j];
        mxp[j] = v > mxp[j] ? v : mxp[j];
      }
    }
    for (std::int64_t j = 0; j < d; ++j)
      if (!std::isfinite(sp[j])) {
        detail::throw_if_nonfinite("X", X, i0, nb);
        break;
      }
    if (wsum == 0.0) continue;
    const double inv = 1.0 / wsum;
    for (std::int64_t j = 0; j < d; ++j) {
      mbp[j] = sp[j] * inv;
      m2p[j] = 0.0;
    }
    for (std::int64_t i = i0; i < i0 + nb; ++i) {
      const T* __restrict x = X.row(i);
      const double wi = Weighted ? static_cast<double>(w[i]) : 1.0;
      for (std::int64_t j = 0; j < d; ++j) {
        const double t = static_cast<double>(x[j]) - mbp[j];
        m2p[j] += Weighted ? wi * t * t : t * t;
      }
    }
    const double f = detail::merge_mean(acc.weight, acc.mean, wsum, mb, delta);
    for (std::int64_t j = 0; j < d; ++j) {
      acc.m2[j] += m2p[j] + f * delta[j] * delta[j];
      acc.min[j] = std::min(acc.min[j], mnp[j]);
      acc.max[j] = std::max(acc.max[j], mxp[j]);
    }
  }
}

}  // namespace

const std::vector<std::string_view>& option_names() {
  static const std::vector<std::string_view> names{
      "min", "max", "sum", "mean", "variance", "standard_deviation", "sum_squares",
      "sum_squares_centered", "second_order_raw_moment", "variation"};
  return names;
}

unsigned parse_option(std::string_view name) {
  if (name == "all") return all;
  const auto& names = option_names();
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return 1u << i;
  std::string valid;
  for (auto n : names) valid += std::string(n) + ", ";
  throw invalid_argument("unknown result option '" + std::string(name) + "'; valid: " + valid +
                         "all");
}

template <class T>
void partial_fit(const comm& c, state& s, matrix_view<const T> X,
                 std::optional<vector_view<const T>> sample_weight, const char* caller) {
  detail::configure_blas_threads(c);
  local_moments loc;
  std::exception_ptr err;
  try {
    detail::check_host_matrix(caller, X);
    detail::check_sample_weight(caller, X.rows, sample_weight);
    if (s.n_features > 0 && detail::declared_features(X) >= 0 && X.cols != s.n_features)
      throw invalid_argument("X has " + std::to_string(X.cols) +
                             " features, but the statistics were fitted with " +
                             std::to_string(s.n_features));
    loc.reset(X.cols);
    if (sample_weight)
      accumulate<T, true>(X, sample_weight->data, loc);
    else
      accumulate<T, false>(X, nullptr, loc);
  } catch (...) {
    err = std::current_exception();
  }
  const auto agreed =
      agree(c, err,
            {{"n_features", detail::declared_features(X)},
             {"dtype", static_cast<std::int64_t>(dtype_of<T>()), dtype_labels}});
  const std::int64_t d = agreed[0];
  if (d < 0 || static_cast<std::int64_t>(loc.mean.size()) != d) loc.reset(std::max<std::int64_t>(d, 0));

  detail::global_mean g = detail::merge_means_across(c, loc.weight, loc.rows, loc.mean);
  if (g.rows == 0)
    throw invalid_argument(std::string(caller) +
                           ": no rank holds any row (0 samples in total); at least one sample is "
                           "required");
  if (g.weight == 0.0)
    throw invalid_argument(std::string(caller) + ": sample_weight sums to zero over all ranks");

  // Centred sums about the global mean: M = Σ_r (M_r + W_r δ_r²); min and -max in one reduction.
  std::vector<double> m2(d), ext(2 * d);
  for (std::int64_t j = 0; j < d; ++j) {
    m2[j] = loc.m2[j] + loc.weight * g.local_delta[j] * g.local_delta[j];
    ext[j] = loc.min[j];
    ext[d + j] = -loc.max[j];
  }
  c.allreduce<double>(m2, reduce_op::sum);
  c.allreduce<double>(ext, reduce_op::min);

  if (s.n_features == 0) {
    s.n_features = d;
    s.mean.assign(d, 0.0);
    s.m2.assign(d, 0.0);
    s.min.assign(d, inf);
    s.max.assign(d, -inf);
  }
  std::vector<double> delta(d);
  const double f = detail::merge_mean(s.weight_sum, s.mean, g.weight, g.mean, delta);
  s.n_rows += g.rows;
  for (std::int64_t j = 0; j < d; ++j) {
    s.m2[j] += m2[j] + f * delta[j] * delta[j];
    s.min[j] = std::min(s.min[j], ext[j]);
    s.max[j] = std::max(s.max[j], -ext[d + j]);
  }
}

result finalize(const state& s, unsigned options) {
  result r;
  r.options = options;
  r.n_features = s.n_features;
  const std::int64_t d = s.n_features;
  const double W = s.weight_sum;
  auto want = [&](unsigned o) { return (options & o) != 0; };
  auto make = [&](unsigned o, std::vector<double>& v, auto f) {
    if (!want(o)) return;
    v.resize(d);
    for (std::int64_t j = 0; j < d; ++j) v[j] = f(j);
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto var = [&](std::int64_t j) { return W > 1.0 ? s.m2[j] / (W - 1.0) : nan; };
  make(min, r.min, [&](std::int64_t j) { return s.min[j]; });
  make(max, r.max, [&](std::int64_t j) { return s.max[j]; });
  make(sum, r.sum, [&](std::int64_t j) { return s.mean[j] * W; });
  make(mean, r.mean, [&](std::int64_t j) { return s.mean[j]; });
  make(variance, r.variance, var);
  make(standard_deviation, r.standard_deviation, [&](std::int64_t j) { return std::sqrt(var(j)); });
  make(sum_squares, r.sum_squares,
       [&](std::int64_t j) { return s.m2[j] + W * s.mean[j] * s.mean[j]; });
  make(sum_squares_centered, r.sum_squares_centered, [&](std::int64_t j) { return s.m2[j]; });
  make(second_order_raw_moment, r.second_order_raw_moment,
       [&](std::int64_t j) { return s.m2[j] / W + s.mean[j] * s.mean[j]; });
  make(variation, r.variation, [&](std::int64_t j) { return std::sqrt(var(j)) / s.mean[j]; });
  return r;
}

template <class T>
result compute(const comm& c, matrix_view<const T> X,
               std::optional<vector_view<const T>> sample_weight, unsigned options) {
  state s;
  partial_fit(c, s, X, sample_weight);
  return finalize(s, options);
}

#define SPMDLEARN_INSTANTIATE(T)                                                              \
  template void partial_fit<T>(const comm&, state&, matrix_view<const T>,                     \
                               std::optional<vector_view<const T>>, const char*);             \
  template result compute<T>(const comm&, matrix_view<const T>,                               \
                             std::optional<vector_view<const T>>, unsigned);
SPMDLEARN_INSTANTIATE(float)
SPMDLEARN_INSTANTIATE(double)
#undef SPMDLEARN_INSTANTIATE

}  // namespace spmdlearn::basic_statistics
