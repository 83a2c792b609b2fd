// Exact merging of weighted means and centred second moments (Chan, Golub & LeVeque).
//
// Two groups a and b with weights W_a, W_b, means μ_a, μ_b and centred sums M_a, M_b merge to
//   W = W_a + W_b,  μ = μ_a + δ W_b / W,  M = M_a + M_b + (W_a W_b / W) δ δᵀ,  δ = μ_b - μ_a.
// No sum of raw squares is ever formed, so a mean of 1e4 with a spread of 1e-2 keeps its digits.
// The statistics and covariance algorithms both merge this way: chunk into rank, rank into all
// ranks, all ranks into the previous partial_fit state.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "spmdlearn/core/comm.hpp"

namespace spmdlearn::detail {

// Merges (wb, mean_b) into (wa, mean_a) in place. Writes δ = mean_b - mean_a (before the update)
// and returns the correction factor W_a W_b / W (0 when either side is empty).
double merge_mean(double& wa, std::span<double> mean_a, double wb, std::span<const double> mean_b,
                  std::span<double> delta);

// Collective. Every rank contributes (weight, rows, mean); every rank receives the global weight,
// rows and mean (merged in rank order: identical bits everywhere) and its own
// local_delta = mean_r - mean, for the correction weight_r · δ δᵀ it adds to its centred sum
// before the sum-allreduce:  M = Σ_r (M_r + W_r δ_r δ_rᵀ).
// `extra` (the same length on every rank) travels in the same allgather: every rank receives all
// ranks' (weight, rows, mean, extra) records in `gathered`, for decisions that must be the same
// everywhere (the cross-products' scale exponents) without one more collective.
struct global_mean {
  double weight = 0.0;
  std::int64_t rows = 0;
  std::vector<double> mean;
  std::vector<double> local_delta;
  std::vector<double> gathered;  // rank r's record at r * (mean.size() + extra.size() + 2)
};
global_mean merge_means_across(const comm& c, double weight, std::int64_t rows,
                               std::span<const double> mean, std::span<const double> extra = {});

}  // namespace spmdlearn::detail
