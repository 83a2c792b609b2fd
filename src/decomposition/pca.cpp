// PCA spectra: from the merged covariance state (covariance_eigh) or by TSQR of the centred rows
// (full). See include/spmdlearn/decomposition.hpp.
#include "spmdlearn/decomposition.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <random>
#include <string>

#include "backend/cpu/lapack.hpp"
#include "core/merge.hpp"
#include "core/threads.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"

namespace spmdlearn::decomposition {

namespace {

// Each component's largest-magnitude entry positive (svd_flip, u_based_decision=False).
void flip_signs(std::vector<double>& comp, std::int64_t r, std::int64_t d) {
  for (std::int64_t k = 0; k < r; ++k) {
    double* v = comp.data() + k * d;
    std::int64_t arg = 0;
    for (std::int64_t j = 1; j < d; ++j)
      if (std::abs(v[j]) > std::abs(v[arg])) arg = j;
    if (v[arg] < 0)
      for (std::int64_t j = 0; j < d; ++j) v[j] = -v[j];
  }
}

// Stacks `rows` more rows (column-major in m, leading dimension ld) under the current R (rr rows)
// and re-factorises: R (min(rr + rows, d) x d, upper trapezoid) stays in the top of m.
void qr_update(std::vector<double>& m, int ld, int& rr, int rows, int d) {
  const int total = rr + rows;
  if (cpu::geqrf(total, d, m.data(), ld) != 0) throw runtime_error("dgeqrf failed");
  rr = std::min(total, d);
  // Zero the strictly lower part (Householder vectors) of the kept rows, and the rows below.
  for (int j = 0; j < d; ++j)
    for (int i = j + 1; i < total; ++i) m[i + static_cast<std::size_t>(j) * ld] = 0.0;
}

// Collective: the guard (NaN/inf, n_features, dtype) and the global mean of all ranks' rows
// (Chan merge of the rank means in rank order: the same bits everywhere). Throws on every rank
// when no rank holds a row.
template <class T>
detail::global_mean checked_global_mean(const comm& c, matrix_view<const T> X) {
  detail::configure_blas_threads(c);
  std::vector<double> local_mean;
  std::exception_ptr err;
  try {
    detail::check_host_matrix("PCA", X);
    local_mean.assign(X.cols, 0.0);
    for (std::int64_t i = 0; i < X.rows; ++i)
      for (std::int64_t j = 0; j < X.cols; ++j) local_mean[j] += static_cast<double>(X(i, j));
    for (std::int64_t j = 0; j < X.cols; ++j)
      if (!std::isfinite(local_mean[j])) {
        detail::throw_if_nonfinite("X", X, 0, X.rows);
        break;
      }
    if (X.rows > 0)
      for (auto& v : local_mean) v /= static_cast<double>(X.rows);
  } catch (...) {
    err = std::current_exception();
  }
  const std::int64_t d = detail::agree_on_block(c, err, X);
  if (static_cast<std::int64_t>(local_mean.size()) != d) local_mean.assign(d, 0.0);
  detail::global_mean g = detail::merge_means_across(c, static_cast<double>(X.rows), X.rows, local_mean);
  if (g.rows == 0)
    throw invalid_argument("PCA: no rank holds any row (0 samples in total); at least one sample is required");
  return g;
}

}  // namespace

namespace {
// Minka (NIPS 2000), eq. as in scikit-learn's _assess_dimension.
double assess_dimension(const std::vector<double>& sp, std::int64_t rank, double n) {
  const std::int64_t p = static_cast<std::int64_t>(sp.size());
  constexpr double eps = 1e-15;
  if (sp[rank - 1] < eps) return -std::numeric_limits<double>::infinity();
  double pu = -static_cast<double>(rank) * std::log(2.0);
  for (std::int64_t i = 1; i <= rank; ++i) {
    const double h = static_cast<double>(p - i + 1) / 2.0;
    pu += std::lgamma(h) - std::log(M_PI) * h;
  }
  double pl = 0.0;
  for (std::int64_t i = 0; i < rank; ++i) pl += std::log(sp[i]);
  pl = -pl * n / 2.0;
  double tail = 0.0;
  for (std::int64_t i = rank; i < p; ++i) tail += sp[i];
  const double v = std::max(eps, tail / static_cast<double>(p - rank));
  const double pv = -std::log(v) * n * static_cast<double>(p - rank) / 2.0;
  const double m = static_cast<double>(p * rank) - static_cast<double>(rank) * (rank + 1.0) / 2.0;
  const double pp = std::log(2.0 * M_PI) * (m + static_cast<double>(rank)) / 2.0;
  double pa = 0.0;
  for (std::int64_t i = 0; i < rank; ++i)
    for (std::int64_t j = i + 1; j < p; ++j) {
      const double sj = j >= rank ? v : sp[j], si = i >= rank ? v : sp[i];
      pa += std::log((sp[i] - sp[j]) * (1.0 / sj - 1.0 / si)) + std::log(n);
    }
  return pu + pl + pv + pp - pa / 2.0 - static_cast<double>(rank) * std::log(n) / 2.0;
}
}  // namespace

std::int64_t infer_dimension(const std::vector<double>& spectrum, std::int64_t n_samples) {
  std::int64_t best = 0;
  double best_ll = -std::numeric_limits<double>::infinity();
  for (std::int64_t rank = 1; rank < static_cast<std::int64_t>(spectrum.size()); ++rank) {
    const double ll = assess_dimension(spectrum, rank, static_cast<double>(n_samples));
    if (ll > best_ll) {  // first maximum, as numpy's argmax (NaN never wins here)
      best_ll = ll;
      best = rank;
    }
  }
  return best;
}

pca_spectrum pca_covariance_eigh(const covariance::state& s) {
  pca_spectrum r;
  const std::int64_t d = s.n_features, n = s.n_rows;
  r.n_samples = n;
  r.n_features = d;
  r.mean = s.mean;
  std::vector<double> V(s.cross);  // symmetric: row-major = column-major
  std::vector<double> lam = cpu::eigh(V, static_cast<int>(d), true);
  r.singular.resize(d);
  r.explained_variance.resize(d);
  r.components.resize(d * d);
  for (std::int64_t k = 0; k < d; ++k) {
    const std::int64_t src = d - 1 - k;  // descending
    const double l = std::max(lam[src], 0.0);
    r.singular[k] = std::sqrt(l);
    r.explained_variance[k] = n > 1 ? l / static_cast<double>(n - 1) : 0.0;
    for (std::int64_t j = 0; j < d; ++j) r.components[k * d + j] = V[j + src * d];
  }
  flip_signs(r.components, d, d);
  return r;
}

template <class T>
pca_spectrum pca_full(const comm& c, matrix_view<const T> X) {
  const detail::global_mean g = checked_global_mean(c, X);
  const std::int64_t d = static_cast<std::int64_t>(g.mean.size());
  // Local R of the centred rows, chunk by chunk: m holds [R (d rows) ; chunk (B rows)].
  const int di = static_cast<int>(d);
  const int B = static_cast<int>(std::clamp<std::int64_t>((1 << 20) / (8 * std::max<std::int64_t>(d, 1)), 64, 8192));
  const int ld = di + B;
  std::vector<double> m(static_cast<std::size_t>(ld) * di, 0.0);
  int rr = 0;
  for (std::int64_t i0 = 0; i0 < X.rows; i0 += B) {
    const int nb = static_cast<int>(std::min<std::int64_t>(B, X.rows - i0));
    for (int i = 0; i < nb; ++i) {
      const T* x = X.row(i0 + i);
      for (int j = 0; j < di; ++j) m[rr + i + static_cast<std::size_t>(j) * ld] = static_cast<double>(x[j]) - g.mean[j];
    }
    qr_update(m, ld, rr, nb, di);
  }
  // Allgather the ranks' R (d x d each, zero rows where a rank had fewer than d rows) and
  // factorise the stack once more; every rank does the same arithmetic on the same numbers.
  std::vector<double> mine(static_cast<std::size_t>(di) * di, 0.0);  // column-major d x d
  for (int j = 0; j < di; ++j)
    for (int i = 0; i < std::min(rr, di); ++i) mine[i + static_cast<std::size_t>(j) * di] = m[i + static_cast<std::size_t>(j) * ld];
  std::vector<double> all = c.allgather<double>(mine);
  const int p = c.size(), M = p * di;
  std::vector<double> stack(static_cast<std::size_t>(M) * di);
  for (int r = 0; r < p; ++r)
    for (int j = 0; j < di; ++j)
      for (int i = 0; i < di; ++i)
        stack[r * di + i + static_cast<std::size_t>(j) * M] = all[static_cast<std::size_t>(r) * di * di + i + static_cast<std::size_t>(j) * di];
  if (M > 0 && cpu::geqrf(M, di, stack.data(), M) != 0) throw runtime_error("dgeqrf failed");
  std::vector<double> R(static_cast<std::size_t>(di) * di, 0.0);
  for (int j = 0; j < di; ++j)
    for (int i = 0; i <= j && i < M; ++i) R[i + static_cast<std::size_t>(j) * di] = stack[i + static_cast<std::size_t>(j) * M];
  // SVD of R: R = U S Vt; X_c = Q R = (Q U) S Vt.
  std::vector<double> S(di), Vt(static_cast<std::size_t>(di) * di);
  if (di > 0) {
    int info = 0, lwork = -1, one = 1;
    double q = 0, dummy = 0;
    dgesvd_("N", "A", &di, &di, R.data(), &di, S.data(), &dummy, &one, Vt.data(), &di, &q, &lwork, &info);
    lwork = std::max(1, static_cast<int>(q));
    std::vector<double> work(lwork);
    dgesvd_("N", "A", &di, &di, R.data(), &di, S.data(), &dummy, &one, Vt.data(), &di, work.data(), &lwork, &info);
    if (info != 0) throw runtime_error("dgesvd failed with info=" + std::to_string(info));
  }
  pca_spectrum out;
  const std::int64_t n = g.rows, r = std::min<std::int64_t>(n, d);
  out.n_samples = n;
  out.n_features = d;
  out.mean = g.mean;
  out.singular.assign(S.begin(), S.begin() + r);
  out.explained_variance.resize(r);
  for (std::int64_t k = 0; k < r; ++k) out.explained_variance[k] = n > 1 ? S[k] * S[k] / static_cast<double>(n - 1) : 0.0;
  out.components.resize(r * d);
  for (std::int64_t k = 0; k < r; ++k)
    for (std::int64_t j = 0; j < d; ++j) out.components[k * d + j] = Vt[k + j * d];  // row k of Vt
  flip_signs(out.components, r, d);
  return out;
}

template pca_spectrum pca_full<float>(const comm&, matrix_view<const float>);
template pca_spectrum pca_full<double>(const comm&, matrix_view<const double>);

}  // namespace spmdlearn::decomposition

// ---- randomized -------------------------------------------------------------------------------
namespace spmdlearn::decomposition {
namespace {

// Orthonormalises the columns of Y (rows x l, column-major, ld = rows) in place by CholeskyQR2:
// G = Yᵀ Y (summed over the ranks when `c` is given), R = chol(G), Y <- Y R⁻¹, twice. A Gram
// matrix that Cholesky refuses (dependent columns) gets a small diagonal shift first.
void cholqr2(const comm* c, std::vector<double>& Y, int rows, int l) {
  for (int round = 0; round < 2; ++round) {
    std::vector<double> G(static_cast<std::size_t>(l) * l, 0.0);
    const double one = 1.0, zero = 0.0;
    if (rows > 0) dsyrk_("U", "T", &l, &rows, &one, Y.data(), &rows, &zero, G.data(), &l);
    if (c) c->allreduce<double>(G, reduce_op::sum);
    cpu::symmetrize_upper(l, G.data());
    double trace = 0.0;
    for (int i = 0; i < l; ++i) trace += G[i + static_cast<std::size_t>(i) * l];
    std::vector<double> R = G;
    int info = 0;
    dpotrf_("U", &l, R.data(), &l, &info);
    if (info != 0) {
      R = G;
      for (int i = 0; i < l; ++i) R[i + static_cast<std::size_t>(i) * l] += 1e-13 * std::max(trace, 1e-300);
      dpotrf_("U", &l, R.data(), &l, &info);
      if (info != 0) throw runtime_error("PCA(randomized): the range basis is numerically zero");
    }
    if (rows > 0) dtrsm_("R", "U", "N", "N", &rows, &l, &one, R.data(), &l, Y.data(), &rows);
  }
}

// Column-major n_r x d block of the centred rows (chunks are small enough for this solver's
// typical use; the whole local block is materialised once).
template <class T>
std::vector<double> centred_colmajor(matrix_view<const T> X, const std::vector<double>& mean) {
  const std::int64_t n = X.rows, d = X.cols;
  std::vector<double> A(static_cast<std::size_t>(n) * d);
  for (std::int64_t i = 0; i < n; ++i) {
    const T* x = X.row(i);
    for (std::int64_t j = 0; j < d; ++j) A[i + j * n] = static_cast<double>(x[j]) - mean[j];
  }
  return A;
}

}  // namespace

template <class T>
randomized_spectrum pca_randomized(const comm& c, matrix_view<const T> X, std::int64_t k,
                                   std::int64_t oversamples, int n_iter, std::uint64_t seed) {
  const detail::global_mean g = checked_global_mean(c, X);
  const std::int64_t d = static_cast<std::int64_t>(g.mean.size());
  const std::int64_t n = g.rows;
  const int l = static_cast<int>(std::min<std::int64_t>(k + oversamples, std::min<std::int64_t>(n, d)));
  const int nr = static_cast<int>(X.rows), di = static_cast<int>(d);
  const std::vector<double> A = centred_colmajor(X, g.mean);  // nr x d
  // Total variance: Σ_j Σ_i (x_ij - μ_j)² / (n - 1), over all ranks.
  std::vector<double> ss(1, 0.0);
  for (double v : A) ss[0] += v * v;
  c.allreduce<double>(ss, reduce_op::sum);
  // Ω: d x l standard normal from the seed (identical on every rank).
  std::vector<double> Om(static_cast<std::size_t>(di) * l);
  {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (auto& v : Om) v = normal(rng);
  }
  const double one = 1.0, zero = 0.0;
  std::vector<double> Y(static_cast<std::size_t>(nr) * l), Z(static_cast<std::size_t>(di) * l);
  auto mult_A = [&](const std::vector<double>& M, std::vector<double>& out) {  // out = A M (nr x l)
    if (nr > 0) dgemm_("N", "N", &nr, &l, &di, &one, A.data(), &nr, M.data(), &di, &zero, out.data(), &nr);
  };
  auto mult_At = [&](const std::vector<double>& Q, std::vector<double>& out) {  // out = Σ Aᵀ Q (d x l)
    std::fill(out.begin(), out.end(), 0.0);
    if (nr > 0) dgemm_("T", "N", &di, &l, &nr, &one, A.data(), &nr, Q.data(), &nr, &zero, out.data(), &di);
    c.allreduce<double>(out, reduce_op::sum);
  };
  mult_A(Om, Y);
  cholqr2(&c, Y, nr, l);
  for (int it = 0; it < n_iter; ++it) {
    mult_At(Y, Z);
    cholqr2(nullptr, Z, di, l);
    mult_A(Z, Y);
    cholqr2(&c, Y, nr, l);
  }
  // B = Qᵀ A (l x d) = (Aᵀ Q)ᵀ: Z = Σ Aᵀ Q (d x l); the SVD of Zᵀ gives B's.
  mult_At(Y, Z);
  std::vector<double> Bm(static_cast<std::size_t>(l) * di);  // l x d column-major
  for (int i = 0; i < l; ++i)
    for (int j = 0; j < di; ++j) Bm[i + static_cast<std::size_t>(j) * l] = Z[j + static_cast<std::size_t>(i) * di];
  const int mn = std::min(l, di);
  std::vector<double> S(mn), Vt(static_cast<std::size_t>(mn) * di);
  {
    int info = 0, lwork = -1, ldu = 1;
    double q = 0, dummy = 0;
    dgesvd_("N", "S", &l, &di, Bm.data(), &l, S.data(), &dummy, &ldu, Vt.data(), &mn, &q, &lwork, &info);
    lwork = std::max(1, static_cast<int>(q));
    std::vector<double> work(lwork);
    dgesvd_("N", "S", &l, &di, Bm.data(), &l, S.data(), &dummy, &ldu, Vt.data(), &mn, work.data(), &lwork, &info);
    if (info != 0) throw runtime_error("dgesvd failed with info=" + std::to_string(info));
  }
  randomized_spectrum out;
  const std::int64_t kk = std::min<std::int64_t>(k, mn);
  out.n_samples = n;
  out.n_features = d;
  out.mean = g.mean;
  out.total_variance = n > 1 ? ss[0] / static_cast<double>(n - 1) : 0.0;
  out.singular.assign(S.begin(), S.begin() + kk);
  out.explained_variance.resize(kk);
  for (std::int64_t q = 0; q < kk; ++q) out.explained_variance[q] = n > 1 ? S[q] * S[q] / static_cast<double>(n - 1) : 0.0;
  out.components.resize(kk * d);
  for (std::int64_t q = 0; q < kk; ++q)
    for (std::int64_t j = 0; j < d; ++j) out.components[q * d + j] = Vt[q + j * mn];
  flip_signs(out.components, kk, d);
  return out;
}

template randomized_spectrum pca_randomized<float>(const comm&, matrix_view<const float>, std::int64_t,
                                                   std::int64_t, int, std::uint64_t);
template randomized_spectrum pca_randomized<double>(const comm&, matrix_view<const double>, std::int64_t,
                                                    std::int64_t, int, std::uint64_t);

}  // namespace spmdlearn::decomposition
