// BasicStatistics: local partial (one streaming pass) -> merge over ranks -> finalize.
#include "spmdlearn/basic_statistics.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>
#include <thread>

#include "backend/cuda/moments_cuda.hpp"
#include "basic_statistics/moments_kernel.hpp"
#include "core/merge.hpp"
#include "core/threads.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"

namespace spmdlearn::basic_statistics {

namespace {

namespace bs = spmdlearn::basic_statistics::kernel;

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

// A chunk of finite values whose sums overflow (magnitudes beyond ~1e304): its mean, min, max
// and centred squares with every value scaled by 2^-64 first (exact), so that the mean, which is
// in range, is not lost to an inf that a later merge would turn into NaN.
template <class T>
void huge_chunk(const T* x, std::int64_t stride, std::int64_t nb, std::int64_t d, const T* w, double wsum,
                double* mean, double* m2, double* lo, double* hi) {
  constexpr int k = 64;
  for (std::int64_t j = 0; j < d; ++j) {
    double s = 0.0, l = inf, h = -inf;
    for (std::int64_t i = 0; i < nb; ++i) {
      const double v = static_cast<double>(x[i * stride + j]), wi = w ? static_cast<double>(w[i]) : 1.0;
      s += wi * std::ldexp(v, -k);
      if (wi > 0.0) {
        l = std::min(l, v);
        h = std::max(h, v);
      }
    }
    const double m = s / wsum;
    double q = 0.0;
    for (std::int64_t i = 0; i < nb; ++i) {
      const double u = std::ldexp(static_cast<double>(x[i * stride + j]), -k) - m;
      q += (w ? static_cast<double>(w[i]) : 1.0) * u * u;
    }
    mean[j] = std::ldexp(m, k);
    m2[j] = std::ldexp(q, 2 * k);
    lo[j] = l;
    hi[j] = h;
  }
}

// One pass over X in cache-sized chunks (see moments_kernel.hpp). Each chunk's moments are taken
// about a shift -- the running mean, or the block's first row before there is one -- and
// Chan-merged into the running moments. If the shift was poor for some column (the shifted sum of
// squares much larger than the centred one, so cancellation could cost digits), the chunk is
// recomputed about its own mean while it is still in cache: exact for any data, one memory pass
// for ordinary data.
template <class T>
void accumulate(matrix_view<const T> X, const T* w, local_moments& acc) {
  const std::int64_t n = X.rows, d = X.cols;
  if (n == 0) return;
  const std::int64_t B = detail::chunk_rows(d, sizeof(T));
  std::vector<double> shift(d), s1(d), s2(d), lo(d), hi(d), mb(d), m2b(d), delta(d);
  for (std::int64_t j = 0; j < d; ++j) shift[j] = static_cast<double>(X(0, j));
  acc.rows += n;
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    const T* xc = X.row(i0);
    const T* wc = w ? w + i0 : nullptr;
    if (acc.weight > 0.0) shift = acc.mean;
    for (std::int64_t j = 0; j < d; ++j)
      if (!std::isfinite(shift[j])) shift[j] = 0.0;  // a non-finite first row is reported below
    bs::chunk_moments(xc, X.stride(), nb, d, wc, shift.data(), s1.data(), s2.data(), lo.data(),
                      hi.data());
    bool huge = false;  // finite data whose sums overflow: not an input error
    for (std::int64_t j = 0; j < d; ++j)
      if (!std::isfinite(s1[j]) || !std::isfinite(s2[j])) {
        detail::throw_if_nonfinite("X", X, i0, nb);
        for (std::int64_t k = j; k < d; ++k) huge |= !std::isfinite(s1[k]);
        break;
      }
    double wsum = static_cast<double>(nb);
    if (w) {
      wsum = 0.0;
      for (std::int64_t i = 0; i < nb; ++i) wsum += static_cast<double>(wc[i]);
      if (wsum == 0.0) continue;  // rows that count zero times (already checked for NaN)
    }
    bool poor_shift = false;
    if (huge) {
      huge_chunk(xc, X.stride(), nb, d, wc, wsum, mb.data(), m2b.data(), lo.data(), hi.data());
    } else {
      for (std::int64_t j = 0; j < d; ++j) {
        mb[j] = shift[j] + s1[j] / wsum;
        m2b[j] = bs::centred_squares(s1[j], s2[j], wsum);
        // (squares that overflowed about the shift may not about the mean)
        poor_shift |= (s2[j] > 64.0 * m2b[j] && s2[j] > 0.0) || !std::isfinite(s2[j]);
      }
    }
    if (poor_shift) {
      std::vector<double> l2(d), h2(d);
      bs::chunk_moments(xc, X.stride(), nb, d, wc, mb.data(), s1.data(), s2.data(), l2.data(),
                        h2.data());
      for (std::int64_t j = 0; j < d; ++j) {
        m2b[j] = bs::centred_squares(s1[j], s2[j], wsum);
        mb[j] += s1[j] / wsum;
      }
    }
    const double f = detail::merge_mean(acc.weight, acc.mean, wsum, mb, delta);
    for (std::int64_t j = 0; j < d; ++j) {
      acc.m2[j] += m2b[j] + f * delta[j] * delta[j];
      acc.min[j] = std::min(acc.min[j], lo[j]);
      acc.max[j] = std::max(acc.max[j], hi[j]);
    }
  }
}

// b's rows join a (Chan), in this order: the result depends only on the order of the parts.
void merge_into(local_moments& a, const local_moments& b) {
  const std::size_t d = a.mean.size();
  std::vector<double> delta(d);
  a.rows += b.rows;
  const double f = detail::merge_mean(a.weight, a.mean, b.weight, b.mean, delta);
  for (std::size_t j = 0; j < d; ++j) {
    a.m2[j] += b.m2[j] + f * delta[j] * delta[j];
    a.min[j] = std::min(a.min[j], b.min[j]);
    a.max[j] = std::max(a.max[j], b.max[j]);
  }
}

// The local pass on `nt` threads: contiguous row ranges, one partial each, merged in range order
// (so a given thread count always gives the same bits). Small blocks stay on one thread.
template <class T>
void accumulate_threaded(matrix_view<const T> X, const T* w, local_moments& acc, int nt) {
  constexpr std::int64_t min_rows_per_thread = 1 << 15;
  nt = static_cast<int>(std::min<std::int64_t>(nt, std::max<std::int64_t>(1, X.rows / min_rows_per_thread)));
  if (nt <= 1) {
    accumulate<T>(X, w, acc);
    return;
  }
  std::vector<local_moments> part(nt);
  std::vector<std::exception_ptr> errors(nt);
  auto work = [&](int t) {
    const std::int64_t lo = X.rows * t / nt, hi = X.rows * (t + 1) / nt;
    part[t].reset(X.cols);
    try {
      matrix_view<const T> sub(X.row(lo), hi - lo, X.cols, X.stride(), X.device);
      accumulate<T>(sub, w ? w + lo : nullptr, part[t]);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  for (int t = 0; t < nt; ++t) {
    // A NaN in a later range: report it with its row in the whole block, as one thread would.
    if (errors[t]) {
      try {
        std::rethrow_exception(errors[t]);
      } catch (const invalid_argument&) {
        detail::throw_if_nonfinite("X", X, X.rows * t / nt, X.rows * (t + 1) / nt - X.rows * t / nt);
        throw;
      }
    }
  }
  for (int t = 0; t < nt; ++t) merge_into(acc, part[t]);
}

#ifdef SPMDLEARN_WITH_CUDA
// The same moments from a device matrix (cuda::column_moments_exact: one GPU pass, a second only
// when the first row was a poor shift).
template <class T>
void accumulate_cuda(matrix_view<const T> X, const T* w, local_moments& acc) {
  acc.rows += X.rows;
  if (X.rows == 0) return;
  cuda::exact_moments m = cuda::column_moments_exact(X.data, X.rows, X.cols, X.stride(), w);
  if (m.weight == 0.0) return;
  acc.weight = m.weight;
  acc.mean = m.mean;
  acc.m2 = m.m2;
  acc.min = m.lo;
  acc.max = m.hi;
}
#endif

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
    const bool on_device = X.device == device_kind::cuda;
    if (on_device) {
      detail::check_device_matrix(caller, X);
      if (sample_weight && sample_weight->device != device_kind::cuda)
        throw invalid_argument(std::string(caller) +
                               ": X is on a CUDA device but sample_weight is not; pass both on "
                               "the same device");
      if (sample_weight && sample_weight->size != X.rows)
        throw invalid_argument(std::string(caller) + ": sample_weight has " +
                               std::to_string(sample_weight->size) + " entries but X has " +
                               std::to_string(X.rows) + " rows");
    } else {
      detail::check_host_matrix(caller, X);
      detail::check_sample_weight(caller, X.rows, sample_weight);
    }
    if (s.n_features > 0 && detail::declared_features(X) >= 0 && X.cols != s.n_features)
      throw invalid_argument("X has " + std::to_string(X.cols) +
                             " features, but the statistics were fitted with " +
                             std::to_string(s.n_features));
    loc.reset(X.cols);
    const T* w = sample_weight ? sample_weight->data : nullptr;
#ifdef SPMDLEARN_WITH_CUDA
    if (on_device)
      accumulate_cuda<T>(X, w, loc);
    else
#endif
      accumulate_threaded<T>(X, w, loc, detail::threads_per_rank(c));
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
