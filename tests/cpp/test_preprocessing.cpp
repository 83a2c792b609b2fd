// preprocessing: StandardScaler / MaxAbsScaler attributes against references, transforms and
// round trips, on thread ranks.
#include <cmath>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace sl = spmdlearn;
namespace pp = spmdlearn::preprocessing;

namespace {

constexpr std::int64_t N = 500, D = 5;

using tu::tol;

// Columns: 0..2 random, 3 constant (a value that is not exact in binary), 4 random with a big mean.
std::vector<double> scaler_data(std::uint64_t seed) {
  auto x = tu::make_data(N, D, seed);
  for (std::int64_t i = 0; i < N; ++i) {
    x[i * D + 3] = 0.1;
    x[i * D + 4] = 1e3 + x[i * D + 4];
  }
  return x;
}

struct fitted {
  pp::standard_scaler_result res;
  std::vector<double> out, back;  // this rank's transformed / inverse-transformed rows
};

template <class T>
std::vector<fitted> fit_standard(int p, const std::vector<T>& x, const std::vector<std::int64_t>& off,
                                 pp::standard_scaler_params prm) {
  return tu::on_threads<fitted>(p, [&](const sl::comm& c) {
    pp::standard_scaler sc(prm);
    const auto X = tu::block(x, D, off, c.rank());
    sc.fit<T>(c, X);
    std::vector<T> out(X.rows * D), back(X.rows * D);
    sc.transform<T>(X, {out.data(), X.rows, D});
    sc.inverse_transform<T>({out.data(), X.rows, D}, {back.data(), X.rows, D});
    return fitted{sc.result(), tu::to_double(out), tu::to_double(back)};
  });
}

}  // namespace

template <class T>
class PreprocessingThreads : public ::testing::Test {};
using Floating = ::testing::Types<float, double>;
TYPED_TEST_SUITE(PreprocessingThreads, Floating);

TYPED_TEST(PreprocessingThreads, StandardScalerAttributesAndRoundTrip) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(scaler_data(10));
  const auto x = tu::to_double(xt);
  const auto ref = tu::reference_stats(x, N, D);
  std::vector<double> scale(D);
  for (std::int64_t j = 0; j < D; ++j) scale[j] = std::sqrt(ref.var0[j]);
  scale[3] = 1.0;  // constant feature
  for (int p = 1; p <= 4; ++p) {
    const auto off = tu::split_rows(N, p, p > 1 ? p - 1 : -1);
    const auto res = fit_standard<T>(p, xt, off, {});
    const std::string where = "p=" + std::to_string(p);
    const auto& r = res[0].res;
    EXPECT_TRUE(tu::near_rel(r.mean, ref.mean, tol<T>())) << where;
    // var of the constant column is 0 up to rounding.
    std::vector<double> var = r.var, want_var = ref.var0;
    EXPECT_LE(std::fabs(var[3]), 1e-20) << where;
    var[3] = want_var[3] = 0;
    EXPECT_TRUE(tu::near_rel(var, want_var, tol<T>())) << where;
    EXPECT_TRUE(tu::near_rel(r.scale, scale, tol<T>())) << where;
    EXPECT_EQ(r.scale[3], 1.0) << where;
    for (int q = 0; q < p; ++q) {
      EXPECT_TRUE(res[q].res.mean == r.mean && res[q].res.var == r.var && res[q].res.scale == r.scale)
          << where << " rank " << q;
      // transform = (x - mean) / scale; inverse_transform undoes it.
      for (std::int64_t i = off[q]; i < off[q + 1]; ++i)
        for (std::int64_t j = 0; j < D; ++j) {
          const double want = (x[i * D + j] - ref.mean[j]) / scale[j];
          const double got = res[q].out[(i - off[q]) * D + j];
          EXPECT_NEAR(got, want, (std::is_same_v<T, float> ? 1e-4 : 1e-9)) << where << " (" << i << "," << j << ")";
          EXPECT_NEAR(res[q].back[(i - off[q]) * D + j], x[i * D + j],
                      tol<T>() * (1 + std::fabs(x[i * D + j])))
              << where << " round trip (" << i << "," << j << ")";
        }
    }
  }
}

TEST(PreprocessingThreads2, StandardScalerTransformedDataIsStandardised) {
  const auto x = tu::make_data(N, D, 12);
  const auto res = fit_standard<double>(3, x, tu::split_rows(N, 3), {});
  std::vector<double> all;
  for (const auto& f : res) all.insert(all.end(), f.out.begin(), f.out.end());
  const auto st = tu::reference_stats(all, N, D);
  for (std::int64_t j = 0; j < D; ++j) {
    EXPECT_NEAR(st.mean[j], 0.0, 1e-12);
    EXPECT_NEAR(st.var0[j], 1.0, 1e-12);
  }
}

TYPED_TEST(PreprocessingThreads, StandardScalerWithoutMeanOrStd) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(scaler_data(13));
  const auto x = tu::to_double(xt);
  const auto ref = tu::reference_stats(x, N, D);
  const int p = 3;
  const auto off = tu::split_rows(N, p, 0);
  const double ttol = std::is_same_v<T, float> ? 1e-4 : 1e-9;

  // with_mean = false: x / scale; scale still from the variance about the mean.
  auto no_mean = fit_standard<T>(p, xt, off, {false, true});
  EXPECT_TRUE(tu::near_rel(no_mean[0].res.mean, ref.mean, tol<T>()));
  for (int q = 0; q < p; ++q)
    for (std::int64_t i = off[q]; i < off[q + 1]; ++i)
      for (std::int64_t j = 0; j < D; ++j) {
        const double s = j == 3 ? 1.0 : std::sqrt(ref.var0[j]);
        EXPECT_NEAR(no_mean[q].out[(i - off[q]) * D + j], x[i * D + j] / s, ttol * (1 + std::fabs(x[i * D + j] / s)));
        EXPECT_NEAR(no_mean[q].back[(i - off[q]) * D + j], x[i * D + j], tol<T>() * (1 + std::fabs(x[i * D + j])));
      }

  // with_std = false: x - mean; no var, no scale.
  auto no_std = fit_standard<T>(p, xt, off, {true, false});
  EXPECT_TRUE(no_std[0].res.var.empty());
  EXPECT_TRUE(no_std[0].res.scale.empty());
  EXPECT_TRUE(tu::near_rel(no_std[0].res.mean, ref.mean, tol<T>()));
  for (int q = 0; q < p; ++q)
    for (std::int64_t i = off[q]; i < off[q + 1]; ++i)
      for (std::int64_t j = 0; j < D; ++j) {
        EXPECT_NEAR(no_std[q].out[(i - off[q]) * D + j], x[i * D + j] - ref.mean[j], ttol * (1 + std::fabs(x[i * D + j])));
        EXPECT_NEAR(no_std[q].back[(i - off[q]) * D + j], x[i * D + j], tol<T>() * (1 + std::fabs(x[i * D + j])));
      }

  // Neither: the identity.
  auto neither = fit_standard<T>(p, xt, off, {false, false});
  EXPECT_TRUE(neither[0].res.mean.empty() && neither[0].res.var.empty() && neither[0].res.scale.empty());
  for (int q = 0; q < p; ++q)
    for (std::int64_t i = off[q]; i < off[q + 1]; ++i)
      for (std::int64_t j = 0; j < D; ++j) EXPECT_EQ(neither[q].out[(i - off[q]) * D + j], x[i * D + j]);
}

TYPED_TEST(PreprocessingThreads, StandardScalerWeightsAndPartialFit) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(scaler_data(14));
  std::vector<T> w(N);
  std::vector<double> repeated;
  for (std::int64_t i = 0; i < N; ++i) {
    w[i] = static_cast<T>((i * 7) % 4);
    for (int k = 0; k < static_cast<int>(w[i]); ++k)
      repeated.insert(repeated.end(), xt.begin() + i * D, xt.begin() + (i + 1) * D);
  }
  const auto ref = tu::reference_stats(repeated, static_cast<std::int64_t>(repeated.size()) / D, D);
  const int p = 4;
  const auto off = tu::split_rows(N, p, 2);
  auto res = tu::on_threads<pp::standard_scaler_result>(p, [&](const sl::comm& c) {
    pp::standard_scaler sc;
    sc.fit<T>(c, tu::block(xt, D, off, c.rank()), std::optional(tu::vblock(w, off, c.rank())));
    return sc.result();
  });
  EXPECT_TRUE(tu::near_rel(res[0].mean, ref.mean, tol<T>()));
  std::vector<double> var = res[0].var, want = ref.var0;
  var[3] = want[3] = 0;
  EXPECT_TRUE(tu::near_rel(var, want, tol<T>()));

  // partial_fit over two halves equals fit over all rows; fit() starts over.
  const auto ref_all = tu::reference_stats(tu::to_double(xt), N, D);
  auto inc = tu::on_threads<pp::standard_scaler_result>(p, [&](const sl::comm& c) {
    pp::standard_scaler sc;
    sc.fit<T>(c, tu::block(xt, D, off, c.rank()));  // discarded by the next fit
    const std::vector<T> a(xt.begin(), xt.begin() + 200 * D), b(xt.begin() + 200 * D, xt.end());
    const auto oa = tu::split_rows(200, c.size(), 0), ob = tu::split_rows(N - 200, c.size());
    sc.fit<T>(c, tu::block(a, D, oa, c.rank()));
    sc.partial_fit<T>(c, tu::block(b, D, ob, c.rank()));
    EXPECT_EQ(sc.state().n_rows, N);
    return sc.result();
  });
  EXPECT_TRUE(tu::near_rel(inc[0].mean, ref_all.mean, tol<T>()));
  var = inc[0].var;
  want = ref_all.var0;
  var[3] = want[3] = 0;
  EXPECT_TRUE(tu::near_rel(var, want, tol<T>()));
}

TYPED_TEST(PreprocessingThreads, StandardScalerTransformRejectsWrongShape) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(scaler_data(15));
  pp::standard_scaler sc;
  auto self = sl::make_self_comm();
  sc.fit<T>(*self, {xt.data(), N, D});
  std::vector<T> out(N * D);
  EXPECT_THROW(sc.transform<T>({xt.data(), N, D - 1}, {out.data(), N, D - 1}), sl::invalid_argument);
  EXPECT_THROW(sc.transform<T>({xt.data(), N, D}, {out.data(), N - 1, D}), sl::invalid_argument);
  // In place (out aliases X) is allowed.
  std::vector<T> y = xt;
  sc.transform<T>({y.data(), N, D}, {y.data(), N, D});
  sc.inverse_transform<T>({y.data(), N, D}, {y.data(), N, D});
  for (std::int64_t k = 0; k < N * D; ++k)
    EXPECT_NEAR(double(y[k]), double(xt[k]), tol<T>() * (1 + std::fabs(double(xt[k]))));
}

TYPED_TEST(PreprocessingThreads, MaxAbsScaler) {
  using T = TypeParam;
  auto xd = tu::make_data(N, D, 16);
  for (std::int64_t i = 0; i < N; ++i) {
    xd[i * D + 1] = 0.0;                      // zero column -> scale 1
    xd[i * D + 2] = -std::fabs(xd[i * D + 2]);  // negative column: max |x| comes from the min
  }
  const auto xt = tu::cast<T>(xd);
  const auto x = tu::to_double(xt);
  std::vector<double> want(D, 0.0);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t j = 0; j < D; ++j) want[j] = std::max(want[j], std::fabs(x[i * D + j]));
  std::vector<double> want_scale = want;
  want_scale[1] = 1.0;
  for (int p = 1; p <= 4; ++p) {
    const auto off = tu::split_rows(N, p, p > 1 ? 0 : -1);
    auto res = tu::on_threads<fitted>(p, [&](const sl::comm& c) {
      pp::max_abs_scaler sc;
      const auto X = tu::block(xt, D, off, c.rank(), true);
      sc.fit<T>(c, X);
      std::vector<T> out(X.rows * D), back(X.rows * D);
      if (X.rows > 0) {
        sc.transform<T>(X, {out.data(), X.rows, D});
        sc.inverse_transform<T>({out.data(), X.rows, D}, {back.data(), X.rows, D});
      }
      fitted f;
      f.res.mean = sc.result().max_abs;
      f.res.scale = sc.result().scale;
      f.out = tu::to_double(out);
      f.back = tu::to_double(back);
      return f;
    });
    EXPECT_EQ(res[0].res.mean, want) << p;  // max_abs is a data value: exact
    EXPECT_EQ(res[0].res.scale, want_scale) << p;
    for (int q = 0; q < p; ++q) {
      EXPECT_TRUE(res[q].res.mean == res[0].res.mean && res[q].res.scale == res[0].res.scale);
      for (std::int64_t i = off[q]; i < off[q + 1]; ++i)
        for (std::int64_t j = 0; j < D; ++j) {
          const double got = res[q].out[(i - off[q]) * D + j];
          EXPECT_NEAR(got, x[i * D + j] / want_scale[j], tol<T>());
          EXPECT_LE(std::fabs(got), 1.0 + tol<T>());
          EXPECT_NEAR(res[q].back[(i - off[q]) * D + j], x[i * D + j], tol<T>() * (1 + std::fabs(x[i * D + j])));
        }
    }
  }
}
