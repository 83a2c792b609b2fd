// Host-side interface of the CUDA k-means E/M step (kmeans_cuda.cu); needs no CUDA headers.
//
// STATUS (2026-11-27, session 3): written and compiled, not yet called by the k-means driver and
// not yet run on a GPU (the session's GPU time was spent); the next step is to wire it behind
// src/cluster/kmeans_local.hpp's lloyd_step_local for device blocks and test it against the CPU
// path (tests/python/test_gpu.py), then benchmark (bench/, 20M x 64, k = 256).
#pragma once

#include <cstdint>
#include <vector>

namespace spmdlearn::cuda {

struct lloyd_device_partial {
  std::vector<double> sums;     // k x d: Σ w x over the rows nearest to each centre
  std::vector<double> weights;  // k: Σ w of those rows
  double inertia = 0.0;         // Σ w (‖x‖² + min_j(‖c_j‖² − 2 x·c_j)), when xsq is given
  std::int64_t changed = 0;     // rows whose label changed
};

// One Lloyd E-step (and, with `update`, the M-step's sums) over the rows of a device matrix X
// (n x d, row stride `stride`, the precision of X as scikit-learn), for the centres (k x d,
// host, row-major). All pointers are device memory on X's GPU: w (n weights, or null: all 1),
// xsq (‖x_i‖², or null: inertia left 0), labels (n int32: the previous labels on entry, -1 for
// none; the new ones on return).
//   - distances of a chunk of rows: cuBLAS gemm G = X_chunk Cᵀ (never an n x k matrix for all
//     rows), then one warp per row takes argmin_j ‖c_j‖² − 2 G_ij (first minimum, as scikit-learn);
//   - sums: tiles of 4096 rows, one thread per column adds w x into a k x d shared-memory tile in
//     row order, the tiles' partials are summed in tile order in double: deterministic (no
//     atomics on values), unlike an atomicAdd scatter.
template <class T>
lloyd_device_partial lloyd_step(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const T* w,
                                const T* xsq, const std::vector<double>& centers, std::int64_t k,
                                std::int32_t* labels, bool update);

}  // namespace spmdlearn::cuda
