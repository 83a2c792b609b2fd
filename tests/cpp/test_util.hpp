// Shared helpers of the C++ test suite: deterministic data, uneven row splits, independent
// long-double references, and runners that collect one result (or one caught error) per rank.
//
// References are written here from the definitions (two passes in long double), never taken from
// the library, so a test fails when the library's formulas or merges are wrong.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "spmdlearn/spmdlearn.hpp"

namespace tu {

using ld = long double;

// ---------------------------------------------------------------------------------------------
// Data.

struct gen_options {
  double loc0 = 3.0;        // column j has location loc0 + j * loc_step
  double loc_step = 1.0;
  double scale0 = 1.0;      // and spread scale0 + j * scale_step
  double scale_step = 0.25;
  bool correlated = true;   // mix the columns through a random unit lower-triangular matrix
};

// Row-major n x d float64 matrix, deterministic for a seed (same bits on every rank/process).
inline std::vector<double> make_data(std::int64_t n, std::int64_t d, std::uint64_t seed,
                                     const gen_options& o = {}) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unif(-0.5, 0.5);
  std::vector<double> a(d * d, 0.0);  // lower triangular, unit diagonal
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j <= i; ++j) a[i * d + j] = (i == j) ? 1.0 : (o.correlated ? unif(rng) : 0.0);
  std::vector<double> z(d), x(n * d);
  for (std::int64_t r = 0; r < n; ++r) {
    for (auto& v : z) v = normal(rng);
    for (std::int64_t j = 0; j < d; ++j) {
      double s = 0.0;
      for (std::int64_t k = 0; k <= j; ++k) s += a[j * d + k] * z[k];
      x[r * d + j] = (o.loc0 + j * o.loc_step) + (o.scale0 + j * o.scale_step) * s;
    }
  }
  return x;
}

// Relative tolerance against the long-double references: float input 1e-5, double 1e-12.
template <class T>
constexpr double tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Row offsets (size p + 1) of an uneven split of n rows over p ranks. `empty` (-1: none) gets no
// rows; the first non-empty rank of several gets only 3 rows (fewer rows than features); the rest
// share the remainder in proportions 1 : 2 : 3 ...
inline std::vector<std::int64_t> split_rows(std::int64_t n, int p, int empty = -1) {
  std::vector<int> holders;
  for (int r = 0; r < p; ++r)
    if (r != empty) holders.push_back(r);
  std::vector<std::int64_t> count(p, 0);
  if (holders.size() == 1) {
    count[holders[0]] = n;
  } else if (!holders.empty()) {
    const std::int64_t small = std::min<std::int64_t>(3, n);
    count[holders[0]] = small;
    std::int64_t rest = n - small, total_w = 0;
    for (std::size_t k = 1; k < holders.size(); ++k) total_w += static_cast<std::int64_t>(k);
    std::int64_t given = 0;
    for (std::size_t k = 1; k < holders.size(); ++k) {
      const std::int64_t c = (k + 1 == holders.size()) ? rest - given
                                                       : rest * static_cast<std::int64_t>(k) / total_w;
      count[holders[k]] = c;
      given += c;
    }
  }
  std::vector<std::int64_t> off(p + 1, 0);
  for (int r = 0; r < p; ++r) off[r + 1] = off[r] + count[r];
  return off;
}

// Rank r's block of a row-major matrix; an empty block has shape (0, d), or (0, 0) when `zero_zero`.
template <class T>
spmdlearn::matrix_view<const T> block(const std::vector<T>& x, std::int64_t d,
                                      const std::vector<std::int64_t>& off, int r,
                                      bool zero_zero = false) {
  const std::int64_t rows = off[r + 1] - off[r];
  if (rows == 0 && zero_zero) return {nullptr, 0, 0};
  return {x.data() + off[r] * d, rows, d};
}

// Concatenated rows [off[r], off[r+1]) of a vector (a weight vector's block).
template <class T>
spmdlearn::vector_view<const T> vblock(const std::vector<T>& w, const std::vector<std::int64_t>& off,
                                       int r) {
  return {w.data() + off[r], off[r + 1] - off[r]};
}

// ---------------------------------------------------------------------------------------------
// References (long double, two passes).

struct ref_stats {
  std::vector<double> min, max, sum, mean, variance, standard_deviation, sum_squares,
      sum_squares_centered, second_order_raw_moment, variation;
  std::vector<double> var0;  // ddof = 0
};

inline ref_stats reference_stats(const std::vector<double>& x, std::int64_t n, std::int64_t d) {
  ref_stats r;
  for (std::int64_t j = 0; j < d; ++j) {
    ld s = 0, ss = 0;
    double mn = INFINITY, mx = -INFINITY;
    for (std::int64_t i = 0; i < n; ++i) {
      const double v = x[i * d + j];
      s += v;
      ss += static_cast<ld>(v) * v;
      mn = std::min(mn, v);
      mx = std::max(mx, v);
    }
    const ld mean = s / n;
    ld c = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const ld t = x[i * d + j] - mean;
      c += t * t;
    }
    const ld var = c / (n - 1);
    r.min.push_back(mn);
    r.max.push_back(mx);
    r.sum.push_back(static_cast<double>(s));
    r.mean.push_back(static_cast<double>(mean));
    r.variance.push_back(static_cast<double>(var));
    r.standard_deviation.push_back(static_cast<double>(std::sqrt(var)));
    r.sum_squares.push_back(static_cast<double>(ss));
    r.sum_squares_centered.push_back(static_cast<double>(c));
    r.second_order_raw_moment.push_back(static_cast<double>(ss / n));
    r.variation.push_back(static_cast<double>(std::sqrt(var) / mean));
    r.var0.push_back(static_cast<double>(c / n));
  }
  return r;
}

// Biased covariance (/n) about the mean (or about 0 when assume_centered), row-major d x d.
struct ref_cov {
  std::vector<double> location, covariance;
};
inline ref_cov reference_cov(const std::vector<double>& x, std::int64_t n, std::int64_t d,
                             bool assume_centered = false) {
  std::vector<ld> mu(d, 0);
  if (!assume_centered) {
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < d; ++j) mu[j] += x[i * d + j];
    for (auto& m : mu) m /= n;
  }
  ref_cov r;
  r.covariance.resize(d * d);
  for (std::int64_t a = 0; a < d; ++a)
    for (std::int64_t b = 0; b < d; ++b) {
      ld s = 0;
      for (std::int64_t i = 0; i < n; ++i) s += (x[i * d + a] - mu[a]) * (x[i * d + b] - mu[b]);
      r.covariance[a * d + b] = static_cast<double>(s / n);
    }
  for (auto m : mu) r.location.push_back(static_cast<double>(m));
  return r;
}

// Row-major products / log-determinant (Gaussian elimination with partial pivoting) in long double.
inline std::vector<ld> matmul(std::span<const double> a, std::span<const double> b, std::int64_t d) {
  std::vector<ld> c(d * d, 0);
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t k = 0; k < d; ++k)
      for (std::int64_t j = 0; j < d; ++j) c[i * d + j] += static_cast<ld>(a[i * d + k]) * b[k * d + j];
  return c;
}
inline ld logdet(std::span<const double> a_in, std::int64_t d, int* sign_out = nullptr) {
  std::vector<ld> a(a_in.begin(), a_in.end());
  int sign = 1;
  ld acc = 0;
  for (std::int64_t k = 0; k < d; ++k) {
    std::int64_t p = k;
    for (std::int64_t i = k + 1; i < d; ++i)
      if (std::fabs(a[i * d + k]) > std::fabs(a[p * d + k])) p = i;
    if (a[p * d + k] == 0) {
      if (sign_out) *sign_out = 0;
      return -INFINITY;
    }
    if (p != k) {
      for (std::int64_t j = 0; j < d; ++j) std::swap(a[k * d + j], a[p * d + j]);
      sign = -sign;
    }
    for (std::int64_t i = k + 1; i < d; ++i) {
      const ld f = a[i * d + k] / a[k * d + k];
      for (std::int64_t j = k; j < d; ++j) a[i * d + j] -= f * a[k * d + j];
    }
    if (a[k * d + k] < 0) sign = -sign;
    acc += std::log(std::fabs(a[k * d + k]));
  }
  if (sign_out) *sign_out = sign;
  return acc;
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

// |got - want| <= rtol * |want| + atol, elementwise; reports the first offender.
inline ::testing::AssertionResult near_rel(const std::vector<double>& got,
                                           const std::vector<double>& want, double rtol,
                                           double atol = 0.0) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    if (!(err <= rtol * std::fabs(want[i]) + atol))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << ", want " << want[i] << " (rel err "
             << err / std::fabs(want[i]) << " > " << rtol << ")";
  }
  return ::testing::AssertionSuccess();
}

// Symmetric d x d matrices: |got_ij - want_ij| <= rtol * sqrt(want_ii want_jj) (+ atol).
inline ::testing::AssertionResult near_cov(const std::vector<double>& got,
                                           const std::vector<double>& want, std::int64_t d,
                                           double rtol, double atol = 0.0) {
  if (static_cast<std::int64_t>(got.size()) != d * d || want.size() != got.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " / " << want.size();
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double scale = std::sqrt(std::fabs(want[i * d + i] * want[j * d + j]));
      const double err = std::fabs(got[i * d + j] - want[i * d + j]);
      if (!(err <= rtol * scale + atol))
        return ::testing::AssertionFailure()
               << "(" << i << "," << j << "): got " << got[i * d + j] << ", want "
               << want[i * d + j] << " (err " << err << " > " << rtol << " * " << scale << ")";
    }
  return ::testing::AssertionSuccess();
}

inline bool bitwise_equal(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// ---------------------------------------------------------------------------------------------
// Running a collective on thread ranks.

// fn(comm) on p thread ranks; returns each rank's result, indexed by rank. Test bodies that run
// on threads use EXPECT_* only (an ASSERT_* returning early would leave the others in a barrier).
template <class R>
std::vector<R> on_threads(int p, const std::function<R(const spmdlearn::comm&)>& fn) {
  std::vector<R> out(p);
  spmdlearn::run_threads(p, [&](const spmdlearn::comm& c) { out[c.rank()] = fn(c); });
  return out;
}

// What one rank caught.
struct caught {
  bool thrown = false;
  bool is_spmdlearn_error = false;
  spmdlearn::error_kind kind = spmdlearn::error_kind::none;
  int rank = -1;  // error::rank()
  std::string what;
};

inline caught catch_error(const std::function<void()>& fn) {
  caught c;
  try {
    fn();
  } catch (const spmdlearn::error& e) {
    c.thrown = true;
    c.is_spmdlearn_error = true;
    c.kind = e.kind();
    c.rank = e.rank();
    c.what = e.what();
  } catch (const std::exception& e) {
    c.thrown = true;
    c.what = e.what();
  }
  return c;
}

inline std::vector<caught> catch_on_threads(int p, const std::function<void(const spmdlearn::comm&)>& fn) {
  return on_threads<caught>(p, [&](const spmdlearn::comm& c) { return catch_error([&] { fn(c); }); });
}

// Every rank threw a spmdlearn error of `kind`, with the same message; when failing_rank >= 0
// the message starts with "rank <failing_rank>:" and error::rank() names it; every message holds
// `contains`.
inline ::testing::AssertionResult all_threw(const std::vector<caught>& v, spmdlearn::error_kind kind,
                                            int failing_rank, const std::string& contains = "") {
  for (std::size_t r = 0; r < v.size(); ++r) {
    const caught& c = v[r];
    if (!c.thrown) return ::testing::AssertionFailure() << "rank " << r << " did not throw";
    if (!c.is_spmdlearn_error)
      return ::testing::AssertionFailure() << "rank " << r << " threw a non-spmdlearn error: " << c.what;
    if (c.kind != kind)
      return ::testing::AssertionFailure() << "rank " << r << " threw kind " << int(c.kind)
                                           << " instead of " << int(kind) << ": " << c.what;
    if (c.what != v[0].what)
      return ::testing::AssertionFailure() << "rank " << r << " message differs from rank 0's:\n  "
                                           << c.what << "\n  " << v[0].what;
    if (failing_rank >= 0) {
      const std::string prefix = "rank " + std::to_string(failing_rank) + ":";
      if (!starts_with(c.what, prefix))
        return ::testing::AssertionFailure() << "rank " << r << ": message does not start with '"
                                             << prefix << "': " << c.what;
      if (c.rank != failing_rank)
        return ::testing::AssertionFailure() << "rank " << r << ": error::rank() is " << c.rank
                                             << ", want " << failing_rank;
    }
    if (!contains.empty() && c.what.find(contains) == std::string::npos)
      return ::testing::AssertionFailure() << "rank " << r << ": message lacks '" << contains
                                           << "': " << c.what;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace tu
