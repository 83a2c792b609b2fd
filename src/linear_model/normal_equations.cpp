// LinearRegression / Ridge: local weighted centred cross-products of [X | Y] -> merge -> solve.
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>

#include "backend/cpu/lapack.hpp"
#include "backend/dense.hpp"
#include "backend/cuda/cross_cuda.hpp"
#include "core/cross_merge.hpp"
#include "core/merge.hpp"
#include "core/threads.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"
#include "spmdlearn/linear_model.hpp"

namespace spmdlearn::linear_model {

namespace {

template <class T>
void check_inputs(const char* what, matrix_view<const T> X, matrix_view<const T> Y,
                  const std::optional<vector_view<const T>>& w) {
  if (Y.rows != X.rows)
    throw invalid_argument(std::string(what) + ": y has " + std::to_string(Y.rows) +
                           " samples but X has " + std::to_string(X.rows) +
                           " (inconsistent numbers of samples)");
  if (X.device == device_kind::cuda) {
    detail::check_device_matrix(what, X);
    if (Y.rows > 0 && Y.device != device_kind::cuda)
      throw invalid_argument(std::string(what) + ": X is on a CUDA device, so y must be too");
    if (w && w->size > 0 && w->device != device_kind::cuda)
      throw invalid_argument(std::string(what) + ": X is on a CUDA device, so sample_weight must be too");
    if (w && w->size != X.rows)
      throw invalid_argument(std::string(what) + ": sample_weight has " + std::to_string(w->size) +
                             " entries but X has " + std::to_string(X.rows) + " rows");
    return;
  }
  detail::check_host_matrix(what, X);
  require_cpu(Y.device, what);
  detail::check_sample_weight(what, X.rows, w);
}

// z_i = sqrt(w_i) ([x_i | y_i] - shift), sum += Σ w (z - shift), W += Σ w for nb rows. The hot
// loop of the CPU normal equations: target_clones compiles AVX-512, AVX2 and baseline versions
// (the library is built for the baseline ISA) and picks one at load time.
template <class T>
[[gnu::always_inline]] inline void shift_scale_rows_impl(const T* X, std::int64_t sx, const T* Y,
                                                         std::int64_t sy, const T* w, std::int64_t nb,
                                                         std::int64_t d, std::int64_t t,
                                                         const double* __restrict shift,
                                                         double* __restrict z, double* __restrict sum,
                                                         double* W) {
  const std::int64_t p = d + t;
  double wsum = 0.0;
  for (std::int64_t i = 0; i < nb; ++i) {
    const T* __restrict x = X + i * sx;
    const T* __restrict y = Y + i * sy;
    double* __restrict r = z + i * p;
    if (w) {
      const double wi = static_cast<double>(w[i]), s = std::sqrt(wi);
      wsum += wi;
      for (std::int64_t j = 0; j < d; ++j) {
        const double u = static_cast<double>(x[j]) - shift[j];
        sum[j] += wi * u;
        r[j] = s * u;
      }
      for (std::int64_t k = 0; k < t; ++k) {
        const double u = static_cast<double>(y[k]) - shift[d + k];
        sum[d + k] += wi * u;
        r[d + k] = s * u;
      }
    } else {
      for (std::int64_t j = 0; j < d; ++j) {
        const double u = static_cast<double>(x[j]) - shift[j];
        sum[j] += u;
        r[j] = u;
      }
      for (std::int64_t k = 0; k < t; ++k) {
        const double u = static_cast<double>(y[k]) - shift[d + k];
        sum[d + k] += u;
        r[d + k] = u;
      }
    }
  }
  *W += w ? wsum : static_cast<double>(nb);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void shift_scale_rows(
    const double* X, std::int64_t sx, const double* Y, std::int64_t sy, const double* w,
    std::int64_t nb, std::int64_t d, std::int64_t t, const double* shift, double* z, double* sum,
    double* W) {
  shift_scale_rows_impl(X, sx, Y, sy, w, nb, d, t, shift, z, sum, W);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void shift_scale_rows(
    const float* X, std::int64_t sx, const float* Y, std::int64_t sy, const float* w,
    std::int64_t nb, std::int64_t d, std::int64_t t, const double* shift, double* z, double* sum,
    double* W) {
  shift_scale_rows_impl(X, sx, Y, sy, w, nb, d, t, shift, z, sum, W);
}

template <class T>
detail::cross_moments local_moments(const char* what, matrix_view<const T> X, matrix_view<const T> Y,
                                    const std::optional<vector_view<const T>>& w) {
  const std::int64_t d = X.cols, t = Y.cols, p = d + t;
  detail::cross_moments acc;
  acc.reset(p);
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda) {
    auto m = cuda::weighted_cross<T>(X.data, X.rows, d, X.stride(), Y.data, t, Y.stride(),
                                     w ? w->data : nullptr);
    acc.weight = m.weight;
    acc.rows = X.rows;
    acc.mean = std::move(m.mean);
    acc.cross = std::move(m.cross);
    return acc;
  }
#endif
  std::vector<double> first(p, 0.0);
  if (X.rows > 0) {
    for (std::int64_t j = 0; j < d; ++j) first[j] = static_cast<double>(X(0, j));
    for (std::int64_t k = 0; k < t; ++k) first[d + k] = static_cast<double>(Y(0, k));
  }
  const T* wp = w ? w->data : nullptr;
  const std::int64_t bad = detail::accumulate_rows(
      acc, X.rows, p, std::move(first),
      [&](std::int64_t i0, std::int64_t nb, const double* shift, double* z, double* sum, double& W) {
        shift_scale_rows(X.row(i0), X.stride(), Y.row(i0), Y.stride(), wp ? wp + i0 : nullptr, nb, d,
                         t, shift, z, sum, &W);
      });
  if (bad >= 0) {
    const std::int64_t nb = std::min(detail::cross_chunk_rows(p), X.rows - bad);
    detail::throw_if_nonfinite("X", X, bad, nb);
    detail::throw_if_nonfinite("y", Y, bad, nb);
    throw invalid_argument(std::string(what) + ": the weighted sums overflow (values too large)");
  }
  return acc;
}


// A state's exponents: none (a state saved before they existed: all 0) or one per column.
std::vector<int> exponents_of(const normal_state& s) {
  const std::size_t p = s.mean.size();
  if (s.exponent.empty()) return std::vector<int>(p, 0);
  if (s.exponent.size() != p)
    throw invalid_argument("the normal-equations state has " + std::to_string(s.exponent.size()) +
                           " exponents for " + std::to_string(p) + " columns");
  return s.exponent;
}

// Solves A x = b for the nrhs columns of b (d x nrhs, column-major) by Cholesky; false when A is
// not numerically positive definite.
bool cholesky_solve(std::vector<double> A, int d, std::vector<double>& b, int nrhs) {
  int info = 0;
  dpotrf_("U", &d, A.data(), &d, &info);
  if (info != 0) return false;
  dpotrs_("U", &d, &nrhs, A.data(), &d, b.data(), &d, &info);
  return info == 0;
}

// Whether A (d x d symmetric, column-major) certainly has full numerical rank for the cutoff
// λ_min > factor λ_max, without its spectrum (an eigen-decomposition costs ~1 ms at d = 100 with a
// reference LAPACK, as much as the whole GPU pass over 2M rows): with A = UᵀU (Cholesky),
// λ_min(A) >= 1 / trace(A⁻¹) = 1 / ‖U⁻¹‖_F² and λ_max(A) <= trace(A), so the rank is full when
// ‖U⁻¹‖_F² trace(A) factor < 1; a factor 8 leaves room for the rounding of U⁻¹. Matrices that
// fail the test (near the cutoff, or rank-deficient) take the eigen-decomposition as before.
// When it returns true, `factor_out` holds U (upper triangle), for the solve; else it is untouched.
bool certainly_full_rank(std::vector<double> A, int d, double factor, std::vector<double>& factor_out) {
  if (d == 0) return true;
  double trace = 0.0;
  for (int i = 0; i < d; ++i) trace += A[static_cast<std::size_t>(i) * d + i];
  int info = 0;
  dpotrf_("U", &d, A.data(), &d, &info);
  if (info != 0) return false;
  std::vector<double> U = A;
  dtrtri_("U", "N", &d, A.data(), &d, &info);
  if (info != 0) return false;
  double inv = 0.0;  // ‖U⁻¹‖_F² (the upper triangle)
  for (int j = 0; j < d; ++j)
    for (int i = 0; i <= j; ++i) inv += A[static_cast<std::size_t>(j) * d + i] * A[static_cast<std::size_t>(j) * d + i];
  if (!(std::isfinite(inv) && std::isfinite(trace) && inv * trace * factor * 8.0 < 1.0)) return false;
  factor_out = std::move(U);  // only when certified: the caller then solves with it
  return true;
}

// x = V diag(1/λ, λ > cutoff) Vᵀ b (the minimum-norm least-squares solution).
void eigen_solve(const std::vector<double>& V, const std::vector<double>& lam, double cutoff, int d,
                 std::vector<double>& b, int nrhs) {
  std::vector<double> c(d);
  for (int r = 0; r < nrhs; ++r) {
    double* x = b.data() + static_cast<std::size_t>(r) * d;
    for (int k = 0; k < d; ++k) {
      double s = 0.0;
      const double* v = V.data() + static_cast<std::size_t>(k) * d;
      for (int i = 0; i < d; ++i) s += v[i] * x[i];
      c[k] = lam[k] > cutoff ? s / lam[k] : 0.0;
    }
    std::fill(x, x + d, 0.0);
    for (int k = 0; k < d; ++k) {
      const double* v = V.data() + static_cast<std::size_t>(k) * d;
      for (int i = 0; i < d; ++i) x[i] += c[k] * v[i];
    }
  }
}

}  // namespace

template <class T>
void partial_fit(const comm& c, normal_state& s, matrix_view<const T> X, matrix_view<const T> Y,
                 std::optional<vector_view<const T>> w, const char* what) {
  detail::configure_blas_threads(c);
  detail::cross_moments loc;
  std::exception_ptr err;
  try {
    check_inputs(what, X, Y, w);
    if (s.n_features > 0 && detail::declared_features(X) >= 0 && X.cols != s.n_features)
      throw invalid_argument(std::string(what) + ": X has " + std::to_string(X.cols) +
                             " features, but the model was fitted with " + std::to_string(s.n_features));
    loc = local_moments(what, X, Y, w);
  } catch (...) {
    err = std::current_exception();
  }
  // A rank without rows may not know the number of targets either: an empty y of shape (0, 0)
  // (the Python layer's reading of a 1-D empty y) has no opinion, as an X of shape (0, 0).
  const bool knows_targets = X.rows > 0 || (X.cols > 0 && Y.cols > 0);
  const auto agreed = agree(c, err,
                            {{"n_features", detail::declared_features(X)},
                             {"the number of targets", knows_targets ? Y.cols : -1},
                             {"dtype", static_cast<std::int64_t>(dtype_of<T>()), dtype_labels}});
  const std::int64_t d = std::max<std::int64_t>(agreed[0], 0), t = std::max<std::int64_t>(agreed[1], 0);
  if (static_cast<std::int64_t>(loc.mean.size()) != d + t) loc.reset(d + t);
  detail::cross_moments g = detail::merge_across(c, std::move(loc));
  if (g.rows == 0)
    throw invalid_argument(std::string(what) +
                           ": no rank holds any row (0 samples in total); at least one sample is required");
  if (!(g.weight > 0.0))
    throw invalid_argument(std::string(what) +
                           ": Sample weights must contain at least one non-zero number (the "
                           "weights of all ranks' rows sum to zero)");
  if (s.n_features > 0 && s.n_targets != t)
    throw invalid_argument(std::string(what) + ": y has " + std::to_string(t) +
                           " targets, but the model was fitted with " + std::to_string(s.n_targets));
  detail::cross_moments acc;
  acc.weight = s.weight;
  acc.rows = s.n_rows;
  acc.mean = s.mean;
  acc.cross = s.cross;
  acc.exponent = exponents_of(s);
  if (s.n_features == 0) acc.reset(d + t);
  detail::merge_into(acc, g);
  s.n_features = d;
  s.n_targets = t;
  s.n_rows = acc.rows;
  s.weight = acc.weight;
  s.mean = std::move(acc.mean);
  s.cross = std::move(acc.cross);
  s.exponent = std::move(acc.exponent);
}

namespace {

// The merged moments of [X | Y] as the matrix of the normal equations, in units of
// 2^(f_i + f_j) (see normal_state::exponent): centred (fit_intercept) or raw,
// Σ w z zᵀ = M + W μ μᵀ, whose columns are as large as their means, so that f also covers |μ|.
struct moment_matrix {
  std::vector<double> m;  // p x p, symmetric
  std::vector<int> f;
};

moment_matrix moments_of(const normal_state& s, bool fit_intercept) {
  const std::int64_t p = static_cast<std::int64_t>(s.mean.size());
  const std::vector<int> e = exponents_of(s);
  moment_matrix q{s.cross, e};
  if (fit_intercept) return q;
  for (std::int64_t j = 0; j < p; ++j) {
    const int own = s.cross[j * p + j] != 0.0 ? e[j] : detail::no_exponent;
    const int f = std::max(own, detail::scale_exponent(std::abs(s.mean[j])));
    q.f[j] = f == detail::no_exponent ? 0 : f;
  }
  std::vector<double> mu(p);
  for (std::int64_t j = 0; j < p; ++j) mu[j] = std::ldexp(s.mean[j], -q.f[j]);
  const bool same = q.f == e;
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = 0; j < p; ++j) {
      double& v = q.m[i * p + j];
      // A column without spread has a zero row; its exponent may have grown with the mean.
      if (!same) {
        const bool flat = s.cross[i * p + i] == 0.0 || s.cross[j * p + j] == 0.0;
        v = flat ? 0.0 : std::ldexp(v, e[i] + e[j] - q.f[i] - q.f[j]);
      }
      v += s.weight * mu[i] * mu[j];
    }
  return q;
}

// The column units g in which a system with ridge penalty a is solved: 0 for ordinary data and
// penalties (the common case: nothing is scaled). Least squares (a = 0) takes one power of two
// for all columns, the largest f_j: lstsq's answer for a rank-deficient X depends on the columns'
// relative scale, which a common factor keeps (columns far below the largest then fall under the
// rank cutoff, as in scikit-learn). A penalised system has one solution, so each column takes its
// own scale, the one that brings its diagonal entry, penalty included, near 1 (then neither the
// entries, the penalty a 2^-2g_j, nor the solution leave the float range).
std::vector<int> system_units(const moment_matrix& q, std::int64_t d, double a) {
  const std::int64_t p = static_cast<std::int64_t>(q.f.size());
  std::vector<int> g(q.f.begin(), q.f.begin() + d);
  if (a == 0.0) {
    const int E = d > 0 ? *std::max_element(g.begin(), g.end()) : 0;
    std::fill(g.begin(), g.end(), E);
    return g;
  }
  const int ea = std::ilogb(a) / 2;
  bool ordinary = ea >= -200 && ea <= 200;
  for (int v : g) ordinary &= v == 0;
  if (ordinary) return std::vector<int>(d, 0);
  for (std::int64_t j = 0; j < d; ++j) {
    const double mjj = q.m[j * p + j];
    g[j] = mjj > 0.0 ? std::max(q.f[j] + std::ilogb(mjj) / 2, ea) : ea;
  }
  return g;
}

// A (d x d, column-major): A_ij = M_ij 2^(f_i + f_j - g_i - g_j), plus the penalty a 2^-2g_j on
// the diagonal.
std::vector<double> system_matrix(const moment_matrix& q, std::int64_t d, const std::vector<int>& g, double a) {
  const std::int64_t p = static_cast<std::int64_t>(q.f.size());
  bool scaled = false;
  for (std::int64_t j = 0; j < d; ++j) scaled |= q.f[j] != g[j] || g[j] != 0;
  std::vector<double> A(d * d);
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double v = q.m[i * p + j];
      A[i + j * d] = scaled ? std::ldexp(v, q.f[i] + q.f[j] - g[i] - g[j]) : v;
    }
  if (a > 0.0)
    for (std::int64_t j = 0; j < d; ++j) A[j + j * d] += scaled ? std::ldexp(a, -2 * g[j]) : a;
  return A;
}

// B (d x nk, column-major) for targets k0 .. k0 + nk: B_jk = M_{j,d+k} 2^(f_j - g_j), in units of
// 2^(g_j + f_{d+k}); the solution x of A x = B is coef_jk = x_jk 2^(f_{d+k} - g_j).
std::vector<double> system_rhs(const moment_matrix& q, std::int64_t d, const std::vector<int>& g, std::int64_t k0,
                               std::int64_t nk) {
  const std::int64_t p = static_cast<std::int64_t>(q.f.size());
  std::vector<double> B(d * nk);
  for (std::int64_t k = 0; k < nk; ++k)
    for (std::int64_t j = 0; j < d; ++j) B[j + k * d] = std::ldexp(q.m[j * p + d + k0 + k], q.f[j] - g[j]);
  return B;
}

// Normal equations that are not finite (data near the float range on a path without scaling, or a
// state restored by hand) would make the factorisations fail or return NaN: say so instead.
void check_finite(const moment_matrix& q, std::int64_t d) {
  const std::int64_t p = static_cast<std::int64_t>(q.f.size());
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = 0; j <= i; ++j)
      if (!std::isfinite(q.m[i * p + j]))
        throw invalid_argument(
            "the normal equations are not finite (the cross-products of " +
            std::string(i < d ? "feature " + std::to_string(i) : "target " + std::to_string(i - d)) +
            " overflow the float64 range): scale the features and targets (e.g. divide large "
            "columns by a power of ten)");
}

}  // namespace

solution solve(const normal_state& s, std::span<const double> alpha, bool fit_intercept, double rcond,
               bool on_gpu, bool spectrum) {
  const detail::blas_serial_scope serial(s.n_features);  // d x d work: see blas_serial_scope
  const dense::where where = on_gpu ? dense::where::gpu : dense::where::host;
  const std::int64_t d = s.n_features, t = s.n_targets;
  if (!alpha.empty() && alpha.size() != 1 && static_cast<std::int64_t>(alpha.size()) != t)
    throw invalid_argument("Number of targets and number of penalties do not correspond: " +
                           std::to_string(t) + " != " + std::to_string(alpha.size()));
  for (double a : alpha)
    if (!(a >= 0.0) || !std::isfinite(a))
      throw invalid_argument("alpha must be a finite number >= 0, got " + std::to_string(a));
  const moment_matrix q = moments_of(s, fit_intercept);
  check_finite(q, d);
  constexpr const char* matrix_name = "normal-equations matrix X^T X";
  // The least-squares system A (d x d, column-major) in one common unit 2^E.
  const std::vector<int> g0 = system_units(q, d, 0.0);
  const int E = d > 0 ? g0[0] : 0;
  const std::vector<double> A = system_matrix(q, d, g0, 0.0);

  solution r;
  // Least squares needs the spectrum: the singular values of X (scikit-learn's singular_) and the
  // rank, from the eigenvalues of A. lstsq drops s < rcond s_max, i.e. λ < rcond² λ_max; A itself
  // carries rounding of ~d eps64 λ_max, so never below that. Ridge needs neither. The eigenvectors
  // are computed only when the minimum-norm solution needs them (rank deficiency, or a ridge
  // system that Cholesky refuses).
  std::vector<double> V, lam;
  bool have_vectors = false;
  double cutoff = 0.0;
  auto ensure_vectors = [&] {
    if (have_vectors) return;
    V = A;
    lam = dense::eigh(V, static_cast<int>(d), true, where, matrix_name);
    have_vectors = true;
  };
  const double factor = std::max(rcond * rcond, 16.0 * static_cast<double>(std::max<std::int64_t>(d, 1)) *
                                                     std::numeric_limits<double>::epsilon());
  std::vector<double> U;  // A's Cholesky factor when the certificate below computed it
  if (alpha.empty() && !spectrum && certainly_full_rank(A, static_cast<int>(d), factor, U)) {
    r.rank = d;  // singular left empty: the caller asked not to compute it
  } else if (alpha.empty()) {
    std::vector<double> scratch = A;
    lam = dense::eigh(scratch, static_cast<int>(d), false, where, matrix_name);
    const double lam_max = d > 0 ? std::max(lam.back(), 0.0) : 0.0;
    cutoff = lam_max * factor;
    r.singular.resize(d);
    for (std::int64_t k = 0; k < d; ++k) {
      const double l = lam[d - 1 - k];
      r.singular[k] = std::ldexp(std::sqrt(std::max(l, 0.0)), E);
      if (l > cutoff) ++r.rank;
    }
  }

  const int di = static_cast<int>(d);
  r.coef.assign(t * d, 0.0);
  auto alpha_of = [&](std::int64_t k) { return alpha.empty() ? 0.0 : alpha[alpha.size() == 1 ? 0 : k]; };
  bool same_alpha = true;
  for (std::int64_t k = 1; k < t; ++k) same_alpha &= alpha_of(k) == alpha_of(0);
  auto solve_group = [&](std::int64_t k0, std::int64_t nk, double a) {
    const std::vector<int> g = a == 0.0 ? g0 : system_units(q, d, a);
    std::vector<double> b = system_rhs(q, d, g, k0, nk);
    bool done = false;
    if (a == 0.0 && !U.empty()) {  // factored already
      int info = 0, nrhs = static_cast<int>(nk);
      dpotrs_("U", &di, &nrhs, U.data(), &di, b.data(), &di, &info);
      done = info == 0;
    } else if (a > 0.0 || r.rank == d) {
      done = cholesky_solve(a > 0.0 ? system_matrix(q, d, g, a) : A, di, b, static_cast<int>(nk));
    }
    if (!done && a == 0.0) {
      // Rank-deficient least squares: the minimum-norm solution over the eigenvalues above the
      // cutoff.
      ensure_vectors();
      if (cutoff == 0.0) {
        const double lam_max = d > 0 ? std::max(lam.back(), 0.0) : 0.0;
        cutoff = lam_max * 16.0 * static_cast<double>(d) * std::numeric_limits<double>::epsilon();
      }
      eigen_solve(V, lam, cutoff, di, b, static_cast<int>(nk));
    } else if (!done) {
      // A ridge system that is not numerically positive definite: the same minimum-norm solution
      // of the penalised matrix.
      std::vector<double> Va = system_matrix(q, d, g, a);
      const std::vector<double> la = dense::eigh(Va, di, true, where, matrix_name);
      eigen_solve(Va, la, 0.0, di, b, static_cast<int>(nk));
    }
    for (std::int64_t k = 0; k < nk; ++k)
      for (std::int64_t i = 0; i < d; ++i)
        r.coef[(k0 + k) * d + i] = std::ldexp(b[i + k * d], q.f[d + k0 + k] - g[i]);
  };
  if (d > 0 && t > 0) {
    if (same_alpha)
      solve_group(0, t, alpha_of(0));
    else
      for (std::int64_t k = 0; k < t; ++k) solve_group(k, 1, alpha_of(k));
  }
  r.intercept.assign(t, 0.0);
  for (std::int64_t k = 0; k < t; ++k) {
    double icpt = fit_intercept ? s.mean[d + k] : 0.0;
    if (fit_intercept)
      for (std::int64_t i = 0; i < d; ++i) icpt -= s.mean[i] * r.coef[k * d + i];
    r.intercept[k] = icpt;
  }
  return r;
}

template <class T>
std::vector<double> r2_score(const comm& c, matrix_view<const T> Y, matrix_view<const T> P,
                             std::optional<vector_view<const T>> w) {
  const std::int64_t t = Y.cols;
  double W = 0.0;
  std::vector<double> mean(t, 0.0), m2(t, 0.0), ssr(t, 0.0);
  std::exception_ptr err;
  try {
    require_cpu(Y.device, "score");
    if (P.rows != Y.rows || P.cols != Y.cols)
      throw invalid_argument("score: y has shape (" + std::to_string(Y.rows) + ", " +
                             std::to_string(Y.cols) + ") but the predictions have (" +
                             std::to_string(P.rows) + ", " + std::to_string(P.cols) + ")");
    detail::check_sample_weight("score", Y.rows, w);
    // Local weighted mean, centred squares (two passes over the local rows) and residual squares.
    for (std::int64_t i = 0; i < Y.rows; ++i) {
      const double wi = w ? static_cast<double>((*w)[i]) : 1.0;
      W += wi;
      for (std::int64_t k = 0; k < t; ++k) mean[k] += wi * static_cast<double>(Y(i, k));
    }
    if (W > 0.0)
      for (auto& v : mean) v /= W;
    for (std::int64_t i = 0; i < Y.rows; ++i) {
      const double wi = w ? static_cast<double>((*w)[i]) : 1.0;
      for (std::int64_t k = 0; k < t; ++k) {
        const double y = static_cast<double>(Y(i, k)), e = y - static_cast<double>(P(i, k));
        m2[k] += wi * (y - mean[k]) * (y - mean[k]);
        ssr[k] += wi * e * e;
      }
    }
    for (std::int64_t k = 0; k < t; ++k)
      if (!std::isfinite(m2[k]) || !std::isfinite(ssr[k]))
        throw invalid_argument("score: y or the predictions contain NaN or infinity");
  } catch (...) {
    err = std::current_exception();
  }
  const auto agreed = agree(c, err, {{"the number of targets", Y.rows == 0 && Y.cols == 0 ? -1 : t}});
  // A rank that passed (0, 0) blocks takes the agreed width, so that every rank's collectives
  // below have the same size (its sums are zeros).
  const std::int64_t tg = std::max<std::int64_t>(agreed[0], 0);
  if (tg != t) {
    mean.assign(tg, 0.0);
    m2.assign(tg, 0.0);
    ssr.assign(tg, 0.0);
  }
  const detail::global_mean g = detail::merge_means_across(c, W, Y.rows, mean);
  std::vector<double> sums(2 * tg);
  for (std::int64_t k = 0; k < tg; ++k) {
    sums[k] = m2[k] + W * g.local_delta[k] * g.local_delta[k];
    sums[tg + k] = ssr[k];
  }
  c.allreduce<double>(sums, reduce_op::sum);
  std::vector<double> r2(tg);
  for (std::int64_t k = 0; k < tg; ++k) {
    const double sst = sums[k], sr = sums[tg + k];
    r2[k] = sst != 0.0 ? 1.0 - sr / sst : (sr == 0.0 ? 1.0 : 0.0);
  }
  return r2;
}

#define SPMDLEARN_INSTANTIATE(T)                                                                 \
  template void partial_fit<T>(const comm&, normal_state&, matrix_view<const T>,                 \
                               matrix_view<const T>, std::optional<vector_view<const T>>,        \
                               const char*);                                                     \
  template std::vector<double> r2_score<T>(const comm&, matrix_view<const T>,                    \
                                           matrix_view<const T>, std::optional<vector_view<const T>>);
SPMDLEARN_INSTANTIATE(float)
SPMDLEARN_INSTANTIATE(double)
#undef SPMDLEARN_INSTANTIATE

}  // namespace spmdlearn::linear_model
