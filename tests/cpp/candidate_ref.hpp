// A k-means++ candidate-pass case and its float64 reference, shared by the CPU test
// (test_cluster.cpp) and the CUDA test (test_cuda.cpp): rows X (n x d, row stride `stride`, values
// of type T), m candidates near rows of X, weights (or none), and closest distances that include
// +inf (a first step) and 0. The reference takes ‖x‖² + ‖c‖² − 2 x·c, clipped at 0, in double:
//   pot_ref[j] = Σ_i w_i min(closest_i, d_ij),   closest_ref_i = min(closest_i, min_j d_ij).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace tu {

template <class T>
struct candidate_case {
  std::int64_t n, d, m, stride;
  bool weighted;
  std::vector<T> x;                   // n x stride
  std::vector<double> cand, w, closest, xsq;
  std::vector<double> pot_ref, closest_ref;
  std::vector<double> scale;          // per row: max over candidates of ‖x‖² + ‖c‖² (error scale)
  double pot_scale = 0.0;             // Σ_i w_i scale_i

  candidate_case(std::int64_t rows, std::int64_t cols, std::int64_t cands, std::int64_t ld, bool weights)
      : n(rows), d(cols), m(cands), stride(ld), weighted(weights) {
    gen_options o;
    o.loc0 = 0.0;  // the k-means driver centres X first
    o.loc_step = 0.1;
    const std::vector<double> x0 = make_data(n, d, 11 + d + m, o);
    x.assign(n * stride, T(0));
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t l = 0; l < d; ++l) x[i * stride + l] = static_cast<T>(x0[i * d + l]);
    std::mt19937_64 rng(3 + m);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    cand.resize(m * d);
    for (std::int64_t j = 0; j < m; ++j)  // rows of X, moved a little: not exactly a row
      for (std::int64_t l = 0; l < d; ++l)
        cand[j * d + l] = static_cast<double>(x[((j * 7919) % n) * stride + l]) + 0.01 * (u(rng) - 0.5);
    w.assign(n, 1.0);
    closest.resize(n);
    for (std::int64_t i = 0; i < n; ++i) {
      if (weighted) w[i] = i % 13 == 0 ? 0.0 : 0.2 + 2.0 * u(rng);
      closest[i] = i % 5 == 0 ? std::numeric_limits<double>::infinity() : i % 17 == 0 ? 0.0 : 4.0 * d * u(rng);
    }
    pot_ref.assign(m, 0.0);
    closest_ref = closest;
    scale.resize(n);
    xsq.assign(n, 0.0);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t l = 0; l < d; ++l) xsq[i] += static_cast<double>(x[i * stride + l]) * static_cast<double>(x[i * stride + l]);
      scale[i] = xsq[i];
      for (std::int64_t j = 0; j < m; ++j) {
        const double dij = dist(i, j);
        scale[i] = std::max(scale[i], xsq[i] + csq(j));
        pot_ref[j] += w[i] * std::min(closest[i], dij);
        closest_ref[i] = std::min(closest_ref[i], dij);
      }
      pot_scale += w[i] * scale[i];
    }
  }

  double csq(std::int64_t j) const {
    double s = 0.0;
    for (std::int64_t l = 0; l < d; ++l) s += cand[j * d + l] * cand[j * d + l];
    return s;
  }
  // d_ij = max(0, ‖x_i‖² + ‖c_j‖² − 2 x_i·c_j) in double (xsq filled first).
  double dist(std::int64_t i, std::int64_t j) const {
    double dot = 0.0;
    for (std::int64_t l = 0; l < d; ++l) dot += static_cast<double>(x[i * stride + l]) * cand[j * d + l];
    return std::max(0.0, xsq[i] + csq(j) - 2.0 * dot);
  }

  std::string what() const {
    return "n " + std::to_string(n) + " d " + std::to_string(d) + " m " + std::to_string(m);
  }
  // pot: the pass's potentials; after: closest as the pass left it (potentials only: unchanged).
  void check_potentials(const std::vector<double>& pot, const std::vector<double>& after, double tol) const {
    for (std::int64_t j = 0; j < m; ++j) EXPECT_NEAR(pot[j], pot_ref[j], tol * pot_scale) << what() << " candidate " << j;
    EXPECT_EQ(after, closest) << "a potentials pass must not move closest: " << what();
  }
  // got: closest after moving it to candidate j alone: min(closest_i, d_ij).
  void check_take(const std::vector<double>& got, std::int64_t j, double tol) const {
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double want = std::min(closest[i], dist(i, j));
      if (!(std::abs(got[i] - want) <= tol * 8 * scale[i] || got[i] == want)) ++bad;
    }
    EXPECT_EQ(bad, 0) << "closest moved to candidate " << j << " off: " << what();
  }
  // got: closest after an update pass.
  void check_update(const std::vector<double>& got, double tol) const {
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < n; ++i)
      if (!(std::abs(got[i] - closest_ref[i]) <= tol * 8 * scale[i] || got[i] == closest_ref[i])) ++bad;
    EXPECT_EQ(bad, 0) << "closest distances off: " << what();
  }
};

// The shapes both backends run: m around the fused passes' 4 / 8 / 16 widths, d around their
// chunk widths, a padded stride, fewer rows than a tile, and m = 40 (k-means||: more than 16).
template <class F>
void for_candidate_cases(F&& run) {
  for (std::int64_t m : {1, 3, 7, 8, 9, 16}) {
    run(float{}, 100003, 33, m, 33, m % 2 == 1);
    run(double{}, 100003, 33, m, 33, m % 2 == 0);
  }
  for (std::int64_t d : {1, 5, 16, 32, 64, 100}) {
    run(float{}, 20011, d, 7, d, true);
    run(double{}, 20011, d, 7, d, false);
  }
  run(float{}, 50000, 10, 7, 13, true);  // a padded stride
  run(double{}, 50000, 10, 4, 11, false);
  run(float{}, 5, 3, 7, 3, true);        // fewer rows than a tile
  run(float{}, 30000, 20, 40, 20, true);
  run(double{}, 30000, 20, 40, 20, false);
}

}  // namespace tu
