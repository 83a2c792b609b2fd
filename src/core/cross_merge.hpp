// Weighted centred second moments of row blocks: accumulation over cache-sized chunks and exact
// (Chan) merges -- chunk into rank, rank into all ranks, all ranks into a previous partial_fit
// state. Used by the covariance and the normal equations of the linear models.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "spmdlearn/core/comm.hpp"

namespace spmdlearn::detail {

// Weight W = Σ w, rows, mean (p) and cross = Σ w (z - mean)(z - mean)ᵀ (p x p, symmetric,
// row-major) of a group of rows z.
struct cross_moments {
  double weight = 0.0;
  std::int64_t rows = 0;
  std::vector<double> mean, cross;
  void reset(std::int64_t p) {
    weight = 0.0;
    rows = 0;
    mean.assign(p, 0.0);
    cross.assign(p * p, 0.0);
  }
};

// a <- a merged with b (same p): a.cross += b.cross + (W_a W_b / W) δ δᵀ, δ = b.mean - a.mean.
void merge_into(cross_moments& a, const cross_moments& b);

// Collective: the moments of all ranks' rows, merged in rank order (identical bits on every rank).
cross_moments merge_across(const comm& c, cross_moments local);

// Adds rows [0, n) to acc (p columns). fill(i0, nb, z, w) writes a chunk's raw rows (nb x p,
// row-major) into z and their weights into w (w >= 0). One pass about a fixed shift (the first
// row): each chunk is shifted and scaled by sqrt(w) in cache and added with BLAS syrk into one
// p x p sum; then cross = S - s sᵀ / W. When the first row was a poor shift for some column
// (shifted squares > 64x the centred ones) a second pass about the mean keeps every digit.
// Returns the first chunk start whose values were not finite (the caller reports where), or -1.
std::int64_t accumulate_rows(cross_moments& acc, std::int64_t n, std::int64_t p,
                             const std::function<void(std::int64_t, std::int64_t, double*, double*)>& fill);

// Rows per chunk for p columns: the double buffer stays around 1 MiB, and syrk gets k >= 64.
std::int64_t cross_chunk_rows(std::int64_t p);

}  // namespace spmdlearn::detail
