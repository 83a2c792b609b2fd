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
//
// Data near the float range: products of values beyond ~1e154 overflow and of values below
// ~1e-154 underflow, so cross is kept in units of 2^(exponent_i + exponent_j): column j enters
// the products as (z_j - mean_j) 2^-exponent_j. Powers of two scale exactly; exponent_j is 0
// unless column j's deviations leave [2^-400, 2^400] (see scale_exponent), so ordinary data never
// pay for it. Means are kept in data units (a mean is never out of range).
struct cross_moments {
  double weight = 0.0;
  std::int64_t rows = 0;
  std::vector<double> mean, cross;
  std::vector<int> exponent;
  void reset(std::int64_t p) {
    weight = 0.0;
    rows = 0;
    mean.assign(p, 0.0);
    cross.assign(p * p, 0.0);
    exponent.assign(p, 0);
  }
};

// No opinion on a column's scale (no rows, or no spread).
inline constexpr int no_exponent = -(1 << 20);

// The exponent e that brings a deviation of magnitude v into [2^-400, 2^400] as v 2^-e: 0 when v
// is there already, no_exponent for v == 0 (or NaN).
int scale_exponent(double v);

// a <- a merged with b (same p): a.cross += b.cross + (W_a W_b / W) δ δᵀ, δ = b.mean - a.mean,
// both sides first brought to common exponents (the larger of the two, or of δ's magnitude).
void merge_into(cross_moments& a, const cross_moments& b);

// Collective: the moments of all ranks' rows, merged in rank order (identical bits on every rank).
cross_moments merge_across(const comm& c, cross_moments local);

// Adds rows [0, n) to acc (p columns) in one pass about a fixed shift (the first row): for each
// chunk, prepare(i0, nb, shift, z, sum, W) writes sqrt(w_i) (z_i - shift) for rows i0..i0+nb-1
// into z (nb x p, row-major) and adds Σ w (z - shift) to sum and Σ w to W; the chunk is added to
// one p x p sum with BLAS syrk, and cross = S - s sᵀ / W at the end. When the first row was a
// poor shift for some column (shifted squares > 64x the centred ones) a second pass about the
// mean keeps every digit. When some column's squares overflowed or underflowed (values near the
// float range: read off the diagonal of S, so ordinary data pay nothing), one pass finds each
// column's largest deviation from the mean and one more adds the rows scaled by powers of two
// (cross_moments::exponent). `first_row` holds row 0's raw values. Returns the first chunk start
// whose values were not finite (the caller reports where), or -1.
using prepare_rows = std::function<void(std::int64_t i0, std::int64_t nb, const double* shift,
                                        double* z, double* sum, double& W)>;
std::int64_t accumulate_rows(cross_moments& acc, std::int64_t n, std::int64_t p,
                             std::vector<double> first_row, const prepare_rows& prepare);

// Rows per chunk for p columns: the double buffer stays around 1 MiB, and syrk gets k >= 64.
std::int64_t cross_chunk_rows(std::int64_t p);

}  // namespace spmdlearn::detail
