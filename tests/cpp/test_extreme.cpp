// Data near the float range (issue #16, item 5) on thread ranks (1..4, uneven, one empty rank),
// and the errors of failed factorisations. References: the long-double statistics of test_util
// (whose exponent range holds 1e±600, so they overflow to inf and underflow to 0 exactly where
// float64's numpy does), and the exact coefficients of a noiseless linear relation, which a
// power-of-two scaling of the columns maps exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/lapack.hpp"
#include "core/cross_merge.hpp"
#include "core/factorization_error.hpp"
#include "test_util.hpp"

namespace sl = spmdlearn;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

TEST(ScaleExponent, ZeroInsideTheBandElseTheMagnitude) {
  EXPECT_EQ(sl::detail::scale_exponent(0.0), sl::detail::no_exponent);
  EXPECT_EQ(sl::detail::scale_exponent(std::nan("")), sl::detail::no_exponent);
  EXPECT_EQ(sl::detail::scale_exponent(1.0), 0);
  EXPECT_EQ(sl::detail::scale_exponent(0x1p400), 0);
  EXPECT_EQ(sl::detail::scale_exponent(0x1p-400), 0);
  EXPECT_EQ(sl::detail::scale_exponent(0x1p401), 402);
  EXPECT_EQ(sl::detail::scale_exponent(0x1.8p-401), -400);
  EXPECT_EQ(sl::detail::scale_exponent(1e300), std::ilogb(1e300) + 1);
  EXPECT_EQ(sl::detail::scale_exponent(4e-320), std::ilogb(4e-320) + 1);  // subnormal
}

// Column j of x multiplied by 2^k[j] (exact).
std::vector<double> scaled(std::vector<double> x, std::int64_t d, const std::vector<int>& k) {
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::ldexp(x[i], k[i % d]);
  return x;
}

class Extreme : public ::testing::TestWithParam<int> {};

TEST_P(Extreme, NormalEquationsRecoverExactCoefficientsAtAnyScale) {
  const int p = GetParam();
  const std::int64_t n = 1501, d = 4;
  const std::vector<double> x = tu::make_data(n, d, 21);
  const double beta[d] = {1.5, -2.0, 0.25, 3.0};
  std::vector<double> y(n);
  for (std::int64_t i = 0; i < n; ++i) {
    y[i] = 4.0;
    for (std::int64_t j = 0; j < d; ++j) y[i] += beta[j] * x[i * d + j];
  }
  const auto off = tu::split_rows(n, p, p > 2 ? 1 : -1);
  auto fit = [&](const std::vector<double>& xs) {
    auto res = tu::on_threads<sl::linear_model::normal_state>(p, [&](const sl::comm& c) {
      sl::linear_model::normal_state s;
      const std::int64_t r = c.rank(), rows = off[r + 1] - off[r];
      sl::linear_model::partial_fit<double>(c, s, tu::block(xs, d, off, c.rank()), {y.data() + off[r], rows, 1},
                                            std::nullopt);
      return s;
    });
    for (int r = 0; r < p; ++r) {
      EXPECT_EQ(res[r].cross, res[0].cross) << "rank " << r;
      EXPECT_EQ(res[r].exponent, res[0].exponent) << "rank " << r;
    }
    return res[0];
  };
  const auto plain = fit(x);
  EXPECT_EQ(plain.exponent, std::vector<int>(d + 1, 0));  // ordinary data: nothing scaled
  const auto ref = sl::linear_model::solve(plain, {}, true);
  for (int k : {997, 500, -500, -996}) {
    SCOPED_TRACE("columns scaled by 2^" + std::to_string(k));
    const auto s = fit(scaled(x, d, std::vector<int>(d, k)));
    for (std::int64_t j = 0; j < d; ++j) EXPECT_NEAR(s.exponent[j], k, 3);
    // Least squares: coef_j 2^k = beta_j, the singular values scale by 2^k.
    for (bool spectrum : {true, false}) {
      const auto ols = sl::linear_model::solve(s, {}, true, 1e-6, false, spectrum);
      EXPECT_EQ(ols.rank, d);
      for (std::int64_t j = 0; j < d; ++j) EXPECT_NEAR(std::ldexp(ols.coef[j], k), beta[j], 1e-10);
      EXPECT_NEAR(ols.intercept[0], 4.0, 1e-9);
      if (spectrum)
        for (std::int64_t j = 0; j < d; ++j)
          EXPECT_NEAR(std::ldexp(ols.singular[j], -k) / ref.singular[j], 1.0, 1e-12);
    }
    // Without an intercept: the raw moments, whose scale is the mean's.
    const auto raw = sl::linear_model::solve(s, {}, false);
    const auto raw_ref = sl::linear_model::solve(plain, {}, false);
    for (std::int64_t j = 0; j < d; ++j)
      EXPECT_NEAR(std::ldexp(raw.coef[j], k) / raw_ref.coef[j], 1.0, 1e-10);
    // Ridge: alpha 2^2k on X 2^k is alpha on X (where alpha 2^2k is a double).
    if (std::abs(k) <= 500) {
      const double a = 7.0, ak = std::ldexp(a, 2 * k);
      const auto r0 = sl::linear_model::solve(plain, std::span<const double>(&a, 1), true);
      const auto rk = sl::linear_model::solve(s, std::span<const double>(&ak, 1), true);
      for (std::int64_t j = 0; j < d; ++j) EXPECT_NEAR(std::ldexp(rk.coef[j], k) / r0.coef[j], 1.0, 1e-10);
      EXPECT_NEAR(rk.intercept[0], r0.intercept[0], 1e-9);
    }
  }
  // One column at 2^997, the others ordinary: the ridge penalty is negligible for that column
  // and exact for the others, and nothing overflows.
  const auto mixed = fit(scaled(x, d, {997, 0, 0, 0}));
  EXPECT_EQ(mixed.exponent[1], 0);
  const double a = 1e-8;
  const auto rm = sl::linear_model::solve(mixed, std::span<const double>(&a, 1), true);
  EXPECT_NEAR(std::ldexp(rm.coef[0], 997), beta[0], 1e-6);
  for (std::int64_t j = 1; j < d; ++j) EXPECT_NEAR(rm.coef[j], beta[j], 1e-6);
}

// A column that is +2^997 in the first half of the rows and -2^997 in the second: each rank and
// each round holds (almost) no spread in it, so only the offsets between the groups' means set
// its exponent -- in the merge over the ranks and in the merge into the previous rounds.
TEST_P(Extreme, ExponentsFollowTheOffsetsBetweenRanksAndRounds) {
  const int p = GetParam();
  const std::int64_t n = 600, d = 3;
  std::vector<double> x = tu::make_data(n, d, 13);
  const double beta[d] = {0.75, -2.0, 0.5};
  std::vector<double> y(n);
  for (std::int64_t i = 0; i < n; ++i) {
    const double sign = i < n / 2 ? 1.0 : -1.0;
    x[i * d] = sign * 0x1p997;
    y[i] = 4.0 + beta[0] * sign + beta[1] * x[i * d + 1] + beta[2] * x[i * d + 2];
  }
  const auto off = tu::split_rows(n, p, p > 2 ? 1 : -1);
  // (Least squares would see the ordinary columns below its rank cutoff, as scikit-learn's lstsq
  // does; a small ridge penalty has one solution, the exact coefficients to ~1e-11.)
  const double a = 1e-8;
  auto check = [&](const sl::linear_model::normal_state& s) {
    EXPECT_GE(s.exponent[0], 990);
    EXPECT_EQ(s.exponent[1], 0);
    const auto rid = sl::linear_model::solve(s, std::span<const double>(&a, 1), true);
    EXPECT_NEAR(std::ldexp(rid.coef[0], 997), beta[0], 1e-9);
    for (std::int64_t j = 1; j < d; ++j) EXPECT_NEAR(rid.coef[j], beta[j], 1e-9);
    EXPECT_NEAR(rid.intercept[0], 4.0, 1e-8);
  };
  // One fit over the ranks.
  auto one = tu::on_threads<sl::linear_model::normal_state>(p, [&](const sl::comm& c) {
    sl::linear_model::normal_state s;
    const std::int64_t r = c.rank(), rows = off[r + 1] - off[r];
    sl::linear_model::partial_fit<double>(c, s, tu::block(x, d, off, r), {y.data() + off[r], rows, 1}, std::nullopt);
    return s;
  });
  for (int r = 1; r < p; ++r) EXPECT_EQ(one[r].cross, one[0].cross) << "rank " << r;
  check(one[0]);
  // Two rounds, the first with the +2^997 rows only, each split over the ranks.
  auto two = tu::on_threads<sl::linear_model::normal_state>(p, [&](const sl::comm& c) {
    sl::linear_model::normal_state s;
    for (std::int64_t h = 0; h < 2; ++h) {
      const auto o = tu::split_rows(n / 2, p, -1);
      const std::int64_t r = c.rank(), lo = h * (n / 2) + o[r], rows = o[r + 1] - o[r];
      sl::linear_model::partial_fit<double>(c, s, {x.data() + lo * d, rows, d}, {y.data() + lo, rows, 1},
                                            std::nullopt);
    }
    return s;
  });
  for (int r = 1; r < p; ++r) EXPECT_EQ(two[r].cross, two[0].cross) << "rank " << r;
  check(two[0]);
}

TEST_P(Extreme, StatisticsOverflowToInfAndUnderflowToZeroAsFloat64Does) {
  const int p = GetParam();
  const std::int64_t n = 9001, d = 3;  // more rows than one chunk
  const std::vector<double> x = tu::make_data(n, d, 5);
  const auto off = tu::split_rows(n, p, p > 2 ? 0 : -1);
  // 2^1015: the chunks' sums overflow too (the mean does not).
  for (int k : {1015, 997, 500, -996}) {
    SCOPED_TRACE("scaled by 2^" + std::to_string(k));
    const std::vector<double> xs = scaled(x, d, std::vector<int>(d, k));
    const auto ref = tu::reference_stats(xs, n, d);
    auto res = tu::on_threads<sl::basic_statistics::result>(p, [&](const sl::comm& c) {
      return sl::basic_statistics::compute<double>(c, tu::block(xs, d, off, c.rank()));
    });
    for (int r = 1; r < p; ++r) EXPECT_EQ(res[r].variance, res[0].variance) << "rank " << r;
    const auto& got = res[0];
    auto check = [&](const char* what, const std::vector<double>& g, const std::vector<double>& e) {
      for (std::int64_t j = 0; j < d; ++j) {
        if (std::isinf(e[j]) || e[j] == 0.0)
          EXPECT_EQ(g[j], e[j]) << what << "[" << j << "]";
        else
          EXPECT_NEAR(g[j] / e[j], 1.0, 1e-12) << what << "[" << j << "]";
      }
    };
    check("mean", got.mean, ref.mean);
    check("min", got.min, ref.min);
    check("max", got.max, ref.max);
    check("sum", got.sum, ref.sum);
    check("variance", got.variance, ref.variance);
    check("sum_squares", got.sum_squares, ref.sum_squares);
    check("sum_squares_centered", got.sum_squares_centered, ref.sum_squares_centered);
  }
}

TEST_P(Extreme, CovarianceThatOverflowsRaisesOnEveryRankAndKeepsTheState) {
  const int p = GetParam();
  const std::int64_t n = 200, d = 3;
  const std::vector<double> x = tu::make_data(n, d, 8);
  const std::vector<double> big = scaled(x, d, {0, 1000, 0});
  const auto off = tu::split_rows(n, p, p > 2 ? 2 : -1);
  std::vector<sl::covariance::state> kept(p);
  const auto errors = tu::catch_on_threads(p, [&](const sl::comm& c) {
    sl::covariance::partial_fit<double>(c, kept[c.rank()], tu::block(x, d, off, c.rank()));
    sl::covariance::partial_fit<double>(c, kept[c.rank()], tu::block(big, d, off, c.rank()));
  });
  EXPECT_TRUE(tu::all_threw(errors, sl::error_kind::invalid_argument, 0, "feature 1 overflows the float64 range"));
  EXPECT_NE(errors[0].what.find("Scale the feature down"), std::string::npos) << errors[0].what;
  for (int r = 0; r < p; ++r) EXPECT_EQ(kept[r].n_rows, n) << "the failed round must leave the state";
}

INSTANTIATE_TEST_SUITE_P(Ranks, Extreme, ::testing::Values(1, 2, 3, 4));

TEST(FactorizationError, NamesTheRoutineTheMatrixAndWhatToDo) {
  auto message = [](const char* routine, int info) {
    try {
      sl::detail::throw_factorization_error(routine, info, 5, 4, "normal-equations matrix X^T X");
    } catch (const sl::error& e) {
      return std::make_pair(e.kind(), std::string(e.what()));
    }
    return std::make_pair(sl::error_kind::none, std::string());
  };
  const auto [k1, m1] = message("dsyevd", 3);
  EXPECT_EQ(k1, sl::error_kind::invalid_argument);
  for (const char* part : {"dsyevd", "eigen-decomposition", "5 x 4 normal-equations matrix X^T X", "info=3",
                           "scale your features", "constant or duplicated columns"})
    EXPECT_NE(m1.find(part), std::string::npos) << part << " in: " << m1;
  const auto [k2, m2] = message("dpotrf", 2);
  EXPECT_EQ(k2, sl::error_kind::invalid_argument);
  EXPECT_NE(m2.find("leading minor of order 2 is not positive definite"), std::string::npos) << m2;
  EXPECT_NE(message("cusolverDnDgesvd", 1).second.find("singular value decomposition"), std::string::npos);
  EXPECT_NE(message("dgeqrf", 1).second.find("QR factorisation"), std::string::npos);
  const auto [k3, m3] = message("dgeqrf", -4);
  EXPECT_EQ(k3, sl::error_kind::runtime);
  EXPECT_NE(m3.find("argument 4 was invalid"), std::string::npos) << m3;
}

TEST(FactorizationError, EighOfANonFiniteMatrixRaisesIt) {
  std::vector<double> a = {1, 2, 0, 2, std::nan(""), 1, 0, 1, 3};
  const auto c = tu::catch_error([&] { sl::cpu::eigh(a, 3, true, "test matrix"); });
  ASSERT_TRUE(c.thrown);
  EXPECT_EQ(c.kind, sl::error_kind::invalid_argument);
  EXPECT_NE(c.what.find("dsyevd"), std::string::npos) << c.what;
  EXPECT_NE(c.what.find("3 x 3 test matrix"), std::string::npos) << c.what;
}

TEST(FactorizationError, ReplicatedFailureOnOneRankRaisesOnEveryRankNamingIt) {
  // A factorisation that fails on rank 1 alone (as cuSOLVER out of memory could), agreed as the
  // callers of replicated factorisations do: no rank is left waiting, every rank names rank 1.
  const int p = 3;
  const auto errors = tu::catch_on_threads(p, [&](const sl::comm& c) {
    sl::guarded(c, [&] {
      std::vector<double> a = {1, 2, 0, 2, c.rank() == 1 ? std::nan("") : 4.0, 1, 0, 1, 3};
      sl::cpu::eigh(a, 3, true, "replicated matrix");
    });
  });
  EXPECT_TRUE(tu::all_threw(errors, sl::error_kind::invalid_argument, 1, "dsyevd"));
}

TEST(NormalEquations, NonFiniteStateRaisesNamingTheColumn) {
  sl::linear_model::normal_state s;
  s.n_features = 2;
  s.n_targets = 1;
  s.n_rows = 10;
  s.weight = 10.0;
  s.mean = {0.0, 0.0, 0.0};
  s.cross = {1, 0, 0, 0, inf, 0, 0, 0, 1};
  const auto c = tu::catch_error([&] { sl::linear_model::solve(s, {}, true); });
  ASSERT_TRUE(c.thrown);
  EXPECT_EQ(c.kind, sl::error_kind::invalid_argument);
  EXPECT_NE(c.what.find("cross-products of feature 1"), std::string::npos) << c.what;
  EXPECT_NE(c.what.find("scale the features"), std::string::npos) << c.what;
}

}  // namespace
