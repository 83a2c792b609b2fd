// Distributed k-means (scikit-learn's KMeans, Lloyd's algorithm), exact over all ranks' rows.
//
// Minimises the weighted inertia Σ_i w_i ‖x_i − c_{label(i)}‖² over k centres. Every rank holds its
// own rows; the fitted centres, inertia and iteration count are the same bits on every rank and
// equal scikit-learn's on the concatenated rows (for a given initialisation):
//   - the data are centred on the global (unweighted) column mean first, as scikit-learn does;
//   - tol is scaled by the mean of the global per-column variances (ddof 0, unweighted);
//   - one Lloyd iteration = a local E-step (rows in chunks: one BLAS gemm of the chunk against
//     the centres, ‖c‖² − 2 x·c, fused with the argmin and the per-cluster weighted sums -- never
//     an n x k matrix) and ONE allreduce of [k x d sums, k weights, labels changed, inertia];
//     empty clusters are moved to the globally farthest rows (largest distance to their own
//     centre over all ranks, ties by global row id) exactly as scikit-learn's
//     _relocate_empty_clusters_dense (two more small collectives, only in such iterations);
//   - stops on unchanged labels (strict convergence, counted over all ranks), on
//     Σ_j ‖c_j^new − c_j^old‖² <= tol, or after max_iter; without strict convergence one more
//     E-step makes the labels match the final centres.
// Initialisations (all draws from one std::mt19937_64 seeded with `seed`, replicated on every rank):
//   k-means++  scikit-learn's greedy variant (2 + ⌊ln k⌋ candidates per step), weighted: each
//              candidate is drawn from the global distribution w·D² -- the rank totals are
//              allgathered, the owner of a drawn row contributes it to an allreduce, candidate
//              potentials are allreduced;
//   random     k distinct rows drawn with probabilities proportional to w, without replacement
//              (numpy's choice(replace=False, p=w/Σw) scheme);
//   k-means||  Bahmani et al.: one weighted draw, then 5 rounds in which every row is kept with
//              probability min(1, 2k·w·D²/ψ) (a counter-based draw per global row id), the kept
//              rows weighted by the weight of the rows nearest to them, and weighted greedy
//              k-means++ on those candidates (replicated, small);
//   given      n_init x k x d centres in the coordinates of X.
// n_init runs; the lowest inertia wins (first on ties, and a run that only permutes the best
// clustering never replaces it, as scikit-learn).
//
//   spmdlearn::cluster::kmeans_params p;  p.n_clusters = 8;  p.seed = 42;
//   auto m = spmdlearn::cluster::kmeans_fit<double>(comm, X, std::nullopt, p);   // collective
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "spmdlearn/core/comm.hpp"
#include "spmdlearn/core/table.hpp"

namespace spmdlearn::cluster {

enum class kmeans_init : int { kmeans_plusplus = 0, random = 1, kmeans_parallel = 2, given = 3 };

struct kmeans_params {
  std::int64_t n_clusters = 8;
  kmeans_init init = kmeans_init::kmeans_plusplus;
  int n_init = 1;
  int max_iter = 300;
  double tol = 1e-4;        // relative: multiplied by the mean global column variance
  int verbose = 0;          // > 0: one line per iteration, printed by rank 0
  std::uint64_t seed = 0;   // must be equal on every rank
};

struct kmeans_model {
  std::int64_t n_features = 0;
  std::int64_t n_samples = 0;          // rows of all ranks
  std::vector<double> centers;         // k x d row-major
  std::vector<std::int32_t> labels;    // this rank's rows
  double inertia = 0.0;                // over all ranks' rows
  std::int64_t n_iter = 0;
  std::int64_t n_distinct = 0;         // clusters holding at least one row of any rank
};

// Collective. `init_centers`: n_init x k x d (row-major) when params.init == given, else empty.
// Every rank throws the same error for NaN/inf in X, bad sample weights, n_features or dtype
// differing between ranks, fewer rows in total than n_clusters, or init centres of the wrong size.
template <class T>
kmeans_model kmeans_fit(const comm& c, matrix_view<const T> X, std::optional<vector_view<const T>> w,
                        const kmeans_params& params, std::span<const double> init_centers = {});

// Local: the index of the nearest centre of each row (centres: k x d row-major), as scikit-learn's
// predict (‖c‖² − 2 x·c in the precision of X).
template <class T>
std::vector<std::int32_t> kmeans_predict(matrix_view<const T> X, std::span<const double> centers);

// Local: Euclidean distances of each row to each centre (n x k row-major, in double).
template <class T>
std::vector<double> kmeans_transform(matrix_view<const T> X, std::span<const double> centers);

// Collective: Σ w ‖x − nearest centre‖² over all ranks' rows (scikit-learn's score is its negative).
template <class T>
double kmeans_inertia(const comm& c, matrix_view<const T> X, std::optional<vector_view<const T>> w,
                      std::span<const double> centers);

}  // namespace spmdlearn::cluster
