// Distributed empirical covariance (scikit-learn's EmpiricalCovariance).
//
// Math: location = mean, covariance = Σ (x - mean)(x - mean)ᵀ / n (biased, as scikit-learn);
// assume_centered: location = 0, covariance = Σ x xᵀ / n. precision = pinvh(covariance) (eigen-
// decomposition, eigenvalues below d·eps(dtype)·max|λ| dropped, as scipy.linalg.pinvh).
// Partial -> merge -> finalize: each rank centres cache-sized chunks on their own mean and adds
// them with BLAS syrk plus a rank-1 Chan correction; ranks merge the centred cross-product
// matrices with the same correction against the global mean, so a large mean costs no precision.
//
//   auto r = spmdlearn::covariance::compute(*world, X, {});   // collective
//   r.covariance[i * d + j]                                     // row-major d x d
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "spmdlearn/core/comm.hpp"
#include "spmdlearn/core/table.hpp"

namespace spmdlearn::covariance {

// Replicated on every rank: all rows of all ranks seen so far.
struct state {
  std::int64_t n_features = 0;
  std::int64_t n_rows = 0;
  std::vector<double> mean;   // d
  std::vector<double> cross;  // d x d row-major, Σ (x - mean)(x - mean)ᵀ
};

struct params {
  bool assume_centered = false;
  bool store_precision = true;
};

struct result {
  std::int64_t n_features = 0;
  std::vector<double> location;    // d (zeros when assume_centered)
  std::vector<double> covariance;  // d x d
  std::vector<double> precision;   // d x d, empty unless store_precision
};

// Collective; merges every rank's block X into s. Throws on every rank for NaN/inf, n_features or
// dtype that differ between ranks or from s, and when no rank holds a row.
template <class T>
void partial_fit(const comm& c, state& s, matrix_view<const T> X);

// Local. `precision_dtype` picks the pinvh cutoff's epsilon (float32 results use float32's).
result finalize(const state& s, const params& p, dtype precision_dtype = dtype::float64);

template <class T>
result compute(const comm& c, matrix_view<const T> X, const params& p);

// Pseudo-inverse of a symmetric d x d matrix (scipy.linalg.pinvh's default cutoff).
std::vector<double> pinvh(std::span<const double> a, std::int64_t d, dtype eps_dtype);

// Local: squared Mahalanobis distance of each row of X: (x - location)ᵀ precision (x - location).
template <class T>
std::vector<double> mahalanobis(std::span<const double> location, std::span<const double> precision,
                                matrix_view<const T> X);
// The same for X in CUDA device memory: the n distances are written to `out`, n doubles on X's
// GPU (centred chunks, cuBLAS dgemm with the precision, a row-wise dot product).
template <class T>
void mahalanobis(std::span<const double> location, std::span<const double> precision,
                 matrix_view<const T> X, vector_view<double> out);

// Collective: Gaussian log-likelihood of all ranks' rows of X under (location, precision), as
// scikit-learn's EmpiricalCovariance.score.
template <class T>
double score(const comm& c, std::span<const double> location, std::span<const double> precision,
             matrix_view<const T> X);

}  // namespace spmdlearn::covariance
