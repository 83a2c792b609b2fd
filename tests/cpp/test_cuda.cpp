// CUDA backend tests: the fused covariance pass and the device Mahalanobis distances against the
// CPU path (one process), and device-buffer collectives (NCCL) under mpirun. Every test skips
// when no GPU is visible (CI has none); scripts/gpu-check.sh runs them on the lent GPU machine.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cross_cuda.hpp"
#include "backend/cuda/kmeans_cuda.hpp"
#include "backend/cuda/memory.hpp"
#ifdef SPMDLEARN_TEST_NCCL
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>

#include "core/nccl_comm.hpp"
#endif
#include "candidate_ref.hpp"
#include "spmdlearn/spmdlearn.hpp"
#include "test_util.hpp"

namespace sl = spmdlearn;

namespace {

#define SKIP_WITHOUT_GPU()                                                  \
  if (sl::cuda_device_count() == 0 || sl::select_local_gpu() < 0) GTEST_SKIP() << "no CUDA device"

template <class T>
struct on_gpu {
  std::vector<T> host;
  std::unique_ptr<sl::device_copy> dev;
  std::int64_t n, d;
  on_gpu(const std::vector<double>& x, std::int64_t rows, std::int64_t cols)
      : host(x.begin(), x.end()), n(rows), d(cols) {
    if (!host.empty()) dev = std::make_unique<sl::device_copy>(host.data(), host.size() * sizeof(T));
  }
  sl::matrix_view<const T> host_view() const { return {host.data(), n, d}; }
  sl::matrix_view<const T> device_view() const {
    return {dev ? static_cast<const T*>(dev->data()) : nullptr, n, d, -1, sl::device_kind::cuda};
  }
};

template <class T>
void covariance_matches_cpu(std::int64_t n, std::int64_t d, bool outlier_first_row) {
  std::vector<double> x = tu::make_data(n, d, 7 + d);
  if (outlier_first_row)  // a poor shift for the fused pass: the second pass must rescue it
    for (std::int64_t j = 0; j < d; ++j) x[j] += 1e4;
  on_gpu<T> a(x, n, d);
  auto self = sl::make_self_comm();
  const auto cpu = sl::covariance::compute<T>(*self, a.host_view(), {false, false});
  const auto gpu = sl::covariance::compute<T>(*self, a.device_view(), {false, false});
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-11;
  for (std::int64_t i = 0; i < d; ++i) {
    EXPECT_NEAR(gpu.location[i], cpu.location[i], tol * (1.0 + std::abs(cpu.location[i])))
        << "n=" << n << " d=" << d << " i=" << i;
    for (std::int64_t j = 0; j < d; ++j) {
      const double scale = std::sqrt(cpu.covariance[i * d + i] * cpu.covariance[j * d + j]);
      EXPECT_NEAR(gpu.covariance[i * d + j], cpu.covariance[i * d + j], tol * scale)
          << "n=" << n << " d=" << d << " (" << i << "," << j << ")";
      EXPECT_EQ(gpu.covariance[i * d + j], gpu.covariance[j * d + i]);  // exactly symmetric
    }
  }
}

}  // namespace

// The k-means E/M step on the GPU against a float64 reference computed here: labels (away from
// near-ties), per-cluster sums and weights, inertia and the changed count.
template <class T>
void lloyd_step_matches_reference(std::int64_t n, std::int64_t d, std::int64_t k) {
  std::vector<double> x = tu::make_data(n, d, 11 + k);
  std::vector<double> w(n);
  for (std::int64_t i = 0; i < n; ++i) w[i] = 0.5 + static_cast<double>((i * 7919) % 13) / 8.0;
  std::vector<double> centers(k * d);
  for (std::int64_t j = 0; j < k; ++j)
    for (std::int64_t l = 0; l < d; ++l) centers[j * d + l] = x[((j * 104729) % n) * d + l] + 0.01 * l;
  std::vector<T> xt(x.begin(), x.end());
  std::vector<double> xsq(n, 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t l = 0; l < d; ++l) xsq[i] += static_cast<double>(xt[i * d + l]) * static_cast<double>(xt[i * d + l]);
  std::vector<std::int32_t> labels(n, -1);
  sl::device_copy dx(xt.data(), xt.size() * sizeof(T)), dw(w.data(), w.size() * sizeof(double)),
      dsq(xsq.data(), xsq.size() * sizeof(double)), dl(labels.data(), labels.size() * sizeof(std::int32_t));
  auto* dlab = static_cast<std::int32_t*>(const_cast<void*>(dl.data()));
  const auto r = sl::cuda::lloyd_step<T>(static_cast<const T*>(dx.data()), n, d, d, static_cast<const double*>(dw.data()),
                                         static_cast<const double*>(dsq.data()), centers, k, dlab, true);
  sl::cuda::copy_device_to_host(labels.data(), dlab, labels.size() * sizeof(std::int32_t));
  EXPECT_EQ(r.changed, n);  // every label was -1
  // Reference in double.
  std::vector<double> sums(k * d, 0.0), weights(k, 0.0);
  double inertia = 0.0;
  std::int64_t mismatched = 0;
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-10;
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<double> dist(k, 0.0);
    for (std::int64_t j = 0; j < k; ++j)
      for (std::int64_t l = 0; l < d; ++l) dist[j] += (x[i * d + l] - centers[j * d + l]) * (x[i * d + l] - centers[j * d + l]);
    const std::int64_t arg = std::min_element(dist.begin(), dist.end()) - dist.begin();
    const double best = dist[arg];
    double second = std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < k; ++j)
      if (j != arg) second = std::min(second, dist[j]);
    inertia += w[i] * best;
    // Use the GPU's label for the sums (the assignment is tested separately below), so that
    // near-ties do not move whole rows between clusters in the comparison.
    const std::int64_t g = labels[i];
    ASSERT_GE(g, 0);
    ASSERT_LT(g, k);
    if (g != arg && second - best > tol * (1.0 + best)) ++mismatched;
    weights[g] += w[i];
    for (std::int64_t l = 0; l < d; ++l) sums[g * d + l] += w[i] * x[i * d + l];
  }
  EXPECT_EQ(mismatched, 0) << "labels differ away from near-ties";
  // ‖x‖² + (‖c‖² − 2 x·c) in float cancels when ‖x‖² >> the distance (the driver centres X first).
  EXPECT_NEAR(r.inertia, inertia, (std::is_same_v<T, float> ? 1e-3 : 1e-9) * inertia);
  for (std::int64_t j = 0; j < k; ++j) {
    EXPECT_NEAR(r.weights[j], weights[j], 1e-6 * (1.0 + weights[j])) << "cluster " << j;
    for (std::int64_t l = 0; l < d; ++l)
      EXPECT_NEAR(r.sums[j * d + l], sums[j * d + l], (std::is_same_v<T, float> ? 1e-4 : 1e-10) * (1.0 + weights[j]) * 10)
          << "cluster " << j << " column " << l;
  }
  // A second step with the same centres changes no label.
  const auto again = sl::cuda::lloyd_step<T>(static_cast<const T*>(dx.data()), n, d, d, nullptr, nullptr, centers, k,
                                             dlab, false);
  EXPECT_EQ(again.changed, 0);
}

TEST(CudaKMeans, LloydStepMatchesReference) {
  SKIP_WITHOUT_GPU();
  // Chunks, tiles and shared-memory column slices: k x (d + 1) larger than one 48 KiB tile.
  lloyd_step_matches_reference<double>(50003, 20, 17);
  lloyd_step_matches_reference<float>(50003, 20, 17);
  lloyd_step_matches_reference<float>(40001, 70, 300);
  lloyd_step_matches_reference<double>(3, 5, 2);
  lloyd_step_matches_reference<float>(20000, 64, 256);  // the benchmark's shape, two whole centre tiles
}

// cuda::farthest against a host sort with the same order (distance desc, row asc). Small-integer
// rows and centres keep every distance exact in double, so the GPU's summation order cannot
// matter and the many exact ties (each row appears several times) test the tie order.
template <class T>
void farthest_matches_host(std::int64_t n, std::int64_t d, std::int64_t k, std::int64_t m) {
  std::vector<T> x(n * d);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t l = 0; l < d; ++l) x[i * d + l] = static_cast<T>(((i % 97) * 7 + l * 3) % 11) - T(5);
  std::vector<double> centers(k * d);
  for (std::int64_t j = 0; j < k; ++j)
    for (std::int64_t l = 0; l < d; ++l) centers[j * d + l] = static_cast<double>((j + l) % 5) - 2.0;
  std::vector<std::int32_t> labels(n);
  for (std::int64_t i = 0; i < n; ++i) labels[i] = static_cast<std::int32_t>((i * 31) % k);
  sl::device_copy dx(x.data(), x.size() * sizeof(T)), dl(labels.data(), labels.size() * sizeof(std::int32_t));
  const auto got = sl::cuda::farthest<T>(static_cast<const T*>(dx.data()), n, d, d, centers,
                                          static_cast<const std::int32_t*>(dl.data()), m);
  std::vector<std::pair<double, std::int64_t>> ref(n);
  for (std::int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (std::int64_t l = 0; l < d; ++l) {
      const double t = static_cast<double>(x[i * d + l]) - centers[labels[i] * d + l];
      s += t * t;
    }
    ref[i] = {s, i};
  }
  std::sort(ref.begin(), ref.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  ASSERT_EQ(static_cast<std::int64_t>(got.size()), std::min(m, n));
  for (std::size_t j = 0; j < got.size(); ++j) {
    EXPECT_EQ(got[j].first, ref[j].first) << j;
    EXPECT_EQ(got[j].second, ref[j].second) << j;
  }
}

TEST(CudaKMeans, FarthestRowsMatchAHostSort) {
  SKIP_WITHOUT_GPU();
  farthest_matches_host<float>(100003, 13, 7, 40);
  farthest_matches_host<double>(5000, 70, 3, 300);
  farthest_matches_host<float>(3, 2, 2, 5);  // more asked than rows
}

// cuda::candidate_pass (k-means++'s potentials and closest-distance updates) against the float64
// reference of candidate_ref.hpp. m <= 16 takes the fused pass (distances in double); an update for
// m > 16 the gemm pass (products in the precision of X), whose potentials go 16 candidates a
// fused pass.
template <class T>
void candidate_pass_matches_host(std::int64_t n, std::int64_t d, std::int64_t m, std::int64_t stride, bool weighted) {
  const tu::candidate_case<T> c(n, d, m, stride, weighted);
  sl::device_copy dx(c.x.data(), c.x.size() * sizeof(T)), dw(c.w.data(), c.w.size() * sizeof(double)),
      dc(c.closest.data(), c.closest.size() * sizeof(double));
  const T* X = static_cast<const T*>(dx.data());
  const double* W = weighted ? static_cast<const double*>(dw.data()) : nullptr;
  auto* C = static_cast<double*>(const_cast<void*>(dc.data()));
  const double tol = m <= 16 ? 1e-12 : std::is_same_v<T, float> ? 1e-6 : 1e-12;
  std::vector<double> pot(m, 0.0), got(n);
  sl::cuda::candidate_pass<T>(X, n, d, stride, W, c.cand, m, C, pot.data(), false);
  sl::cuda::copy_device_to_host(got.data(), C, n * sizeof(double));
  c.check_potentials(pot, got, 1e-12);  // potentials: always the fused pass
  sl::cuda::candidate_pass<T>(X, n, d, stride, W, c.cand, m, C, nullptr, true);
  sl::cuda::copy_device_to_host(got.data(), C, n * sizeof(double));
  c.check_update(got, tol);
}

TEST(CudaKMeans, CandidatePassMatchesFloat64) {
  SKIP_WITHOUT_GPU();
  tu::for_candidate_cases([](auto t, std::int64_t n, std::int64_t d, std::int64_t m, std::int64_t stride, bool weighted) {
    candidate_pass_matches_host<decltype(t)>(n, d, m, stride, weighted);
  });
}

TEST(CudaCovariance, FusedAndGemmPathsMatchCpu) {
  SKIP_WITHOUT_GPU();
  // d <= 64 takes the fused kernel (16-, 32- and 64-wide tiles), d > 64 the batched-gemm Gram
  // pass (1024-row batches); row counts that are not multiples of a tile or a batch.
  for (std::int64_t d : {1, 3, 16, 17, 32, 33, 64, 65, 70, 130}) {
    covariance_matches_cpu<double>(100003, d, false);
    covariance_matches_cpu<float>(100003, d, false);
  }
  covariance_matches_cpu<double>(5, 16, false);  // fewer rows than one tile
  covariance_matches_cpu<double>(50001, 12, true);
  covariance_matches_cpu<float>(50001, 12, true);
  // Gram pass: fewer rows than one batch, exactly one batch, a poor first-row shift, and more
  // rows than one ~256 MiB chunk (float: 65 columns -> ~0.96M rows a chunk).
  covariance_matches_cpu<double>(7, 90, false);
  covariance_matches_cpu<float>(1024, 65, false);
  covariance_matches_cpu<double>(20001, 80, true);
  covariance_matches_cpu<float>(20001, 80, true);
  covariance_matches_cpu<float>(2100003, 65, false);
}

// The linear models' Gram pass (weighted_cross: [x | y] with weights) against a float64
// computation here from the same input values. Float data with q = d + t + 1 <= 128 takes the
// 3xTF32 tensor-core kernel: every unit count a warp can hold (1..5), the 16-byte and the 4-byte
// copy paths, a padded row stride, fewer rows than one slice, one row, rows enough for several
// spills of a block's float registers, zero weights, and a poor first-row shift (second pass).
template <class T>
void weighted_cross_matches_float64(std::int64_t n, std::int64_t d, std::int64_t t, std::int64_t sx,
                                    bool weighted, bool outlier_first_row) {
  const std::int64_t p = d + t;
  std::vector<double> z = tu::make_data(n, p, 100 + p);
  if (outlier_first_row)
    for (std::int64_t j = 0; j < p; ++j) z[j] += 1e4;
  std::vector<T> xs(static_cast<std::size_t>(n * sx), T(-7)), ys(static_cast<std::size_t>(n * t)), ws(n);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < d; ++j) xs[i * sx + j] = static_cast<T>(z[i * p + j]);
    for (std::int64_t j = 0; j < t; ++j) ys[i * t + j] = static_cast<T>(z[i * p + d + j]);
    ws[i] = weighted ? static_cast<T>(((i * 7919) % 13) / 4.0) : T(1);  // some zero
  }
  // Reference: float64 over the rounded values.
  double W = 0.0;
  std::vector<double> mean(p, 0.0), cross(p * p, 0.0), v(p);
  auto row = [&](std::int64_t i) {
    for (std::int64_t j = 0; j < d; ++j) v[j] = static_cast<double>(xs[i * sx + j]);
    for (std::int64_t j = 0; j < t; ++j) v[d + j] = static_cast<double>(ys[i * t + j]);
  };
  for (std::int64_t i = 0; i < n; ++i) {
    row(i);
    W += static_cast<double>(ws[i]);
    for (std::int64_t j = 0; j < p; ++j) mean[j] += static_cast<double>(ws[i]) * v[j];
  }
  for (auto& m : mean) m /= W;
  for (std::int64_t i = 0; i < n; ++i) {
    row(i);
    for (std::int64_t a = 0; a < p; ++a)
      for (std::int64_t b = 0; b < p; ++b)
        cross[a * p + b] += static_cast<double>(ws[i]) * (v[a] - mean[a]) * (v[b] - mean[b]);
  }
  sl::device_copy dx(xs.data(), xs.size() * sizeof(T)), dw(ws.data(), ws.size() * sizeof(T));
  std::unique_ptr<sl::device_copy> dy;
  if (t > 0) dy = std::make_unique<sl::device_copy>(ys.data(), ys.size() * sizeof(T));
  const auto got = sl::cuda::weighted_cross<T>(static_cast<const T*>(dx.data()), n, d, sx,
                                               dy ? static_cast<const T*>(dy->data()) : nullptr, t, t,
                                               weighted ? static_cast<const T*>(dw.data()) : nullptr);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-11;
  const std::string where = "n=" + std::to_string(n) + " d=" + std::to_string(d) + " t=" + std::to_string(t);
  // The float kernel carries each weight as sqrt(w) rounded to float, so W too has float error.
  EXPECT_NEAR(got.weight, W, tol * W) << where;
  double worst_mean = 0.0, worst_cross = 0.0;
  for (std::int64_t a = 0; a < p; ++a) {
    const double sd = std::sqrt(std::max(cross[a * p + a] / W, 0.0));
    const double mscale = std::abs(mean[a]) + sd;
    EXPECT_NEAR(got.mean[a], mean[a], tol * mscale + 1e-300) << where << " mean " << a;
    if (mscale > 0) worst_mean = std::max(worst_mean, std::abs(got.mean[a] - mean[a]) / mscale);
    for (std::int64_t b = 0; b < p; ++b) {
      const double scale = std::sqrt(cross[a * p + a] * cross[b * p + b]);
      EXPECT_NEAR(got.cross[a * p + b], cross[a * p + b], tol * scale + 1e-300) << where << " (" << a << "," << b << ")";
      EXPECT_EQ(got.cross[a * p + b], got.cross[b * p + a]) << where;
      if (scale > 0) worst_cross = std::max(worst_cross, std::abs(got.cross[a * p + b] - cross[a * p + b]) / scale);
    }
  }
  // The errors themselves, for the record (scripts/gpu-round.sh keeps the log).
  std::printf("weighted_cross<%s> %s w=%d: weight %.2e, mean %.2e, cross %.2e (relative)\n",
              std::is_same_v<T, float> ? "float" : "double", where.c_str(), int(weighted),
              std::abs(got.weight - W) / W, worst_mean, worst_cross);
}

TEST(CudaGram, WeightedCrossMatchesFloat64) {
  SKIP_WITHOUT_GPU();
  //                                     n        d    t   sx   weights outlier
  weighted_cross_matches_float64<float>(100003, 100, 1, 100, false, false);  // q 102: 4 units a warp
  weighted_cross_matches_float64<float>(50001, 61, 3, 61, true, false);      // 4-byte copies, q 65
  weighted_cross_matches_float64<float>(70001, 127, 0, 127, false, false);   // q 128: 5 units a warp
  weighted_cross_matches_float64<float>(70001, 124, 3, 128, true, false);    // padded stride
  weighted_cross_matches_float64<float>(20001, 30, 1, 32, false, false);     // 10 units: 2 a warp
  weighted_cross_matches_float64<float>(20001, 40, 2, 40, true, true);       // poor shift: second pass
  weighted_cross_matches_float64<float>(33, 5, 2, 8, true, false);           // under one slice
  weighted_cross_matches_float64<float>(1, 3, 1, 4, false, false);           // one row
  weighted_cross_matches_float64<float>(3000017, 20, 1, 20, true, false);    // several spills a block
  weighted_cross_matches_float64<double>(100003, 100, 1, 100, true, false);  // the batched-gemm path
  weighted_cross_matches_float64<double>(20001, 40, 2, 40, false, true);
}

TEST(CudaCovariance, NaNIsReportedWithItsPosition) {
  SKIP_WITHOUT_GPU();
  std::vector<double> x = tu::make_data(1000, 8, 3);
  x[517 * 8 + 5] = std::nan("");
  on_gpu<float> a(x, 1000, 8);
  auto self = sl::make_self_comm();
  try {
    sl::covariance::compute<float>(*self, a.device_view(), {});
    FAIL() << "no exception";
  } catch (const sl::error& e) {
    EXPECT_NE(std::string(e.what()).find("row 517, column 5"), std::string::npos) << e.what();
  }
}

TEST(CudaCovariance, MahalanobisMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const std::int64_t n = 20011, d = 40;
  std::vector<double> x = tu::make_data(n, d, 11);
  on_gpu<double> a(x, n, d);
  auto self = sl::make_self_comm();
  const auto fit = sl::covariance::compute<double>(*self, a.host_view(), {});
  const auto cpu = sl::covariance::mahalanobis<double>(fit.location, fit.precision, a.host_view());
  sl::cuda::device_doubles out(n);
  sl::covariance::mahalanobis<double>(fit.location, fit.precision, a.device_view(),
                                      {out.data(), n, sl::device_kind::cuda});
  const auto gpu = out.to_host();
  for (std::int64_t i = 0; i < n; ++i) ASSERT_NEAR(gpu[i], cpu[i], 1e-9 * (1.0 + cpu[i])) << i;
}

// ---- under mpirun ------------------------------------------------------------------------------

TEST(MpiCuda, DeviceAllreduceSumMinMaxIdenticalOnEveryRank) {
  SKIP_WITHOUT_GPU();
  auto c = sl::make_world_comm();
  const int me = c->rank(), p = c->size();
  const std::size_t n = 3001;
  for (auto op : {sl::reduce_op::sum, sl::reduce_op::min, sl::reduce_op::max}) {
    std::vector<double> v(n), expect(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = std::sin(0.1 * i + me) * (1 + me) + 1e-3 * i;
    expect = v;
    c->allreduce(expect.data(), n, sl::comm_type::float64, op);
    sl::cuda::device_doubles buf(n);
    buf.from_host(v);
    c->device_allreduce(buf.data(), n, sl::comm_type::float64, op);
    const auto got = buf.to_host();
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_NEAR(got[i], expect[i], 1e-12 * (std::abs(expect[i]) + p)) << i;
    // The same bits on every rank.
    std::vector<double> all(n * p);
    c->allgather(got.data(), all.data(), n, sl::comm_type::float64);
    for (int r = 0; r < p; ++r)
      ASSERT_EQ(std::memcmp(all.data() + r * n, got.data(), n * sizeof(double)), 0) << "rank " << r;
  }
  // 64-bit integers through the same buffer type.
  sl::cuda::device_doubles ib(4);
  std::vector<std::int64_t> iv{me, 1, -me, std::int64_t(1) << 40};
  sl::cuda::copy_host_to_device(ib.data(), iv.data(), sizeof(std::int64_t) * 4);
  c->device_allreduce(ib.data(), 4, sl::comm_type::int64, sl::reduce_op::sum);
  sl::cuda::copy_device_to_host(iv.data(), ib.data(), sizeof(std::int64_t) * 4);
  EXPECT_EQ(iv[0], static_cast<std::int64_t>(p) * (p - 1) / 2);
  EXPECT_EQ(iv[1], p);
  EXPECT_EQ(iv[3], static_cast<std::int64_t>(p) << 40);
}

#ifdef SPMDLEARN_TEST_NCCL
TEST(MpiCuda, CollectiveLeftByOneRankTimesOutAndRecovers) {
  SKIP_WITHOUT_GPU();
  auto c = sl::make_world_comm();
  if (c->size() < 2) GTEST_SKIP() << "needs two ranks";
  const int me = c->rank();
  MPI_Comm world = MPI_COMM_WORLD;
  sl::cuda::device_doubles buf(16);
  std::vector<double> ones(16, 1.0);
  buf.from_host(ones);
  // Creates the NCCL communicator; false (on every rank) when NCCL cannot serve these ranks,
  // e.g. when they share a GPU.
  if (!sl::detail::nccl_allreduce(&world, buf.data(), 16, sl::comm_type::float64, sl::reduce_op::sum))
    GTEST_SKIP() << "NCCL unusable here (ranks share a GPU?)";
  setenv("SPMDLEARN_NCCL_TIMEOUT", "3", 1);
  if (me == 0) {
    // Rank 0 enters a collective the others never join: it must come back with an error.
    const auto t0 = std::chrono::steady_clock::now();
    bool threw = false;
    try {
      sl::detail::nccl_allreduce(&world, buf.data(), 16, sl::comm_type::float64, sl::reduce_op::sum,
                                 /*agree_first=*/false);
    } catch (const sl::error& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()).find("did not complete"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(threw);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(waited, 60.0);
  }
  unsetenv("SPMDLEARN_NCCL_TIMEOUT");
  c->barrier();
  // Everyone recreates the NCCL communicator together and carries on.
  buf.from_host(ones);
  c->device_allreduce(buf.data(), 16, sl::comm_type::float64, sl::reduce_op::sum);
  const auto got = buf.to_host();
  for (double v : got) EXPECT_EQ(v, static_cast<double>(c->size()));
}
#endif

TEST(MpiCuda, CovarianceOfDeviceShardsEqualsHost) {
  SKIP_WITHOUT_GPU();
  auto c = sl::make_world_comm();
  const int me = c->rank(), p = c->size();
  for (std::int64_t d : {5, 24, 40}) {
    const std::int64_t n = 30011;
    std::vector<double> x = tu::make_data(n, d, 21);
    const auto rows = tu::split_rows(n, p, p > 2 ? 1 : -1);
    std::vector<double> mine(x.begin() + rows[me] * d, x.begin() + rows[me + 1] * d);
    on_gpu<double> a(mine, rows[me + 1] - rows[me], d);
    const auto gpu = sl::covariance::compute<double>(*c, a.device_view(), {false, false});
    const auto cpu = sl::covariance::compute<double>(*c, a.host_view(), {false, false});
    for (std::int64_t k = 0; k < d * d; ++k)
      ASSERT_NEAR(gpu.covariance[k], cpu.covariance[k], 1e-11 * (1 + std::abs(cpu.covariance[k]))) << k;
    std::vector<double> all(d * d * p);
    c->allgather(gpu.covariance.data(), all.data(), d * d, sl::comm_type::float64);
    for (int r = 0; r < p; ++r)
      ASSERT_EQ(std::memcmp(all.data() + r * d * d, gpu.covariance.data(), d * d * sizeof(double)), 0);
  }
}
