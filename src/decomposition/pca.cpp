// PCA spectra: from the merged covariance state (covariance_eigh) or by TSQR of the centred rows
// (full). See include/spmdlearn/decomposition.hpp.
#include "spmdlearn/decomposition.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <memory>
#include <random>
#include <string>

#include "backend/cpu/lapack.hpp"
#include "backend/dense.hpp"
#include "core/merge.hpp"
#include "core/threads.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"
#ifdef SPMDLEARN_WITH_CUDA
#include "backend/cuda/moments_cuda.hpp"
#include "backend/cuda/pca_cuda.hpp"
#endif

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
  const int info = cpu::geqrf(total, d, m.data(), ld);
  if (info != 0) detail::throw_factorization_error("dgeqrf", info, total, d, "matrix of this rank's centred rows");
  rr = std::min(total, d);
  // Zero the strictly lower part (Householder vectors) of the kept rows, and the rows below.
  for (int j = 0; j < d; ++j)
    for (int i = j + 1; i < total; ++i) m[i + static_cast<std::size_t>(j) * ld] = 0.0;
}

// Column means of a host block (throws naming the first NaN/inf).
template <class T>
std::vector<double> host_mean(matrix_view<const T> X) {
  std::vector<double> local_mean(X.cols, 0.0);
  for (std::int64_t i = 0; i < X.rows; ++i)
    for (std::int64_t j = 0; j < X.cols; ++j) local_mean[j] += static_cast<double>(X(i, j));
  for (std::int64_t j = 0; j < X.cols; ++j)
    if (!std::isfinite(local_mean[j])) {
      detail::throw_if_nonfinite("X", X, 0, X.rows);
      break;
    }
  if (X.rows > 0)
    for (auto& v : local_mean) v /= static_cast<double>(X.rows);
  return local_mean;
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
    if (X.device == device_kind::cuda) {
      detail::check_device_matrix("PCA", X);
#ifdef SPMDLEARN_WITH_CUDA
      // Exact mean on the GPU; throws naming the first NaN/inf.
      if (X.rows > 0 && X.cols > 0) local_mean = cuda::column_moments_exact<T>(X.data, X.rows, X.cols, X.stride(), nullptr).mean;
      else local_mean.assign(X.cols, 0.0);
#endif
    } else {
      detail::check_host_matrix("PCA", X);
      local_mean = host_mean(X);
    }
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

pca_spectrum pca_covariance_eigh(const covariance::state& s, bool on_gpu) {
  pca_spectrum r;
  const std::int64_t d = s.n_features, n = s.n_rows;
  r.n_samples = n;
  r.n_features = d;
  r.mean = s.mean;
  std::vector<double> V(s.cross);  // symmetric: row-major = column-major
  std::vector<double> lam = dense::eigh(V, static_cast<int>(d), true, on_gpu ? dense::where::gpu : dense::where::host,
                                        "matrix of centred cross-products");
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

// R of the centred rows of a host block, chunk by chunk: m holds [R (d rows) ; chunk (B rows)].
template <class T>
std::vector<double> host_centred_r(matrix_view<const T> X, const std::vector<double>& mean) {
  const int di = static_cast<int>(X.cols);
  const int B = static_cast<int>(std::clamp<std::int64_t>((1 << 20) / (8 * std::max<std::int64_t>(di, 1)), 64, 8192));
  const int ld = di + B;
  std::vector<double> m(static_cast<std::size_t>(ld) * di, 0.0);
  int rr = 0;
  for (std::int64_t i0 = 0; i0 < X.rows; i0 += B) {
    const int nb = static_cast<int>(std::min<std::int64_t>(B, X.rows - i0));
    for (int i = 0; i < nb; ++i) {
      const T* x = X.row(i0 + i);
      for (int j = 0; j < di; ++j) m[rr + i + static_cast<std::size_t>(j) * ld] = static_cast<double>(x[j]) - mean[j];
    }
    qr_update(m, ld, rr, nb, di);
  }
  std::vector<double> R(static_cast<std::size_t>(di) * di, 0.0);
  for (int j = 0; j < di; ++j)
    for (int i = 0; i < std::min(rr, di); ++i) R[i + static_cast<std::size_t>(j) * di] = m[i + static_cast<std::size_t>(j) * ld];
  return R;
}

template <class T>
pca_spectrum pca_full(const comm& c, matrix_view<const T> X) {
  const detail::global_mean g = checked_global_mean(c, X);
  const std::int64_t d = static_cast<std::int64_t>(g.mean.size());
  const int di = static_cast<int>(d);
  // Local R of the centred rows (column-major d x d, zero rows where this rank had fewer than d
  // rows), on the device that holds them; agreed before the allgather so a failure on one rank
  // (e.g. out of GPU memory) raises everywhere.
  std::vector<double> mine;
  guarded(c, [&] {
    if (X.rows == 0) {
      // An empty block (possibly of shape (0, 0)) contributes a zero R of the agreed width.
      mine.assign(static_cast<std::size_t>(d) * d, 0.0);
    } else if (X.device == device_kind::cuda) {
#ifdef SPMDLEARN_WITH_CUDA
      mine = cuda::centred_r<T>(X.data, X.rows, d, X.stride(), g.mean);
#endif
    } else {
      mine = host_centred_r(X, g.mean);
    }
  });
  std::vector<double> all = c.allgather<double>(mine);
  const int p = c.size(), M = p * di;
  std::vector<double> stack(static_cast<std::size_t>(M) * di);
  for (int r = 0; r < p; ++r)
    for (int j = 0; j < di; ++j)
      for (int i = 0; i < di; ++i)
        stack[r * di + i + static_cast<std::size_t>(j) * M] = all[static_cast<std::size_t>(r) * di * di + i + static_cast<std::size_t>(j) * di];
  // The small factorisations on the GPUs when every rank's rows are there (the same solver on
  // every rank: the same bits everywhere).
  const bool all_gpu = c.allreduce_value<std::int32_t>(X.device == device_kind::cuda ? 1 : 0, reduce_op::min) == 1;
  const dense::where where = all_gpu ? dense::where::gpu : dense::where::host;
  // Replicated factorisations, agreed all the same: one that fails (the data, or a GPU out of
  // memory on one rank) raises on every rank, naming the rank.
  std::vector<double> S, Vt;
  guarded(c, [&] {
    if (M > 0) dense::geqrf(M, di, stack.data(), M, where, "stack of the ranks' R factors");
    std::vector<double> R(static_cast<std::size_t>(di) * di, 0.0);
    for (int j = 0; j < di; ++j)
      for (int i = 0; i <= j && i < M; ++i) R[i + static_cast<std::size_t>(j) * di] = stack[i + static_cast<std::size_t>(j) * M];
    // SVD of R: R = U S Vt; X_c = Q R = (Q U) S Vt.
    dense::svd_square(R, di, S, Vt, where, "R factor of the centred rows");
  });
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

// R = chol(G) (upper, l x l, column-major) of a Gram matrix given by its upper triangle. A Gram
// matrix that Cholesky refuses (dependent columns) gets a small diagonal shift first.
std::vector<double> gram_cholesky(std::vector<double> G, int l) {
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
    if (info != 0) detail::throw_factorization_error("dpotrf", info, l, l, "Gram matrix of the randomized range basis");
  }
  return R;
}

// Orthonormalises the columns of a small host matrix Y (rows x l, column-major) by CholeskyQR2.
void cholqr2_local(std::vector<double>& Y, int rows, int l) {
  const double one = 1.0, zero = 0.0;
  for (int round = 0; round < 2; ++round) {
    std::vector<double> G(static_cast<std::size_t>(l) * l, 0.0);
    if (rows > 0) dsyrk_("U", "T", &l, &rows, &one, Y.data(), &rows, &zero, G.data(), &l);
    const std::vector<double> R = gram_cholesky(std::move(G), l);
    if (rows > 0) dtrsm_("R", "U", "N", "N", &rows, &l, &one, R.data(), &l, Y.data(), &rows);
  }
}

// The host half of the range finder (the same interface as cuda::range_finder): A = X - mean
// (n_r x d, column-major doubles, the whole local block once) and the basis Y = A M (n_r x l).
class host_range_finder {
 public:
  template <class T>
  // The width is the agreed one (mean.size()): an empty block may have shape (0, 0).
  host_range_finder(matrix_view<const T> X, const std::vector<double>& mean)
      : n_(static_cast<int>(X.rows)), d_(static_cast<int>(mean.size())), A_(static_cast<std::size_t>(X.rows) * mean.size()) {
    for (std::int64_t i = 0; i < X.rows; ++i) {
      const T* x = X.row(i);
      for (std::int64_t j = 0; j < X.cols; ++j) A_[i + j * X.rows] = static_cast<double>(x[j]) - mean[j];
    }
  }
  double sum_squares() const {
    double s = 0.0;
    for (double v : A_) s += v * v;
    return s;
  }
  void set_basis(const std::vector<double>& M, int l) {
    l_ = l;
    Y_.assign(static_cast<std::size_t>(n_) * l, 0.0);
    if (n_ > 0) dgemm_("N", "N", &n_, &l_, &d_, &one_, A_.data(), &n_, M.data(), &d_, &zero_, Y_.data(), &n_);
  }
  std::vector<double> basis_gram() const {
    std::vector<double> G(static_cast<std::size_t>(l_) * l_, 0.0);
    if (n_ > 0) dsyrk_("U", "T", &l_, &n_, &one_, Y_.data(), &n_, &zero_, G.data(), &l_);
    return G;
  }
  void basis_solve_upper(const std::vector<double>& R) {
    if (n_ > 0) dtrsm_("R", "U", "N", "N", &n_, &l_, &one_, R.data(), &l_, Y_.data(), &n_);
  }
  std::vector<double> project() const {
    std::vector<double> Z(static_cast<std::size_t>(d_) * l_, 0.0);
    if (n_ > 0) dgemm_("T", "N", &d_, &l_, &n_, &one_, A_.data(), &n_, Y_.data(), &n_, &zero_, Z.data(), &d_);
    return Z;
  }

 private:
  int n_, d_, l_ = 0;
  double one_ = 1.0, zero_ = 0.0;
  std::vector<double> A_, Y_;
};

// Halko et al.'s range finder with power iterations, the rows on this rank's device or host (F):
// every product with A is local, every l x l or d x l result is summed over the ranks, the small
// factorisations are replicated.
template <class Finder>
randomized_spectrum randomized_with(const comm& c, Finder& f, const detail::global_mean& g, std::int64_t k,
                                    std::int64_t oversamples, int n_iter, std::uint64_t seed) {
  const std::int64_t d = static_cast<std::int64_t>(g.mean.size());
  const std::int64_t n = g.rows;
  const int l = static_cast<int>(std::min<std::int64_t>(k + oversamples, std::min<std::int64_t>(n, d)));
  const int di = static_cast<int>(d);
  // Each step's local part is agreed before its collective: a failure on one rank (e.g. CUDA)
  // raises on every rank instead of leaving the others in an allreduce.
  auto summed = [&](auto&& local) {
    std::vector<double> v;
    guarded(c, [&] { v = local(); });
    c.allreduce<double>(v, reduce_op::sum);
    return v;
  };
  // Total variance: Σ_j Σ_i (x_ij - μ_j)² / (n - 1), over all ranks.
  const std::vector<double> ss = summed([&] { return std::vector<double>{f.sum_squares()}; });
  // Ω: d x l standard normal from the seed (identical on every rank).
  std::vector<double> Om(static_cast<std::size_t>(di) * l);
  {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (auto& v : Om) v = normal(rng);
  }
  // Y = A M, then CholeskyQR2 of Y across the ranks. The small factorisations are replicated and
  // agreed all the same (guarded): one that fails raises on every rank, naming the rank.
  auto range = [&](const std::vector<double>& M) {
    guarded(c, [&] { f.set_basis(M, l); });
    for (int round = 0; round < 2; ++round) {
      const std::vector<double> G = summed([&] { return f.basis_gram(); });
      std::vector<double> R;
      guarded(c, [&] { R = gram_cholesky(G, l); });
      guarded(c, [&] { f.basis_solve_upper(R); });
    }
  };
  range(Om);
  std::vector<double> Z;
  for (int it = 0; it < n_iter; ++it) {
    Z = summed([&] { return f.project(); });  // Σ Aᵀ Y (d x l)
    guarded(c, [&] { cholqr2_local(Z, di, l); });
    range(Z);
  }
  // B = Qᵀ A (l x d) = (Aᵀ Q)ᵀ: Z = Σ Aᵀ Q (d x l); the SVD of Zᵀ gives B's.
  Z = summed([&] { return f.project(); });
  std::vector<double> Bm(static_cast<std::size_t>(l) * di);  // l x d column-major
  for (int i = 0; i < l; ++i)
    for (int j = 0; j < di; ++j) Bm[i + static_cast<std::size_t>(j) * l] = Z[j + static_cast<std::size_t>(i) * di];
  const int mn = std::min(l, di);
  std::vector<double> S(mn), Vt(static_cast<std::size_t>(mn) * di);
  guarded(c, [&] {
    int info = 0, lwork = -1, ldu = 1;
    double q = 0, dummy = 0;
    dgesvd_("N", "S", &l, &di, Bm.data(), &l, S.data(), &dummy, &ldu, Vt.data(), &mn, &q, &lwork, &info);
    lwork = std::max(1, static_cast<int>(q));
    std::vector<double> work(lwork);
    dgesvd_("N", "S", &l, &di, Bm.data(), &l, S.data(), &dummy, &ldu, Vt.data(), &mn, work.data(), &lwork, &info);
    if (info != 0) detail::throw_factorization_error("dgesvd", info, l, di, "projected matrix of the randomized range");
  });
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

}  // namespace

template <class T>
randomized_spectrum pca_randomized(const comm& c, matrix_view<const T> X, std::int64_t k,
                                   std::int64_t oversamples, int n_iter, std::uint64_t seed) {
  const detail::global_mean g = checked_global_mean(c, X);
  if (X.device == device_kind::cuda) {
#ifdef SPMDLEARN_WITH_CUDA
    std::unique_ptr<cuda::range_finder> f;
    const std::int64_t d = static_cast<std::int64_t>(g.mean.size());  // (0, 0) blocks: the agreed width
    guarded(c, [&] { f = std::make_unique<cuda::range_finder>(X.data, X.rows, d, X.rows ? X.stride() : d, g.mean); });
    return randomized_with(c, *f, g, k, oversamples, n_iter, seed);
#endif
  }
  host_range_finder f(X, g.mean);
  return randomized_with(c, f, g, k, oversamples, n_iter, seed);
}

template randomized_spectrum pca_randomized<float>(const comm&, matrix_view<const float>, std::int64_t,
                                                   std::int64_t, int, std::uint64_t);
template randomized_spectrum pca_randomized<double>(const comm&, matrix_view<const double>, std::int64_t,
                                                    std::int64_t, int, std::uint64_t);

}  // namespace spmdlearn::decomposition
