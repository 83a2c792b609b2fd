// Linear models and PCA on thread ranks (1..4, uneven, one empty rank): every rank holds the
// same model, equal to an independent reference -- LAPACK's SVD of the whole centred matrix for
// PCA, the exact coefficients of a noiseless linear relation for least squares and ridge, and the
// one-rank fit for logistic regression (the ranks change only the summation order).
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/lapack.hpp"
#include "backend/cpu/skinny_gemm.hpp"
#include "core/threads.hpp"
#include "test_util.hpp"

namespace sl = spmdlearn;

namespace {

class Models : public ::testing::TestWithParam<int> {};

// The PCA reference: dgesvd of the whole centred matrix (x row-major n x d). Vt is column-major
// d x d (row k of Vᵀ at Vt[k + j * d]); info is LAPACK's.
struct centred_svd {
  std::vector<double> mean, S, Vt;
  int info = 0;
};
centred_svd svd_of_centred(const std::vector<double>& x, std::int64_t n, std::int64_t d) {
  centred_svd r;
  r.mean.assign(d, 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) r.mean[j] += x[i * d + j] / n;
  std::vector<double> A(n * d);  // column-major n x d
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) A[i + j * n] = x[i * d + j] - r.mean[j];
  r.S.resize(d);
  r.Vt.resize(d * d);
  std::vector<double> dummy(1);
  int m = static_cast<int>(n), di = static_cast<int>(d), one = 1, lwork = -1;
  double q = 0;
  dgesvd_("N", "A", &m, &di, A.data(), &m, r.S.data(), dummy.data(), &one, r.Vt.data(), &di, &q, &lwork, &r.info);
  lwork = static_cast<int>(q);
  std::vector<double> work(lwork);
  dgesvd_("N", "A", &m, &di, A.data(), &m, r.S.data(), dummy.data(), &one, r.Vt.data(), &di, work.data(), &lwork,
          &r.info);
  return r;
}

TEST_P(Models, PcaFullAndCovarianceEighEqualLapackSvd) {
  const int p = GetParam();
  const std::int64_t n = 3001, d = 9;
  const std::vector<double> x = tu::make_data(n, d, 5);
  const auto off = tu::split_rows(n, p, p > 2 ? 1 : -1);
  const auto [mean, S, Vt, info] = svd_of_centred(x, n, d);
  ASSERT_EQ(info, 0);

  struct out {
    sl::decomposition::pca_spectrum full, eigh;
  };
  auto res = tu::on_threads<out>(p, [&](const sl::comm& c) {
    out o;
    const auto X = tu::block(x, d, off, c.rank());
    o.full = sl::decomposition::pca_full<double>(c, X);
    sl::covariance::state s;
    sl::covariance::partial_fit<double>(c, s, X);
    o.eigh = sl::decomposition::pca_covariance_eigh(s);
    return o;
  });
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(res[r].full.singular, res[0].full.singular) << "rank " << r;
    EXPECT_EQ(res[r].full.components, res[0].full.components) << "rank " << r;
  }
  for (std::int64_t k = 0; k < d; ++k) {
    EXPECT_NEAR(res[0].full.singular[k], S[k], 1e-12 * S[0]) << k;
    EXPECT_NEAR(res[0].eigh.singular[k], S[k], 1e-10 * S[0]) << k;
    // the same direction up to sign, and the sign rule: largest-magnitude entry positive
    double dot = 0.0, big = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      dot += res[0].full.components[k * d + j] * Vt[k + j * d];
      if (std::abs(res[0].full.components[k * d + j]) > std::abs(big)) big = res[0].full.components[k * d + j];
    }
    EXPECT_NEAR(std::abs(dot), 1.0, 1e-9) << k;
    EXPECT_GT(big, 0.0) << k;
  }
}

TEST_P(Models, LeastSquaresAndRidgeRecoverExactCoefficients) {
  const int p = GetParam();
  const std::int64_t n = 2003, d = 6;
  const std::vector<double> x = tu::make_data(n, d, 9);
  const double beta[d] = {1.5, -2.0, 0.25, 3.0, 0.0, -1.0};
  std::vector<double> y(n);
  for (std::int64_t i = 0; i < n; ++i) {
    y[i] = 4.0;
    for (std::int64_t j = 0; j < d; ++j) y[i] += beta[j] * x[i * d + j];
  }
  const auto off = tu::split_rows(n, p, p > 2 ? 1 : -1);
  auto res = tu::on_threads<sl::linear_model::normal_state>(p, [&](const sl::comm& c) {
    sl::linear_model::normal_state s;
    const std::int64_t r = c.rank(), rows = off[r + 1] - off[r];
    sl::linear_model::partial_fit<double>(c, s, tu::block(x, d, off, c.rank()),
                                          {y.data() + off[r], rows, 1}, std::nullopt);
    return s;
  });
  for (int r = 0; r < p; ++r) EXPECT_EQ(res[r].cross, res[0].cross) << "rank " << r;
  const auto ols = sl::linear_model::solve(res[0], {}, true);
  EXPECT_EQ(ols.rank, d);
  for (std::int64_t j = 0; j < d; ++j) EXPECT_NEAR(ols.coef[j], beta[j], 1e-10);
  EXPECT_NEAR(ols.intercept[0], 4.0, 1e-9);
  // Without the spectrum: the Cholesky bound proves the rank full, so no singular values and the
  // same coefficients (the same Cholesky solve).
  const auto quick = sl::linear_model::solve(res[0], {}, true, 1e-6, false, false);
  EXPECT_EQ(quick.rank, d);
  EXPECT_TRUE(quick.singular.empty());
  EXPECT_EQ(quick.coef, ols.coef);
  EXPECT_EQ(quick.intercept, ols.intercept);
  // A duplicated column: the bound cannot hold, so the spectrum is computed and the rank is d - 1.
  {
    sl::linear_model::normal_state dup = res[0];
    const std::int64_t q0 = d + 1;
    for (std::int64_t i = 0; i < q0; ++i) {  // column/row 4 := column/row 3 (beta[4] = 0 keeps y)
      dup.cross[i * q0 + 4] = dup.cross[i * q0 + 3];
      dup.cross[4 * q0 + i] = dup.cross[3 * q0 + i];
    }
    dup.cross[4 * q0 + 4] = dup.cross[3 * q0 + 3];
    dup.mean[4] = dup.mean[3];
    const auto deficient = sl::linear_model::solve(dup, {}, true, 1e-6, false, false);
    EXPECT_EQ(deficient.rank, d - 1);
    EXPECT_EQ(static_cast<std::int64_t>(deficient.singular.size()), d);
    // ...and the minimum-norm solution, exactly as with the spectrum asked for (a Cholesky factor
    // from the failed certificate must not be used).
    const auto full = sl::linear_model::solve(dup, {}, true, 1e-6, false, true);
    EXPECT_EQ(deficient.coef, full.coef);
    EXPECT_EQ(deficient.intercept, full.intercept);
  }
  // Ridge: (A + αI) coef = b on the same state; check the normal equations' residual.
  const double alpha[] = {7.0};
  const auto rid = sl::linear_model::solve(res[0], alpha, true);
  const std::int64_t q = d + 1;
  for (std::int64_t i = 0; i < d; ++i) {
    double lhs = alpha[0] * rid.coef[i];
    for (std::int64_t j = 0; j < d; ++j) lhs += res[0].cross[i * q + j] * rid.coef[j];
    EXPECT_NEAR(lhs, res[0].cross[i * q + d], 1e-9 * std::abs(res[0].cross[i * q + d]) + 1e-9) << i;
  }
}

TEST_P(Models, LogisticRegressionIdenticalOnRanksAndCloseToOneRank) {
  const int p = GetParam();
  const std::int64_t n = 1501, d = 4;
  const std::vector<double> x = tu::make_data(n, d, 13, {0.0, 0.0, 1.0, 0.0, false});
  std::vector<std::int32_t> y(n);
  for (std::int64_t i = 0; i < n; ++i) {
    const double s = x[i * d] - 0.5 * x[i * d + 1] + 0.3 * std::sin(1.7 * i);
    y[i] = s > 0.4 ? 2 : (s > -0.4 ? 1 : 0);
  }
  sl::linear_model::logistic_params prm;
  prm.tol = 1e-10;
  prm.max_iter = 500;
  const auto off = tu::split_rows(n, p, p > 2 ? 1 : -1);
  auto fit = [&](int ranks, const std::vector<std::int64_t>& o) {
    return tu::on_threads<sl::linear_model::logistic_result>(ranks, [&](const sl::comm& c) {
      const std::int64_t r = c.rank(), rows = o[r + 1] - o[r];
      return sl::linear_model::fit_logistic<double>(c, tu::block(x, d, o, c.rank()), {y.data() + o[r], rows}, 3,
                                                    std::nullopt, prm);
    });
  };
  const auto res = fit(p, off);
  const auto ref = fit(1, tu::split_rows(n, 1));
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(res[r].coef, res[0].coef) << "rank " << r;
    EXPECT_EQ(res[r].intercept, res[0].intercept) << "rank " << r;
  }
  EXPECT_TRUE(res[0].converged) << res[0].message;
  for (std::size_t e = 0; e < ref[0].coef.size(); ++e) EXPECT_NEAR(res[0].coef[e], ref[0].coef[e], 1e-7) << e;
}

// Issue #16: a rank passing an empty block of shape (0, 0) -- it need not know n_features --
// used to crash pca_full (an R factor of the block's width) and pca_randomized (a range finder
// of the block's width). Both must give every rank the spectrum of all rows: LAPACK's SVD of the
// whole centred matrix. The empty rank is rank 0 and then the last one; float and double.
template <class T>
void pca_with_a_0x0_block(int p, int empty) {
  const std::int64_t n = 503, d = 9, k = 3;
  const std::vector<double> x = tu::make_data(n, d, 21);
  const std::vector<T> xt = tu::cast<T>(x);
  const auto [mean, S, Vt, info] = svd_of_centred(tu::to_double(xt), n, d);  // of the numbers the ranks hold
  ASSERT_EQ(info, 0);
  double total = 0.0;
  for (double s : S) total += s * s / (n - 1);

  const auto off = tu::split_rows(n, p, empty);
  struct out {
    sl::decomposition::pca_spectrum full;
    sl::decomposition::randomized_spectrum rnd;
  };
  auto res = tu::on_threads<out>(p, [&](const sl::comm& c) {
    out o;
    const auto X = tu::block(xt, d, off, c.rank(), /*zero_zero=*/true);
    o.full = sl::decomposition::pca_full<T>(c, X);
    // k + oversamples = d: the test matrix spans every direction, so the result is exact
    o.rnd = sl::decomposition::pca_randomized<T>(c, X, k, d - k, 2, 7);
    return o;
  });
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(res[r].full.singular, res[0].full.singular) << "rank " << r;
    EXPECT_EQ(res[r].full.components, res[0].full.components) << "rank " << r;
    EXPECT_EQ(res[r].rnd.singular, res[0].rnd.singular) << "rank " << r;
    EXPECT_EQ(res[r].rnd.components, res[0].rnd.components) << "rank " << r;
    EXPECT_EQ(res[r].full.n_features, d) << "rank " << r;
    EXPECT_EQ(res[r].rnd.n_samples, n) << "rank " << r;
  }
  ASSERT_EQ(res[0].full.singular.size(), static_cast<std::size_t>(d));
  ASSERT_EQ(res[0].rnd.singular.size(), static_cast<std::size_t>(k));
  EXPECT_TRUE(tu::near_rel(res[0].full.mean, mean, 1e-12, 1e-12));
  EXPECT_TRUE(tu::near_rel(res[0].rnd.mean, mean, 1e-12, 1e-12));
  EXPECT_NEAR(res[0].rnd.total_variance, total, 1e-10 * total);
  for (std::int64_t e = 0; e < d; ++e) {
    EXPECT_NEAR(res[0].full.singular[e], S[e], 1e-11 * S[0]) << e;
    if (e < k) {
      EXPECT_NEAR(res[0].rnd.singular[e], S[e], 1e-10 * S[0]) << e;
      double dot = 0.0;  // the same direction up to sign
      for (std::int64_t j = 0; j < d; ++j) dot += res[0].rnd.components[e * d + j] * Vt[e + j * d];
      EXPECT_NEAR(std::abs(dot), 1.0, 1e-9) << e;
    }
    double dot = 0.0;
    for (std::int64_t j = 0; j < d; ++j) dot += res[0].full.components[e * d + j] * Vt[e + j * d];
    EXPECT_NEAR(std::abs(dot), 1.0, 1e-9) << e;
  }
}

TEST_P(Models, PcaFullAndRandomizedWithA0x0BlockOnOneRank) {
  const int p = GetParam();
  for (int empty : {0, p - 1}) {
    SCOPED_TRACE("empty rank " + std::to_string(p > 1 ? empty : -1));
    pca_with_a_0x0_block<double>(p, p > 1 ? empty : -1);
    pca_with_a_0x0_block<float>(p, p > 1 ? empty : -1);
  }
}

// The normal equations and the R² score with a rank that passes (0, 0) blocks for X and for y (a
// 1-D empty y in Python): the others' numbers of features and targets are taken, and every
// rank's collectives keep the same sizes.
TEST_P(Models, LeastSquaresAndR2WithA0x0BlockOnOneRank) {
  const int p = GetParam();
  const std::int64_t n = 401, d = 4, t = 2;
  const std::vector<double> x = tu::make_data(n, d, 23);
  std::vector<double> y(n * t), pred(n * t);
  for (std::int64_t i = 0; i < n; ++i) {
    y[i * t] = 1.0 + 2.0 * x[i * d] - x[i * d + 3];
    y[i * t + 1] = -3.0 + 0.5 * x[i * d + 1] + x[i * d + 2];
    pred[i * t] = y[i * t] + std::sin(0.3 * i);
    pred[i * t + 1] = y[i * t + 1] + 0.5 * std::cos(0.7 * i);
  }
  // R² reference, per target, in long double
  std::vector<double> r2_ref(t);
  for (std::int64_t k = 0; k < t; ++k) {
    tu::ld mean = 0, sst = 0, ssr = 0;
    for (std::int64_t i = 0; i < n; ++i) mean += y[i * t + k];
    mean /= n;
    for (std::int64_t i = 0; i < n; ++i) {
      sst += (y[i * t + k] - mean) * (y[i * t + k] - mean);
      ssr += (y[i * t + k] - pred[i * t + k]) * (y[i * t + k] - pred[i * t + k]);
    }
    r2_ref[k] = static_cast<double>(1 - ssr / sst);
  }
  const int empty = p > 1 ? 0 : -1;
  const auto off = tu::split_rows(n, p, empty);
  struct out {
    sl::linear_model::normal_state s;
    std::vector<double> r2;
  };
  for (bool x_zero_zero : {true, false}) {  // X of shape (0, 0) or (0, d); y always (0, 0)
    SCOPED_TRACE(x_zero_zero ? "X (0, 0)" : "X (0, d)");
    auto res = tu::on_threads<out>(p, [&](const sl::comm& c) {
      out o;
      const int r = c.rank();
      const auto X = tu::block(x, d, off, r, x_zero_zero);
      const auto Y = tu::block(y, t, off, r, /*zero_zero=*/true);
      const auto P = tu::block(pred, t, off, r, /*zero_zero=*/true);
      sl::linear_model::partial_fit<double>(c, o.s, X, Y, std::nullopt);
      o.r2 = sl::linear_model::r2_score<double>(c, Y, P, std::nullopt);
      return o;
    });
    for (int r = 0; r < p; ++r) {
      EXPECT_EQ(res[r].s.cross, res[0].s.cross) << "rank " << r;
      EXPECT_EQ(res[r].s.n_targets, t) << "rank " << r;
      EXPECT_EQ(res[r].s.n_features, d) << "rank " << r;
      EXPECT_EQ(res[r].r2, res[0].r2) << "rank " << r;
    }
    const auto ols = sl::linear_model::solve(res[0].s, {}, true);
    const double beta[t][d] = {{2.0, 0.0, 0.0, -1.0}, {0.0, 0.5, 1.0, 0.0}};
    for (std::int64_t k = 0; k < t; ++k)
      for (std::int64_t j = 0; j < d; ++j) EXPECT_NEAR(ols.coef[k * d + j], beta[k][j], 1e-10) << k << "," << j;
    EXPECT_NEAR(ols.intercept[0], 1.0, 1e-9);
    EXPECT_NEAR(ols.intercept[1], -3.0, 1e-9);
    EXPECT_TRUE(tu::near_rel(res[0].r2, r2_ref, 1e-12, 1e-12));
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, Models, ::testing::Values(1, 2, 3, 4));

}  // namespace

// The AVX-512 products of the logistic loss (2..8 classes) against a float64 loop: every class
// count, row counts around the 4-row blocks and the 8-row prefetch, a row stride wider than d,
// and an intercept column in Θ (ld = d + 1). Skips where the CPU has no AVX-512.
TEST(SkinnyGemm, LogitsAndGradientMatchALoop) {
  if (!spmdlearn::cpu::skinny_gemm_available(5)) GTEST_SKIP() << "no AVX-512F on this CPU";
  for (std::int64_t K = 2; K <= 8; ++K)
    for (std::int64_t nb : {1, 3, 4, 7, 12, 13, 37})
      for (std::int64_t d : {1, 5, 50, 130}) {
        ASSERT_TRUE(spmdlearn::cpu::skinny_gemm_available(K));
        const std::int64_t lx = d + 3, ld = d + 1;
        std::vector<double> X(nb * lx), theta(K * ld), R(nb * K, -7.0), G(K * ld), scratch(8 * d);
        for (std::size_t e = 0; e < X.size(); ++e) X[e] = std::sin(0.37 * static_cast<double>(e) + 0.1 * K);
        for (std::size_t e = 0; e < theta.size(); ++e) theta[e] = std::cos(0.91 * static_cast<double>(e));
        for (std::size_t e = 0; e < G.size(); ++e) G[e] = 0.5 * static_cast<double>(e);
        const std::vector<double> G0 = G;
        spmdlearn::cpu::skinny_logits(nb, d, K, X.data(), lx, theta.data(), ld, R.data(), scratch.data());
        for (std::int64_t i = 0; i < nb; ++i)
          for (std::int64_t k = 0; k < K; ++k) {
            double ref = 0.0;
            for (std::int64_t j = 0; j < d; ++j) ref += X[i * lx + j] * theta[k * ld + j];
            ASSERT_NEAR(R[i * K + k], ref, 1e-12 * (1.0 + std::abs(ref))) << "K=" << K << " nb=" << nb << " d=" << d;
          }
        spmdlearn::cpu::skinny_gradient(nb, d, K, X.data(), lx, R.data(), G.data(), ld, scratch.data());
        for (std::int64_t k = 0; k < K; ++k) {
          for (std::int64_t j = 0; j < d; ++j) {
            double ref = G0[k * ld + j];
            for (std::int64_t i = 0; i < nb; ++i) ref += R[i * K + k] * X[i * lx + j];
            ASSERT_NEAR(G[k * ld + j], ref, 1e-12 * (1.0 + std::abs(ref))) << "K=" << K << " nb=" << nb << " d=" << d;
          }
          ASSERT_EQ(G[k * ld + d], G0[k * ld + d]) << "the intercept column is the caller's";
        }
      }
  EXPECT_FALSE(spmdlearn::cpu::skinny_gemm_available(1));
  EXPECT_FALSE(spmdlearn::cpu::skinny_gemm_available(9));
}

// The AVX-512 Gram tiles (dsyrk("U", "N")'s contract) against a float64 loop: column counts around
// the 8- and 24-wide tiles, the lower triangle left alone. Skips where the CPU has no AVX-512.
TEST(SkinnyGemm, GramUpperMatchesALoop) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "no AVX-512F on this CPU";
  for (std::int64_t p : {1, 7, 8, 9, 23, 24, 25, 33, 64, 101, 128})
    for (std::int64_t nb : {1, 5, 300}) {
      std::vector<double> Z(nb * p), S(p * p);
      for (std::size_t e = 0; e < Z.size(); ++e) Z[e] = std::sin(0.013 * static_cast<double>(e) * (1 + p % 3)) + 0.2;
      for (std::size_t e = 0; e < S.size(); ++e) S[e] = 0.25 * static_cast<double>(e);
      const std::vector<double> S0 = S;
      spmdlearn::cpu::gram_upper_acc(nb, p, Z.data(), S.data());
      for (std::int64_t b = 0; b < p; ++b)
        for (std::int64_t a = 0; a < p; ++a) {
          if (a > b) {
            ASSERT_EQ(S[a + b * p], S0[a + b * p]) << "the lower triangle is not the kernel's";
            continue;
          }
          double ref = S0[a + b * p];
          for (std::int64_t r = 0; r < nb; ++r) ref += Z[r * p + a] * Z[r * p + b];
          ASSERT_NEAR(S[a + b * p], ref, 1e-12 * (1.0 + std::abs(ref))) << "p=" << p << " nb=" << nb << " (" << a << "," << b << ")";
        }
    }
  EXPECT_FALSE(spmdlearn::cpu::gram_kernel_available(129));
}

// blas_serial_scope: one BLAS thread inside the scope for small orders, the previous count after;
// large orders keep the threads. Runs where OpenBLAS is the BLAS (as on CI and the GPU machines).
TEST(BlasSerialScope, SmallOrdersRunSingleThreadedAndRestore) {
  using getter = int (*)();
  using setter = void (*)(int);
  auto get = reinterpret_cast<getter>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  auto set = reinterpret_cast<setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!get || !set) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  const int before = get();
  set(2);
  if (get() != 2) {
    set(before);
    GTEST_SKIP() << "this OpenBLAS is single-threaded";
  }
  {
    const sl::detail::blas_serial_scope serial(100);
    EXPECT_EQ(get(), 1);
  }
  EXPECT_EQ(get(), 2);
  {
    const sl::detail::blas_serial_scope big(sl::detail::blas_serial_scope::serial_max + 1);
    EXPECT_EQ(get(), 2);
  }
  set(before);
}
