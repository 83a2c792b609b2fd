// KMeans on thread ranks (1..4, uneven, one empty rank): with given initial centres, every rank
// holds the same model, equal to a float64 Lloyd reference written here from the definition
// (direct distances, scikit-learn's stopping rules); k-means++ / k-means|| / random give a
// replicated, reproducible model at a Lloyd fixed point; bad input on one rank makes every rank
// throw.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "candidate_ref.hpp"
#include "cluster/kmeans_local.hpp"
#include "test_util.hpp"

namespace sl = spmdlearn;

namespace {

// Six well-separated Gaussian blobs in d dimensions (no distance ties).
std::vector<double> blobs(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> x(n * d);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t q = 0; q < d; ++q) x[i * d + q] = 8.0 * static_cast<double>((i % 6) * (q + 1) % 5) + normal(rng);
  return x;
}

struct ref_model {
  std::vector<double> centers;
  std::vector<std::int32_t> labels;
  double inertia = 0.0;
  std::int64_t n_iter = 0;
};

// Lloyd in double with exact differences; tol relative to the mean column variance (ddof 0).
ref_model reference_lloyd(const std::vector<double>& x, std::int64_t n, std::int64_t d,
                          std::vector<double> c, std::int64_t k, int max_iter, double tol_rel) {
  double var = 0.0;
  for (std::int64_t q = 0; q < d; ++q) {
    double m = 0.0, s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) m += x[i * d + q];
    m /= n;
    for (std::int64_t i = 0; i < n; ++i) s += (x[i * d + q] - m) * (x[i * d + q] - m);
    var += s / n;
  }
  const double tol = var / d * tol_rel;
  auto dist = [&](std::int64_t i, const std::vector<double>& cc, std::int64_t j) {
    double s = 0.0;
    for (std::int64_t q = 0; q < d; ++q) s += (x[i * d + q] - cc[j * d + q]) * (x[i * d + q] - cc[j * d + q]);
    return s;
  };
  auto assign = [&](const std::vector<double>& cc, std::vector<std::int32_t>& lab) {
    for (std::int64_t i = 0; i < n; ++i) {
      std::int32_t best = 0;
      for (std::int64_t j = 1; j < k; ++j)
        if (dist(i, cc, j) < dist(i, cc, best)) best = static_cast<std::int32_t>(j);
      lab[i] = best;
    }
  };
  ref_model r;
  r.labels.assign(n, -1);
  std::vector<std::int32_t> lab(n);
  bool strict = false, stopped = false;
  int it = 0;
  for (; it < max_iter; ++it) {
    assign(c, lab);
    std::vector<double> s(k * d, 0.0), w(k, 0.0);
    for (std::int64_t i = 0; i < n; ++i) {
      w[lab[i]] += 1.0;
      for (std::int64_t q = 0; q < d; ++q) s[lab[i] * d + q] += x[i * d + q];
    }
    double shift = 0.0;
    for (std::int64_t j = 0; j < k; ++j)
      for (std::int64_t q = 0; q < d; ++q) {
        s[j * d + q] /= w[j];
        shift += (s[j * d + q] - c[j * d + q]) * (s[j * d + q] - c[j * d + q]);
      }
    c = s;
    const bool same = lab == r.labels;
    r.labels = lab;
    if (same) {
      strict = stopped = true;
      break;
    }
    if (shift <= tol) {
      stopped = true;
      break;
    }
  }
  if (!strict) assign(c, r.labels);
  for (std::int64_t i = 0; i < n; ++i) r.inertia += dist(i, c, r.labels[i]);
  r.centers = c;
  r.n_iter = stopped ? it + 1 : max_iter;
  return r;
}

class Cluster : public ::testing::TestWithParam<int> {};

template <class T>
void check_given_init(int p) {
  const std::int64_t n = 1203, d = 5, k = 6;
  const std::vector<double> x = blobs(n, d, 11);
  const std::vector<T> xt = tu::cast<T>(x);
  const std::vector<double> xr = tu::to_double(xt);  // the reference sees the same (rounded) rows
  std::vector<double> init(x.begin() + 100 * d, x.begin() + (100 + k) * d);
  for (auto& v : init) v = static_cast<double>(static_cast<T>(v));
  const ref_model ref = reference_lloyd(xr, n, d, init, k, 300, 1e-4);
  const auto off = tu::split_rows(n, p, p > 2 ? 1 : -1);
  sl::cluster::kmeans_params prm;
  prm.n_clusters = k;
  prm.init = sl::cluster::kmeans_init::given;
  auto res = tu::on_threads<sl::cluster::kmeans_model>(p, [&](const sl::comm& c) {
    return sl::cluster::kmeans_fit<T>(c, tu::block(xt, d, off, c.rank()), std::nullopt, prm, init);
  });
  const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(res[r].centers, res[0].centers) << "rank " << r;
    EXPECT_EQ(res[r].inertia, res[0].inertia) << "rank " << r;
    EXPECT_EQ(res[r].n_iter, ref.n_iter) << "rank " << r;
    for (std::int64_t i = off[r]; i < off[r + 1]; ++i)
      ASSERT_EQ(res[r].labels[i - off[r]], ref.labels[i]) << "rank " << r << " row " << i;
  }
  EXPECT_EQ(res[0].n_samples, n);
  EXPECT_EQ(res[0].n_distinct, k);
  EXPECT_NEAR(res[0].inertia, ref.inertia, rtol * ref.inertia);
  for (std::int64_t q = 0; q < k * d; ++q) EXPECT_NEAR(res[0].centers[q], ref.centers[q], rtol * 50.0) << q;
  // score (collective) and predict (local) agree with the fit
  auto inertia = tu::on_threads<double>(p, [&](const sl::comm& c) {
    return sl::cluster::kmeans_inertia<T>(c, tu::block(xt, d, off, c.rank()), std::nullopt, res[0].centers);
  });
  for (int r = 0; r < p; ++r) {
    EXPECT_NEAR(inertia[r], ref.inertia, rtol * ref.inertia);
    EXPECT_EQ(sl::cluster::kmeans_predict<T>(tu::block(xt, d, off, r), res[0].centers), res[r].labels);
  }
}

TEST_P(Cluster, GivenInitEqualsReferenceLloydDouble) { check_given_init<double>(GetParam()); }
TEST_P(Cluster, GivenInitEqualsReferenceLloydFloat) { check_given_init<float>(GetParam()); }

TEST_P(Cluster, SeededInitsAreReplicatedReproducibleFixedPoints) {
  const int p = GetParam();
  const std::int64_t n = 900, d = 4, k = 6;
  const std::vector<double> x = blobs(n, d, 3);
  const auto off = tu::split_rows(n, p, p > 1 ? p - 1 : -1);
  for (auto init : {sl::cluster::kmeans_init::kmeans_plusplus, sl::cluster::kmeans_init::kmeans_parallel,
                    sl::cluster::kmeans_init::random}) {
    sl::cluster::kmeans_params prm;
    prm.n_clusters = k;
    prm.init = init;
    prm.n_init = 2;
    prm.seed = 1234;
    prm.tol = 0.0;  // run to strict convergence: the result is then a Lloyd fixed point
    auto fit = [&] {
      return tu::on_threads<sl::cluster::kmeans_model>(p, [&](const sl::comm& c) {
        return sl::cluster::kmeans_fit<double>(c, tu::block(x, d, off, c.rank()), std::nullopt, prm);
      });
    };
    const auto a = fit(), b = fit();
    for (int r = 0; r < p; ++r) {
      EXPECT_EQ(a[r].centers, a[0].centers) << "rank " << r;
      EXPECT_EQ(b[r].centers, a[0].centers) << "rank " << r << " (second fit)";
      EXPECT_EQ(a[r].inertia, a[0].inertia);
    }
    // the reference Lloyd started from the fitted centres stays there
    const ref_model ref = reference_lloyd(x, n, d, a[0].centers, k, 300, 0.0);
    EXPECT_NEAR(ref.inertia, a[0].inertia, 1e-9 * a[0].inertia) << static_cast<int>(init);
  }
}

TEST_P(Cluster, NanOnOneRankEveryRankThrows) {
  const int p = GetParam();
  const std::int64_t n = 300, d = 3;
  std::vector<double> x = blobs(n, d, 5);
  const auto off = tu::split_rows(n, p);
  x[(off[p] - 1) * d + 1] = std::numeric_limits<double>::quiet_NaN();  // the last rank's last row
  sl::cluster::kmeans_params prm;
  prm.n_clusters = 3;
  auto caught = tu::catch_on_threads(p, [&](const sl::comm& c) {
    sl::cluster::kmeans_fit<double>(c, tu::block(x, d, off, c.rank()), std::nullopt, prm);
  });
  EXPECT_TRUE(tu::all_threw(caught, sl::error_kind::invalid_argument, p - 1, "NaN"));
  prm.n_clusters = n + 1;  // more clusters than rows of all ranks
  x[(off[p] - 1) * d + 1] = 0.0;
  caught = tu::catch_on_threads(p, [&](const sl::comm& c) {
    sl::cluster::kmeans_fit<double>(c, tu::block(x, d, off, c.rank()), std::nullopt, prm);
  });
  for (const auto& c : caught) {
    EXPECT_TRUE(c.thrown);
    EXPECT_NE(c.what.find("n_clusters"), std::string::npos) << c.what;
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, Cluster, ::testing::Values(1, 2, 3, 4));

}  // namespace

// The host k-means++ passes (candidate_potentials_local, update_closest_local) against the float64
// reference of candidate_ref.hpp: m <= 16 takes the one-pass loop (dot products in double, in
// column order), m > 16 the chunked dgemm (float rows widened to double first).
template <class T>
void host_candidate_pass_matches_reference(std::int64_t n, std::int64_t d, std::int64_t m, std::int64_t stride,
                                           bool weighted, int threads) {
  namespace kd = sl::cluster::detail;
  const tu::candidate_case<T> c(n, d, m, stride, weighted);
  const sl::matrix_view<const T> X(c.x.data(), n, d, stride);
  const std::vector<double> none;
  const std::span<const double> w = weighted ? std::span<const double>(c.w) : std::span<const double>(none);
  std::vector<double> closest = c.closest;
  kd::candidate_distances kept;
  const std::vector<double> pot = kd::candidate_potentials_local<T>(X, c.xsq, w, c.cand, m, closest, &kept, threads);
  c.check_potentials(pot, closest, 1e-12);
  // The kept distances: for m <= 16 when n x m doubles are no larger than the rows.
  const bool keeps = m <= 16 && m * 8 <= d * static_cast<std::int64_t>(sizeof(T));
  EXPECT_EQ(kept.m, keeps ? m : 0) << c.what();
  const std::int64_t j = m / 2;
  EXPECT_EQ(kd::take_kept_candidate(kept, j, closest), keeps);
  if (keeps) {
    c.check_take(closest, j, 1e-12);
    closest = c.closest;
  } else {
    EXPECT_EQ(closest, c.closest) << "nothing kept: closest must not move";
  }
  kd::update_closest_local<T>(X, c.xsq, c.cand, m, closest, threads);
  c.check_update(closest, 1e-12);
}

TEST(KMeansLocal, HostCandidatePassMatchesFloat64) {
  // One worker, and three (the 100,003-row cases split into three row ranges).
  for (int threads : {1, 3})
    tu::for_candidate_cases([threads](auto t, std::int64_t n, std::int64_t d, std::int64_t m, std::int64_t stride,
                                      bool weighted) {
      host_candidate_pass_matches_reference<decltype(t)>(n, d, m, stride, weighted, threads);
    });
}
