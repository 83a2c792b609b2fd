// Distributed PCA (scikit-learn's PCA / IncrementalPCA).
//
// Both solvers return the whole spectrum of the centred data of all ranks; the Python layer picks
// n_components (int, fraction of variance, "mle") from it as scikit-learn does.
//   covariance_eigh: eigen-decomposition of the exactly merged centred cross-products (the
//     covariance state: one pass, Chan merges); explained_variance = λ / (n - 1), singular values
//     sqrt(λ), d of them.
//   full: exact SVD without forming XᵀX -- a global mean (one pass), then TSQR: each rank QR-
//     factorises its centred rows chunk by chunk (LAPACK dgeqrf on [R; chunk]), the ranks' R
//     factors are allgathered and factorised once more (same bits on every rank), and the SVD of
//     the final d x d R gives the singular values and right singular vectors. Conditioning as the
//     SVD of X (not squared), min(n, d) values.
// Components are the right singular vectors as rows, signed so that each one's largest-magnitude
// entry is positive (scikit-learn's svd_flip with u_based_decision=False).
//
//   auto s = spmdlearn::decomposition::pca_full<double>(comm, X);   // collective
#pragma once

#include <cstdint>
#include <vector>

#include "spmdlearn/core/comm.hpp"
#include "spmdlearn/core/table.hpp"
#include "spmdlearn/covariance.hpp"

namespace spmdlearn::decomposition {

struct pca_spectrum {
  std::int64_t n_samples = 0;
  std::int64_t n_features = 0;
  std::vector<double> mean;                // d
  std::vector<double> singular;            // r, descending
  std::vector<double> explained_variance;  // r: singular² / (n - 1)
  std::vector<double> components;          // r x d row-major
};

// Local: the spectrum of a merged covariance state (covariance::partial_fit), r = d. `on_gpu`:
// the eigen-decomposition runs on the current GPU (cuSOLVER), for states of GPU rows on every rank.
pca_spectrum pca_covariance_eigh(const covariance::state& s, bool on_gpu = false);

// Collective: exact SVD of all ranks' centred rows by TSQR, r = min(n, d). Every rank throws the
// same error for NaN/inf, n_features or dtype differing between ranks, or no rows anywhere.
template <class T>
pca_spectrum pca_full(const comm& c, matrix_view<const T> X);

// Local: Minka's maximum-likelihood choice of the number of components (n_components="mle")
// from the explained variances (descending) and the number of samples, as scikit-learn's
// _infer_dimension: the rank in [1, r - 1] with the largest log-likelihood.
std::int64_t infer_dimension(const std::vector<double>& spectrum, std::int64_t n_samples);

// Collective: randomized SVD of all ranks' centred rows (Halko, Martinsson & Tropp): a Gaussian
// test matrix Ω (d x (k + oversamples)) drawn from `seed` (the same on every rank), Y = Xc Ω,
// `n_iter` power iterations (Y <- Xc (Xcᵀ Q)), each range orthonormalised by CholeskyQR2 with a
// Gram matrix allreduced over the ranks, then B = Qᵀ Xc (one allreduce) and the SVD of the small
// B. Returns the top k values/vectors and, in `total_variance`, Σ_j var(x_j) (ddof 1) over all
// rows, for scikit-learn's explained_variance_ratio_ and noise_variance_.
struct randomized_spectrum : pca_spectrum {
  double total_variance = 0.0;
};
template <class T>
randomized_spectrum pca_randomized(const comm& c, matrix_view<const T> X, std::int64_t k,
                                   std::int64_t oversamples, int n_iter, std::uint64_t seed);

}  // namespace spmdlearn::decomposition
