// The per-block (local) work of k-means: the only code that touches the rows. The collective
// driver (kmeans.cpp) calls nothing else on the data, so a CUDA backend replaces these functions
// and keeps the driver, its collectives and its decisions unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "spmdlearn/core/table.hpp"

namespace spmdlearn::cluster::detail {

// Per-row int32 labels kept where a block's rows are: host memory, or the rows' GPU for a device
// block, so the Lloyd loop never moves them over PCIe. Move-only (the device memory is owned).
class row_labels {
 public:
  row_labels() = default;
  template <class T>
  explicit row_labels(matrix_view<const T> X);  // X.rows labels, all -1, where X is
  std::span<std::int32_t> span() { return {data(), static_cast<std::size_t>(n_)}; }
  std::span<const std::int32_t> span() const { return {data(), static_cast<std::size_t>(n_)}; }
  std::vector<std::int32_t> host() const;  // a host copy
  std::int32_t at(std::int64_t i) const;   // one label (device: one small copy)

 private:
  std::int32_t* data() const { return device_ ? device_.get() : const_cast<std::int32_t*>(host_.data()); }
  std::int64_t n_ = 0;
  std::vector<std::int32_t> host_;
  std::shared_ptr<std::int32_t> device_;  // shared by copies: a copy is a second handle, not a copy
};

// Per-row weights as doubles where a block's rows are (a device copy of the host weights for a
// device block); an empty span when all weights are 1.
class row_weights {
 public:
  row_weights() = default;
  template <class T>
  row_weights(matrix_view<const T> X, const std::vector<double>& host);
  std::span<const double> span() const {
    return {device_ ? device_.get() : host_.data(), static_cast<std::size_t>(n_)};
  }

 private:
  std::int64_t n_ = 0;
  std::vector<double> host_;
  std::shared_ptr<double> device_;
};

// What one E-step (and M-step accumulation) over the local block produces.
struct lloyd_partial {
  std::vector<double> sums;     // k x d: Σ w x over the rows nearest to each centre
  std::vector<double> weights;  // k: Σ w of those rows
  double inertia = 0.0;         // Σ w ‖x − c_label‖² from the assignment distances
  std::int64_t changed = 0;     // rows whose label differs from the label passed in
};

// Where the per-row arrays live: for a block on a GPU (X.device == cuda) the `w` of
// lloyd_step_local and inertia_local and every `labels` are device memory on X's GPU (row_weights,
// row_labels); `xsq`, `closest` and the `w` of the k-means++ functions are host memory always.

// E-step over the local rows: labels[i] <- argmin_j (‖c_j‖² − 2 x_i·c_j) (first minimum), with the
// distance block of a chunk of rows computed by one gemm in the precision of X (as scikit-learn)
// and reduced at once -- never an n x k matrix. With `update`, also the weighted sums and weights
// per cluster. `labels` holds the previous labels on entry (-1: none) for the `changed` count.
// `w`: n weights or empty (all 1). `xsq`: ‖x_i‖² (for the inertia) or empty (inertia left 0).
// `threads`: worker threads for this rank (results do not depend on it beyond summation order).
template <class T>
lloyd_partial lloyd_step_local(matrix_view<const T> X, std::span<const double> w,
                               std::span<const double> xsq, std::span<const double> centers,
                               std::int64_t k, std::span<std::int32_t> labels, bool update,
                               int threads);

// Up to m rows of the local block farthest from their own centre (‖x − c_label‖², exact
// differences in double), largest first, ties by lower row index: (distance, local row).
template <class T>
std::vector<std::pair<double, std::int64_t>> farthest_local(matrix_view<const T> X,
                                                             std::span<const double> centers,
                                                             std::span<const std::int32_t> labels,
                                                             std::int64_t m);

// k-means++ / k-means||: squared distances of the local rows to m candidate centres (m x d),
// ‖x‖² + ‖c‖² − 2 x·c in double, clipped at 0 (scikit-learn's euclidean_distances).
//   candidate_potentials_local: for each candidate j, Σ_i w_i min(closest_i, d(x_i, c_j));
//   update_closest_local:       closest_i <- min(closest_i, min_j d(x_i, c_j)).
template <class T>
std::vector<double> candidate_potentials_local(matrix_view<const T> X, std::span<const double> xsq,
                                               std::span<const double> w,
                                               std::span<const double> candidates, std::int64_t m,
                                               std::span<const double> closest);
template <class T>
void update_closest_local(matrix_view<const T> X, std::span<const double> xsq,
                          std::span<const double> candidates, std::int64_t m,
                          std::span<double> closest);

// Σ_i w_i ‖x_i − c_label(i)‖² (exact differences, double), and the rows per label (k).
template <class T>
double inertia_local(matrix_view<const T> X, std::span<const double> w,
                     std::span<const double> centers, std::span<const std::int32_t> labels,
                     std::span<double> counts);

// Euclidean distances (n x k) as scikit-learn's euclidean_distances: sqrt(max(‖x‖² − 2 x·c + ‖c‖², 0))
// in double.
template <class T>
std::vector<double> distances_local(matrix_view<const T> X, std::span<const double> centers,
                                    std::int64_t k);

// Row i of the block as doubles (a device block: one small copy from the GPU).
template <class T>
void copy_row(matrix_view<const T> X, std::int64_t i, double* out);

}  // namespace spmdlearn::cluster::detail
