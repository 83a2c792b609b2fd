// Host-side interface of the CUDA k-means local work (kmeans_cuda.cu); needs no CUDA headers.
//
// The k-means driver keeps a device block's labels and weights on X's GPU (alloc_labels,
// upload_doubles): an iteration moves only the k x d centres and sums over PCIe. The k-means++
// candidate distances (candidate_pass) still take host arrays.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace spmdlearn::cuda {

struct lloyd_device_partial {
  std::vector<double> sums;     // k x d: Σ w x over the rows nearest to each centre (update only)
  std::vector<double> weights;  // k: Σ w of those rows (update only)
  double inertia = 0.0;         // Σ w (‖x‖² + min_j(‖c_j‖² − 2 x·c_j)), when xsq is given
  std::int64_t changed = 0;     // rows whose label changed
};

// One Lloyd E-step (and, with `update`, the M-step's sums) over the rows of a device matrix X
// (n x d, row stride `stride`, the precision of X as scikit-learn), for the centres (k x d,
// host, row-major). All pointers are device memory on X's GPU: w (n weights, or null: all 1),
// xsq (‖x_i‖² in double, or null: inertia left 0), labels (n int32: the previous labels on
// entry, -1 for none; the new ones on return).
//   - distances and argmin in one fused kernel (a register-blocked gemm whose epilogue keeps the
//     first minimum of ‖c_j‖² − 2 x·c_j): no n x k matrix, not even a chunk of one;
//   - sums: tiles of 16384 rows, one thread per column adds w x into a k x d shared-memory tile in
//     row order, the tiles' partials are summed in tile order in double: deterministic (no
//     atomics on values), unlike an atomicAdd scatter.
template <class T>
lloyd_device_partial lloyd_step(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w,
                                const double* xsq, const std::vector<double>& centers, std::int64_t k,
                                std::int32_t* labels, bool update);
// The same, computing ‖x‖² itself when `with_inertia` (w and labels on X's GPU).
template <class T>
lloyd_device_partial lloyd_step_rows(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w,
                                     bool with_inertia, const std::vector<double>& centers, std::int64_t k,
                                     std::int32_t* labels, bool update);

// k-means++ on device rows: the tile sums (tiles of mass_tile rows, each summed in a fixed order)
// of m_i = w_i closest_i (a null factor counts as 1), and for each value u_j the first row of
// tile tiles[j] whose running mass start_j + Σ m reaches u_j (>= u; right: > u), else the tile's
// last row. w and closest on the GPU of `like`.
constexpr std::int64_t mass_tile = 1024;
std::vector<double> mass_tiles(const void* like, std::int64_t n, const double* w, const double* closest);
std::vector<std::int64_t> mass_find(const void* like, std::int64_t n, const double* w, const double* closest,
                                    const std::vector<std::int64_t>& tiles, const std::vector<double>& start,
                                    const std::vector<double>& u, bool right);
// n doubles, all `fill`, on the GPU of `like`; free with free_device.
double* filled_doubles(const void* like, std::int64_t n, double fill);

// Squared distances of the rows to m candidates (‖x‖² + ‖c‖² − 2 x·c, clipped at 0, in double from
// a gemm in the precision of X): with `pot`, pot[j] += Σ_i w_i min(closest_i, d_ij) (host, m);
// with `update`, closest_i <- min(closest_i, min_j d_ij). closest and w (or null) are n doubles on
// X's GPU.
template <class T>
void candidate_pass(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w,
                    const std::vector<double>& candidates, std::int64_t m, double* closest, double* pot,
                    bool update);
// The min(m, n) rows farthest from their own centre, (‖x_i − c_label(i)‖², i), farthest first, ties
// by lower i (the host path's order): distances and a radix sort on X's GPU, m pairs to the host.
template <class T>
std::vector<std::pair<double, std::int64_t>> farthest(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                                                      const std::vector<double>& centers, const std::int32_t* labels,
                                                      std::int64_t m);
// Σ_i w_i ‖x_i − c_label(i)‖² (exact differences, double, fixed order) and counts[label] += rows;
// labels and w (or null) on X's GPU, counts on the host (k).
template <class T>
double own_inertia(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const std::vector<double>& centers,
                   std::int64_t k, const std::int32_t* labels, const double* w, double* counts);
// n int32 labels on the GPU of `like`, all -1; free with free_device.
std::int32_t* alloc_labels(const void* like, std::int64_t n);
// n doubles copied to the GPU of `like`; free with free_device.
double* upload_doubles(const void* like, const double* h, std::int64_t n);
// Row i of a device matrix as doubles.
template <class T>
void copy_row(const T* X, std::int64_t i, std::int64_t d, std::int64_t stride, double* out);
// out (n x d, contiguous, device, the type of X) = X − mean in the precision of X (scikit-learn's
// X -= X.mean(axis=0)); out is allocated on X's device and freed with free_device.
template <class T>
T* centred_copy(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const std::vector<double>& mean);

}  // namespace spmdlearn::cuda
