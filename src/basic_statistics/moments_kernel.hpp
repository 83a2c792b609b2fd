// The hot loop of the statistics family: shifted moments of one cache-sized chunk, in one pass.
//
// For each column j of the chunk (rows 0..nb, weights w or 1):
//   s1[j] = Σ w (x - shift_j),  s2[j] = Σ w (x - shift_j)²,  lo/hi = min/max over rows with w > 0.
// With shift ≈ the mean, mean = shift + s1/W and M2 = s2 - s1²/W lose almost nothing to
// cancellation; the caller checks that and recomputes the chunk about its own mean when the shift
// was poor (data still in cache). A NaN/inf anywhere -- even in a zero-weight row, since 0·NaN is
// NaN -- makes s1 non-finite, so validation needs no separate pass.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace spmdlearn::basic_statistics::kernel {

// Σ w (x - m)² of a group from its sums about a shift, s1 = Σ w (x - shift) and
// s2 = Σ w (x - shift)² (m = shift + s1 / W): s2 - s1²/W, never negative. Near the float range s2
// may overflow -- then so does the centred sum, inf as numpy's, never NaN -- and s1² may
// overflow while s1²/W does not.
inline double centred_squares(double s1, double s2, double wsum) {
  if (!std::isfinite(s2)) return s2;
  const double q = s1 * s1;
  return std::max(0.0, s2 - (std::isfinite(q) ? q / wsum : s1 * (s1 / wsum)));
}

void chunk_moments(const double* x, std::int64_t stride, std::int64_t nb, std::int64_t d,
                   const double* w, const double* shift, double* s1, double* s2, double* lo,
                   double* hi);
void chunk_moments(const float* x, std::int64_t stride, std::int64_t nb, std::int64_t d,
                   const float* w, const double* shift, double* s1, double* s2, double* lo,
                   double* hi);

}  // namespace spmdlearn::basic_statistics::kernel
