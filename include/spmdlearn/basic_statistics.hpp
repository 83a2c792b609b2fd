// Distributed basic statistics: min, max, sum, mean, variance, ... of every column.
//
// Math (w = sample weights, 1 when absent; a weight k counts a row k times, as scikit-learn's
// sample_weight does; min/max range over rows with w > 0):
//   W = Σ w,  sum = Σ w x,  mean = sum / W,  M2 = Σ w (x - mean)²  (sum_squares_centered),
//   variance = M2 / (W - 1)  (ddof = 1; NaN when W <= 1),  standard_deviation = √variance,
//   sum_squares = Σ w x²,  second_order_raw_moment = sum_squares / W,
//   variation = standard_deviation / mean.
// Partial -> merge -> finalize: each rank streams its block once in cache-sized chunks (two-pass
// inside the chunk, Chan merges between chunks); ranks merge (W, mean, M2, min, max) exactly, so
// data with a large mean and a small spread keeps its precision.
//
//   auto world = spmdlearn::make_world_comm();
//   auto r = spmdlearn::basic_statistics::compute(*world, X);        // collective
//   r.mean[j], r.variance[j] ...                                      // identical on every rank
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "spmdlearn/core/comm.hpp"
#include "spmdlearn/core/table.hpp"

namespace spmdlearn::basic_statistics {

enum option : unsigned {
  min = 1u << 0,
  max = 1u << 1,
  sum = 1u << 2,
  mean = 1u << 3,
  variance = 1u << 4,
  standard_deviation = 1u << 5,
  sum_squares = 1u << 6,
  sum_squares_centered = 1u << 7,
  second_order_raw_moment = 1u << 8,
  variation = 1u << 9,
  all = (1u << 10) - 1,
};

// "mean" -> option::mean, "all" -> all. Throws invalid_argument for an unknown name.
unsigned parse_option(std::string_view name);
// The option names in declaration order (without "all").
const std::vector<std::string_view>& option_names();

// Sufficient statistics of all rows seen so far on all ranks; replicated (identical) on every rank.
struct state {
  std::int64_t n_features = 0;  // 0 until a first non-empty fit
  std::int64_t n_rows = 0;      // rows seen, whatever their weight
  double weight_sum = 0.0;      // W
  std::vector<double> mean;     // Σ w x / W
  std::vector<double> m2;       // Σ w (x - mean)²
  std::vector<double> min;      // over rows with w > 0 (+inf before any)
  std::vector<double> max;      // (-inf before any)
};

// Collective. Streams this rank's block X (n_r x d, n_r may be 0), merges every rank's block into
// `s`. Throws (on every rank) invalid_argument for NaN/inf, negative or non-finite weights, a
// weight vector of the wrong length, n_features or dtype that differ between ranks or from `s`,
// or when no rank holds any row. `caller` names the estimator in error messages.
template <class T>
void partial_fit(const comm& c, state& s, matrix_view<const T> X,
                 std::optional<vector_view<const T>> sample_weight = std::nullopt,
                 const char* caller = "BasicStatistics");

struct result {
  unsigned options = 0;
  std::int64_t n_features = 0;
  std::vector<double> min, max, sum, mean, variance, standard_deviation, sum_squares,
      sum_squares_centered, second_order_raw_moment, variation;  // empty unless in options
};

// Local, deterministic: the statistics from a merged state.
result finalize(const state& s, unsigned options = all);

// Collective: partial_fit on an empty state, then finalize.
template <class T>
result compute(const comm& c, matrix_view<const T> X,
               std::optional<vector_view<const T>> sample_weight = std::nullopt,
               unsigned options = all);

}  // namespace spmdlearn::basic_statistics
