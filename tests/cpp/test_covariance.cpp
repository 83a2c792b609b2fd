// covariance: parity of location/covariance with a long-double reference over every split of the
// rows, pinvh (Moore-Penrose conditions), mahalanobis, score, incremental fits and bad input.
#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace sl = spmdlearn;
namespace cv = spmdlearn::covariance;

namespace {

constexpr std::int64_t N = 1000, D = 7;

using tu::tol;

std::vector<double> flatten(const cv::result& r) {
  std::vector<double> out(r.location);
  out.insert(out.end(), r.covariance.begin(), r.covariance.end());
  out.insert(out.end(), r.precision.begin(), r.precision.end());
  return out;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// max_ij |A_ij - B_ij| for a long-double product against a double matrix.
double max_diff(const std::vector<tu::ld>& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

std::vector<double> identity(std::int64_t d) {
  std::vector<double> e(d * d, 0.0);
  for (std::int64_t i = 0; i < d; ++i) e[i * d + i] = 1.0;
  return e;
}

// Checks the four Moore-Penrose conditions of P = A⁺ for a symmetric A.
void expect_pseudo_inverse(const std::vector<double>& a, const std::vector<double>& p, std::int64_t d,
                           double rtol) {
  const double sa = max_abs(a), sp = max_abs(p);
  const auto ap = tu::matmul(a, p, d);
  std::vector<double> apd(ap.begin(), ap.end());
  const auto pa = tu::matmul(p, a, d);
  std::vector<double> pad(pa.begin(), pa.end());
  EXPECT_LE(max_diff(tu::matmul(apd, a, d), a), rtol * sa) << "A A+ A != A";
  EXPECT_LE(max_diff(tu::matmul(pad, p, d), p), rtol * sp) << "A+ A A+ != A+";
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      EXPECT_NEAR(apd[i * d + j], apd[j * d + i], rtol) << "A A+ not symmetric";
      EXPECT_NEAR(p[i * d + j], p[j * d + i], rtol * sp) << "A+ not symmetric";
    }
}

template <class T>
std::vector<cv::result> compute_on_threads(int p, const std::vector<T>& x, std::int64_t d,
                                           const std::vector<std::int64_t>& off, bool zero_zero,
                                           cv::params prm = {}) {
  return tu::on_threads<cv::result>(p, [&](const sl::comm& c) {
    return cv::compute<T>(c, tu::block(x, d, off, c.rank(), zero_zero), prm);
  });
}

void expect_replicated(const std::vector<cv::result>& res, const std::string& where) {
  const auto first = flatten(res[0]);
  for (std::size_t r = 1; r < res.size(); ++r)
    EXPECT_TRUE(flatten(res[r]) == first) << where << ": rank " << r << " differs from rank 0";
}

// Random symmetric matrix Q diag(lambda) Qᵀ (Q from Gram-Schmidt of a random matrix).
std::vector<double> sym_with_eigenvalues(const std::vector<double>& lambda, std::uint64_t seed) {
  const std::int64_t d = static_cast<std::int64_t>(lambda.size());
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  std::vector<tu::ld> q(d * d);  // columns
  for (auto& v : q) v = nd(rng);
  for (std::int64_t k = 0; k < d; ++k) {
    for (std::int64_t m = 0; m < k; ++m) {
      tu::ld dot = 0;
      for (std::int64_t i = 0; i < d; ++i) dot += q[i * d + k] * q[i * d + m];
      for (std::int64_t i = 0; i < d; ++i) q[i * d + k] -= dot * q[i * d + m];
    }
    tu::ld nrm = 0;
    for (std::int64_t i = 0; i < d; ++i) nrm += q[i * d + k] * q[i * d + k];
    nrm = std::sqrt(nrm);
    for (std::int64_t i = 0; i < d; ++i) q[i * d + k] /= nrm;
  }
  std::vector<double> a(d * d);
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      tu::ld s = 0;
      for (std::int64_t k = 0; k < d; ++k) s += q[i * d + k] * lambda[k] * q[j * d + k];
      a[i * d + j] = static_cast<double>(s);
    }
  for (std::int64_t i = 0; i < d; ++i)  // exactly symmetric
    for (std::int64_t j = 0; j < i; ++j) a[i * d + j] = a[j * d + i];
  return a;
}

// -(Σ test_cov ∘ P - logdet P + d log 2π) / 2 with test_cov = (X - loc)ᵀ (X - loc) / n.
double reference_score(const std::vector<double>& x, std::int64_t n, std::int64_t d,
                       const std::vector<double>& loc, const std::vector<double>& prec) {
  tu::ld tr = 0;
  for (std::int64_t a = 0; a < d; ++a)
    for (std::int64_t b = 0; b < d; ++b) {
      tu::ld s = 0;
      for (std::int64_t i = 0; i < n; ++i)
        s += (static_cast<tu::ld>(x[i * d + a]) - loc[a]) * (static_cast<tu::ld>(x[i * d + b]) - loc[b]);
      tr += s / n * prec[a * d + b];
    }
  int sign = 0;
  const tu::ld ld_p = tu::logdet(prec, d, &sign);
  EXPECT_EQ(sign, 1);
  return static_cast<double>(-(tr - ld_p + d * std::log(2 * std::numbers::pi_v<tu::ld>)) / 2);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// pinvh (local).

TEST(CovariancePinvh, InverseOfWellConditionedMatrix) {
  const std::vector<double> lambda{4.0, 2.5, 1.0, 0.7, 0.5, 0.25};
  const std::int64_t d = 6;
  const auto a = sym_with_eigenvalues(lambda, 3);
  const auto p = cv::pinvh(a, d, sl::dtype::float64);
  EXPECT_LE(max_diff(tu::matmul(p, a, d), identity(d)), 1e-13);
  EXPECT_LE(max_diff(tu::matmul(a, p, d), identity(d)), 1e-13);
  // logdet(P) = -Σ log λ.
  tu::ld want = 0;
  for (double l : lambda) want -= std::log(static_cast<tu::ld>(l));
  EXPECT_NEAR(static_cast<double>(tu::logdet(p, d)), static_cast<double>(want), 1e-12);
}

TEST(CovariancePinvh, RankDeficientSatisfiesPenroseConditions) {
  const std::int64_t d = 6;
  const auto a = sym_with_eigenvalues({3.0, 1.5, 0.5, 0.0, 0.0, 0.0}, 7);
  const auto p = cv::pinvh(a, d, sl::dtype::float64);
  expect_pseudo_inverse(a, p, d, 1e-12);
  // The pseudo-inverse has the inverted non-zero eigenvalues: trace(P) = 1/3 + 1/1.5 + 1/0.5.
  double tr = 0;
  for (std::int64_t i = 0; i < d; ++i) tr += p[i * d + i];
  EXPECT_NEAR(tr, 1 / 3.0 + 1 / 1.5 + 1 / 0.5, 1e-11);
  // rank(A A+) = 3.
  const auto ap = tu::matmul(a, p, d);
  tu::ld tr_ap = 0;
  for (std::int64_t i = 0; i < d; ++i) tr_ap += ap[i * d + i];
  EXPECT_NEAR(static_cast<double>(tr_ap), 3.0, 1e-12);
}

TEST(CovariancePinvh, Float32CutoffDropsTinyEigenvalues) {
  const std::int64_t d = 3;
  const auto a = sym_with_eigenvalues({1.0, 0.5, 1e-9}, 9);
  // float64: 1e-9 is far above 3 * 2.2e-16, so it is inverted.
  const auto p64 = cv::pinvh(a, d, sl::dtype::float64);
  double tr64 = 0, tr32 = 0;
  const auto p32 = cv::pinvh(a, d, sl::dtype::float32);
  for (std::int64_t i = 0; i < d; ++i) {
    tr64 += p64[i * d + i];
    tr32 += p32[i * d + i];
  }
  EXPECT_NEAR(tr64, 1.0 + 2.0 + 1e9, 1e9 * 1e-6);
  // float32: 1e-9 < 3 * 1.2e-7, dropped.
  EXPECT_NEAR(tr32, 3.0, 1e-6);
  expect_pseudo_inverse(a, p32, d, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Thread ranks.

template <class T>
class CovarianceThreads : public ::testing::Test {};
using Floating = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CovarianceThreads, Floating);

TYPED_TEST(CovarianceThreads, ParityOverUnevenSplitsWithEmptyRank) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 1234));
  const auto x = tu::to_double(xt);
  const auto ref = tu::reference_cov(x, N, D);
  for (int p = 1; p <= 4; ++p) {
    std::vector<int> empties{-1};
    if (p > 1) empties.insert(empties.end(), {0, p - 1});
    if (p > 2) empties.push_back(1);
    for (int empty : empties)
      for (bool zz : {false, true}) {
        if (empty < 0 && zz) continue;
        const std::string where = "p=" + std::to_string(p) + " empty=" + std::to_string(empty) + (zz ? " (0,0)" : " (0,d)");
        const auto res = compute_on_threads<T>(p, xt, D, tu::split_rows(N, p, empty), zz);
        EXPECT_EQ(res[0].n_features, D);
        EXPECT_TRUE(tu::near_rel(res[0].location, ref.location, tol<T>())) << where;
        EXPECT_TRUE(tu::near_cov(res[0].covariance, ref.covariance, D, tol<T>())) << where;
        // A well-conditioned covariance: its precision is the inverse.
        EXPECT_LE(max_diff(tu::matmul(res[0].precision, res[0].covariance, D), identity(D)), 1e-10) << where;
        expect_replicated(res, where);
      }
  }
}

TYPED_TEST(CovarianceThreads, ManyChunksPerRank) {
  using T = TypeParam;
  const std::int64_t n = 20000, d = 20;  // 6553 rows per chunk: several chunks per rank
  const auto xt = tu::cast<T>(tu::make_data(n, d, 4));
  const auto ref = tu::reference_cov(tu::to_double(xt), n, d);
  for (int p : {1, 2}) {
    const auto res = compute_on_threads<T>(p, xt, d, tu::split_rows(n, p), false, {false, false});
    EXPECT_TRUE(tu::near_rel(res[0].location, ref.location, tol<T>())) << p;
    EXPECT_TRUE(tu::near_cov(res[0].covariance, ref.covariance, d, tol<T>())) << p;
    EXPECT_TRUE(res[0].precision.empty());  // store_precision = false
    expect_replicated(res, "p=" + std::to_string(p));
  }
}

TYPED_TEST(CovarianceThreads, AssumeCentered) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 606));
  const auto ref = tu::reference_cov(tu::to_double(xt), N, D, /*assume_centered=*/true);
  for (int p = 1; p <= 4; ++p) {
    const auto res = compute_on_threads<T>(p, xt, D, tu::split_rows(N, p, p > 1 ? p - 1 : -1), true, {true, true});
    EXPECT_EQ(res[0].location, std::vector<double>(D, 0.0));
    EXPECT_TRUE(tu::near_cov(res[0].covariance, ref.covariance, D, tol<T>())) << p;
    EXPECT_LE(max_diff(tu::matmul(res[0].precision, res[0].covariance, D), identity(D)), 1e-10);
    expect_replicated(res, "p=" + std::to_string(p));
  }
}

TEST(CovarianceThreads2, RankDeficientDataGivesPseudoInverse) {
  // Column 3 = column 0 + column 1: a singular covariance.
  auto x = tu::make_data(N, D, 8);
  for (std::int64_t i = 0; i < N; ++i) x[i * D + 3] = x[i * D + 0] + x[i * D + 1];
  const auto ref = tu::reference_cov(x, N, D);
  for (int p = 1; p <= 3; ++p) {
    const auto res = compute_on_threads<double>(p, x, D, tu::split_rows(N, p), false);
    EXPECT_TRUE(tu::near_cov(res[0].covariance, ref.covariance, D, 1e-12));
    expect_pseudo_inverse(res[0].covariance, res[0].precision, D, 1e-9);
    // The null direction (1, 1, 0, -1, 0, ...) is in the kernel of the precision.
    std::vector<double> v(D, 0.0);
    v[0] = v[1] = 1;
    v[3] = -1;
    for (std::int64_t i = 0; i < D; ++i) {
      double s = 0;
      for (std::int64_t j = 0; j < D; ++j) s += res[0].precision[i * D + j] * v[j];
      EXPECT_NEAR(s, 0.0, 1e-8 * max_abs(res[0].precision));
    }
  }
}

TYPED_TEST(CovarianceThreads, LargeMeanSmallSpread) {
  using T = TypeParam;
  tu::gen_options o;
  o.loc0 = 1e4;
  o.loc_step = 1.0;
  o.scale0 = 0.01;
  o.scale_step = 0.0;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 77, o));
  const auto ref = tu::reference_cov(tu::to_double(xt), N, D);
  for (int p = 1; p <= 4; ++p) {
    const auto res = compute_on_threads<T>(p, xt, D, tu::split_rows(N, p, p > 1 ? 1 : -1), false);
    EXPECT_TRUE(tu::near_cov(res[0].covariance, ref.covariance, D, 1e-6)) << p;
    EXPECT_TRUE(tu::near_rel(res[0].location, ref.location, 1e-12)) << p;
  }
}

TEST(CovarianceShift, OutlierFirstRowAndDriftStayExact) {
  // The local pass shifts each chunk by the running mean (the first row before there is one). A
  // far outlier as the first row and a mean that jumps by 1e6 along the rows put that shift far
  // from the chunk's mean; the covariance must stay exact (Chan terms, and the re-centring of a
  // chunk whose shift was poor).
  // d = 40: chunks of ~3300 rows, so every rank streams several chunks.
  const std::int64_t n = 20000, d = 40;
  auto x = tu::make_data(n, d, 5150);
  for (std::int64_t j = 0; j < d; ++j) x[j] += 1e7;             // row 0: an outlier
  for (std::int64_t i = n / 2; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) x[i * d + j] += 1e6;   // second half: a shifted mean
  const auto ref = tu::reference_cov(x, n, d);
  for (int p : {1, 3}) {
    const auto res = compute_on_threads<double>(p, x, d, tu::split_rows(n, p), false);
    EXPECT_TRUE(tu::near_cov(res[0].covariance, ref.covariance, d, 1e-10)) << p;
    EXPECT_TRUE(tu::near_rel(res[0].location, ref.location, 1e-13)) << p;
  }
}

TYPED_TEST(CovarianceThreads, MahalanobisMatchesDirectFormula) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 21));
  const auto test = tu::cast<T>(tu::make_data(N, D, 22));
  const int p = 3;
  const auto off = tu::split_rows(N, p, 1);
  struct out {
    cv::result fit;
    std::vector<double> dist;
  };
  auto res = tu::on_threads<out>(p, [&](const sl::comm& c) {
    out o;
    o.fit = cv::compute<T>(c, tu::block(xt, D, off, c.rank()), {});
    o.dist = cv::mahalanobis<T>(o.fit.location, o.fit.precision, tu::block(test, D, off, c.rank()));
    return o;
  });
  for (int r = 0; r < p; ++r) {
    const auto& loc = res[r].fit.location;
    const auto& prec = res[r].fit.precision;
    ASSERT_EQ(static_cast<std::int64_t>(res[r].dist.size()), off[r + 1] - off[r]);
    for (std::int64_t i = off[r]; i < off[r + 1]; ++i) {
      tu::ld s = 0;
      for (std::int64_t a = 0; a < D; ++a)
        for (std::int64_t b = 0; b < D; ++b)
          s += (static_cast<tu::ld>(test[i * D + a]) - loc[a]) * prec[a * D + b] *
               (static_cast<tu::ld>(test[i * D + b]) - loc[b]);
      EXPECT_NEAR(res[r].dist[i - off[r]], static_cast<double>(s), 1e-11 * static_cast<double>(s) + 1e-13)
          << "row " << i;
    }
  }
  // A training point's distance under a diagonal precision is the standardised squared distance.
  const std::vector<double> loc{1.0, -2.0};
  const std::vector<double> prec{0.25, 0.0, 0.0, 4.0};
  const std::vector<T> pts{T(3), T(-2), T(1), T(-1.5)};
  const auto dd = cv::mahalanobis<T>(loc, prec, {pts.data(), 2, 2});
  EXPECT_DOUBLE_EQ(dd[0], 1.0);
  EXPECT_DOUBLE_EQ(dd[1], 1.0);
  // Wrong feature count is an error.
  EXPECT_THROW(cv::mahalanobis<T>(loc, prec, {pts.data(), 1, 3}), sl::invalid_argument);
}

TYPED_TEST(CovarianceThreads, ScoreMatchesFormula) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 31));
  const auto test = tu::cast<T>(tu::make_data(600, D, 32));
  for (int p = 1; p <= 4; ++p) {
    const auto off = tu::split_rows(N, p);
    const auto toff = tu::split_rows(600, p, p > 1 ? p - 1 : -1);
    struct out {
      cv::result fit;
      double score_test = 0, score_train = 0;
    };
    auto res = tu::on_threads<out>(p, [&](const sl::comm& c) {
      out o;
      o.fit = cv::compute<T>(c, tu::block(xt, D, off, c.rank()), {});
      o.score_test = cv::score<T>(c, o.fit.location, o.fit.precision, tu::block(test, D, toff, c.rank(), true));
      o.score_train = cv::score<T>(c, o.fit.location, o.fit.precision, tu::block(xt, D, off, c.rank()));
      return o;
    });
    const double want_test = reference_score(tu::to_double(test), 600, D, res[0].fit.location, res[0].fit.precision);
    const double want_train = reference_score(tu::to_double(xt), N, D, res[0].fit.location, res[0].fit.precision);
    EXPECT_NEAR(res[0].score_test, want_test, 1e-10 * std::fabs(want_test)) << p;
    EXPECT_NEAR(res[0].score_train, want_train, 1e-10 * std::fabs(want_train)) << p;
    // On the training data trace(cov P) = d: score = (logdet P - d - d log 2π) / 2.
    const double closed = static_cast<double>(
        (tu::logdet(res[0].fit.precision, D) - D - D * std::log(2 * std::numbers::pi_v<tu::ld>)) / 2);
    EXPECT_NEAR(res[0].score_train, closed, 1e-9 * std::fabs(closed)) << p;
    for (int r = 1; r < p; ++r) {
      EXPECT_EQ(res[r].score_test, res[0].score_test);
      EXPECT_EQ(res[r].score_train, res[0].score_train);
    }
  }
}

TYPED_TEST(CovarianceThreads, IncrementalEqualsCompute) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 555));
  const auto ref = tu::reference_cov(tu::to_double(xt), N, D);
  const std::vector<std::int64_t> cuts{0, 250, 700, N};
  for (int p = 1; p <= 4; ++p) {
    struct out {
      cv::result inc, once;
      cv::state s;
    };
    auto res = tu::on_threads<out>(p, [&](const sl::comm& c) {
      out o;
      for (int b = 0; b < 3; ++b) {
        const std::int64_t rows = cuts[b + 1] - cuts[b];
        const auto off = tu::split_rows(rows, c.size(), (b == 2 && c.size() > 1) ? c.size() - 1 : -1);
        std::vector<T> part(xt.begin() + cuts[b] * D, xt.begin() + cuts[b + 1] * D);
        cv::partial_fit<T>(c, o.s, tu::block(part, D, off, c.rank(), b == 2));
      }
      o.inc = cv::finalize(o.s, {}, sl::dtype_of<T>());
      o.once = cv::compute<T>(c, tu::block(xt, D, tu::split_rows(N, c.size()), c.rank()), {});
      return o;
    });
    EXPECT_EQ(res[0].s.n_rows, N);
    EXPECT_TRUE(tu::near_rel(res[0].inc.location, ref.location, tol<T>())) << p;
    EXPECT_TRUE(tu::near_cov(res[0].inc.covariance, ref.covariance, D, tol<T>())) << p;
    EXPECT_TRUE(tu::near_rel(res[0].inc.location, res[0].once.location, 1e-12)) << p;
    EXPECT_TRUE(tu::near_cov(res[0].inc.covariance, res[0].once.covariance, D, 1e-12)) << p;
    for (int r = 1; r < p; ++r) EXPECT_TRUE(flatten(res[r].inc) == flatten(res[0].inc)) << "rank " << r;
  }
}

TYPED_TEST(CovarianceThreads, BadInputRaisesOnEveryRank) {
  using T = TypeParam;
  const std::int64_t n = 200;
  const auto clean = tu::cast<T>(tu::make_data(n, D, 41));
  for (int p = 1; p <= 4; ++p) {
    const auto off = tu::split_rows(n, p);
    for (int bad = 0; bad < p; ++bad) {
      const std::string where = "p=" + std::to_string(p) + " bad=" + std::to_string(bad);
      for (T v : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity()}) {
        auto x = clean;
        x[off[bad] * D + 5] = v;  // the bad rank's first row
        auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
          cv::compute<T>(c, tu::block(x, D, off, c.rank()), {});
        });
        EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, bad, std::isnan(v) ? "NaN" : "infinity"))
            << where;
        // score validates its X the same way.
        auto got_score = tu::catch_on_threads(p, [&](const sl::comm& c) {
          const std::vector<double> loc(D, 0.0);
          cv::score<T>(c, loc, identity(D), tu::block(x, D, off, c.rank()));
        });
        EXPECT_TRUE(tu::all_threw(got_score, sl::error_kind::invalid_argument, bad)) << where << " score";
      }
      if (p > 1) {
        auto feat = tu::catch_on_threads(p, [&](const sl::comm& c) {
          auto v = tu::block(clean, D, off, c.rank());
          if (c.rank() == bad) v = sl::matrix_view<const T>(v.data, v.rows, D - 1, D);
          cv::compute<T>(c, v, {});
        });
        EXPECT_TRUE(tu::all_threw(feat, sl::error_kind::invalid_argument, (p == 2 && bad == 0) ? -1 : bad, "n_features"))
            << where;
      }
    }
    for (bool zz : {false, true}) {
      auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
        cv::compute<T>(c, zz ? sl::matrix_view<const T>{nullptr, 0, 0} : sl::matrix_view<const T>{clean.data(), 0, D}, {});
      });
      EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, -1, "no rank holds any row")) << p;
    }
    // partial_fit with another n_features than the state, on the last rank only.
    auto later = tu::catch_on_threads(p, [&](const sl::comm& c) {
      cv::state s;
      cv::partial_fit<T>(c, s, tu::block(clean, D, off, c.rank()));
      cv::partial_fit<T>(c, s, sl::matrix_view<const T>(clean.data(), 3, c.rank() == p - 1 ? D + 1 : D));
    });
    EXPECT_TRUE(tu::all_threw(later, sl::error_kind::invalid_argument, p - 1, "features")) << p;
    // score with a model of the wrong size raises on every rank.
    auto wrong = tu::catch_on_threads(p, [&](const sl::comm& c) {
      const std::vector<double> loc(D - 1, 0.0);
      cv::score<T>(c, loc, identity(D - 1), tu::block(clean, D, off, c.rank()));
    });
    EXPECT_TRUE(tu::all_threw(wrong, sl::error_kind::invalid_argument, -1, "features")) << p;
  }
}

// ---------------------------------------------------------------------------------------------
// MPI.

template <class T>
void mpi_parity() {
  auto c = sl::make_world_comm();
  const int p = c->size(), me = c->rank();
  const auto xt = tu::cast<T>(tu::make_data(N, D, 2025));
  const auto x = tu::to_double(xt);
  const auto ref = tu::reference_cov(x, N, D);
  const auto off = tu::split_rows(N, p, p > 1 ? p - 1 : -1);
  const auto r = cv::compute<T>(*c, tu::block(xt, D, off, me), {});
  EXPECT_TRUE(tu::near_rel(r.location, ref.location, tol<T>()));
  EXPECT_TRUE(tu::near_cov(r.covariance, ref.covariance, D, tol<T>()));
  EXPECT_LE(max_diff(tu::matmul(r.precision, r.covariance, D), identity(D)), 1e-10);

  const auto mine = flatten(r);
  const auto all = c->allgather<double>(mine);
  for (int q = 0; q < p; ++q) {
    const std::vector<double> theirs(all.begin() + q * mine.size(), all.begin() + (q + 1) * mine.size());
    EXPECT_TRUE(theirs == mine) << "rank " << q << " differs from rank " << me;
  }

  const auto rc = cv::compute<T>(*c, tu::block(xt, D, off, me, true), {true, false});
  EXPECT_TRUE(tu::near_cov(rc.covariance, tu::reference_cov(x, N, D, true).covariance, D, tol<T>()));

  const double s = cv::score<T>(*c, r.location, r.precision, tu::block(xt, D, off, me));
  const double want = reference_score(x, N, D, r.location, r.precision);
  EXPECT_NEAR(s, want, 1e-10 * std::fabs(want));
}

TEST(MpiCovariance, ParityDouble) { mpi_parity<double>(); }
TEST(MpiCovariance, ParityFloat) { mpi_parity<float>(); }

TEST(MpiCovariance, NaNOnLastRankRaisesEverywhere) {
  auto c = sl::make_world_comm();
  const int p = c->size(), me = c->rank(), last = p - 1;
  auto x = tu::make_data(N, D, 3);
  const auto off = tu::split_rows(N, p);
  x[(off[last + 1] - 1) * D] = std::numeric_limits<double>::quiet_NaN();
  const auto got = tu::catch_error([&] { cv::compute<double>(*c, tu::block(x, D, off, me), {}); });
  EXPECT_TRUE(tu::all_threw({got}, sl::error_kind::invalid_argument, last, "NaN"));
  EXPECT_EQ(c->allreduce_value<std::int64_t>(1, sl::reduce_op::sum), p);
}
