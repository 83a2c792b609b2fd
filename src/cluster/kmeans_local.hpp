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

// Per-row doubles where a block's rows are (X's GPU for a device block): the weights (an empty
// span when all are 1) and k-means++'s closest squared distances. A copy shares the device memory.
class row_values {
 public:
  row_values() = default;
  template <class T>
  row_values(matrix_view<const T> X, const std::vector<double>& host);  // a copy of host (n or empty)
  template <class T>
  row_values(matrix_view<const T> X, double fill);  // X.rows values, all `fill`
  std::span<double> span() { return {data(), static_cast<std::size_t>(n_)}; }
  std::span<const double> span() const { return {data(), static_cast<std::size_t>(n_)}; }
  std::vector<double> host() const;  // a host copy

 private:
  double* data() const { return device_ ? device_.get() : const_cast<double*>(host_.data()); }
  std::int64_t n_ = 0;
  std::vector<double> host_;
  std::shared_ptr<double> device_;
};

// The cumulative mass m_i = w_i closest_i (closest empty: w_i; w empty: 1) of the local rows, for
// draws proportional to it: total() = Σ m_i and find(u) = the first local row whose cumulative
// mass is >= u (right: > u), the last row if none. Host rows: the serial cumulative sum (numpy's
// cumsum). Device rows: tile sums of 1024 rows (fixed order) on the host, then a scan of one tile
// on the GPU per value: two passes over w and closest, nothing of size n crosses PCIe.
class mass_index {
 public:
  explicit mass_index(std::vector<double> host_cumulative);
  template <class T>
  mass_index(matrix_view<const T> X, std::span<const double> w, std::span<const double> closest) {
    rebuild(X, w, closest);
  }
  // The same for new masses, reusing the host buffer (k-means++ rebuilds it every step: a fresh
  // n-double vector a step cost its page faults, ~6% of the init on 2M host rows).
  template <class T>
  void rebuild(matrix_view<const T> X, std::span<const double> w, std::span<const double> closest);
  double total() const { return total_; }
  std::vector<std::int64_t> find(const std::vector<double>& u, bool right) const;

 private:
  std::int64_t n_ = 0;
  double total_ = 0.0;
  std::vector<double> cum_;        // host rows: per row; device rows: per tile (inclusive)
  const double* w_ = nullptr;      // device rows: the masses' factors on the GPU
  const double* closest_ = nullptr;
  const void* like_ = nullptr;     // device rows: X's data (which GPU)
  bool device_ = false;
};

// What one E-step (and M-step accumulation) over the local block produces.
struct lloyd_partial {
  std::vector<double> sums;     // k x d: Σ w x over the rows nearest to each centre
  std::vector<double> weights;  // k: Σ w of those rows
  double inertia = 0.0;         // Σ w ‖x − c_label‖² from the assignment distances
  std::int64_t changed = 0;     // rows whose label differs from the label passed in
};

// Where the per-row arrays live: for a block on a GPU (X.device == cuda) every `w`, `labels` and
// `closest` is device memory on X's GPU (row_values, row_labels); `xsq` is host memory (the
// device functions compute ‖x‖² themselves).

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

// k-means++'s distances of the local rows to the candidates of one potentials pass, kept as
// scikit-learn keeps its distance_to_candidates: moving closest to the chosen candidate then reads
// one column instead of every row of X. Host rows only, for m <= 16 candidates, and only when the
// n x m doubles take no more memory than the rows themselves (m·8 <= d·sizeof(T)); otherwise m
// stays 0 and the driver runs update_closest_local. Candidate-major, so that the column read is
// contiguous. Device rows keep nothing: a pass over X on the GPU is cheap.
struct candidate_distances {
  std::vector<double> d;   // candidate j's column: d[j * n, (j + 1) * n)
  std::int64_t m = 0;
};

// k-means++ / k-means||: squared distances of the local rows to m candidate centres (m x d),
// ‖x‖² + ‖c‖² − 2 x·c in double, clipped at 0 (scikit-learn's euclidean_distances).
//   candidate_potentials_local: for each candidate j, Σ_i w_i min(closest_i, d(x_i, c_j)); with
//                               `keep`, the distances too (see candidate_distances);
//   update_closest_local:       closest_i <- min(closest_i, min_j d(x_i, c_j));
//   take_kept_candidate:        closest_i <- min(closest_i, kept d(x_i, c_j)); false (nothing
//                               done) when nothing was kept.
// `threads`: worker threads for host rows with m <= 16 (the potentials' summation order depends on
// it, as the Lloyd step's).
template <class T>
std::vector<double> candidate_potentials_local(matrix_view<const T> X, std::span<const double> xsq,
                                               std::span<const double> w,
                                               std::span<const double> candidates, std::int64_t m,
                                               std::span<const double> closest,
                                               candidate_distances* keep = nullptr, int threads = 1);
template <class T>
void update_closest_local(matrix_view<const T> X, std::span<const double> xsq,
                          std::span<const double> candidates, std::int64_t m,
                          std::span<double> closest, int threads = 1);
bool take_kept_candidate(const candidate_distances& kept, std::int64_t j, std::span<double> closest);

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
