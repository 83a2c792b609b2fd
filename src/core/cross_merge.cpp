#include "core/cross_merge.hpp"

#include <algorithm>
#include <cmath>

#include "backend/cpu/lapack.hpp"
#include "core/merge.hpp"

namespace spmdlearn::detail {

std::int64_t cross_chunk_rows(std::int64_t p) {
  const std::int64_t r = (1 << 20) / (8 * std::max<std::int64_t>(p, 1));
  return std::clamp<std::int64_t>(r, 64, 8192);
}

void merge_into(cross_moments& a, const cross_moments& b) {
  const std::int64_t p = static_cast<std::int64_t>(b.mean.size());
  if (a.mean.size() != b.mean.size()) a.reset(p);
  std::vector<double> delta(p);
  const double f = merge_mean(a.weight, a.mean, b.weight, b.mean, delta);
  a.rows += b.rows;
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = 0; j < p; ++j) a.cross[i * p + j] += b.cross[i * p + j] + f * delta[i] * delta[j];
}

cross_moments merge_across(const comm& c, cross_moments local) {
  const std::int64_t p = static_cast<std::int64_t>(local.mean.size());
  global_mean g = merge_means_across(c, local.weight, local.rows, local.mean);
  // Σ_r (M_r + W_r δ_r δ_rᵀ), δ_r = mean_r - mean: reduce the upper triangle only.
  std::vector<double> packed;
  packed.reserve(p * (p + 1) / 2);
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = i; j < p; ++j)
      packed.push_back(local.cross[i * p + j] + local.weight * g.local_delta[i] * g.local_delta[j]);
  c.allreduce<double>(packed, reduce_op::sum);
  cross_moments out;
  out.weight = g.weight;
  out.rows = g.rows;
  out.mean = std::move(g.mean);
  out.cross.assign(p * p, 0.0);
  std::size_t k = 0;
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = i; j < p; ++j, ++k) out.cross[i * p + j] = out.cross[j * p + i] = packed[k];
  return out;
}

namespace {

// One pass over rows [0, n) about `shift`: W = Σ w, s = Σ w (z - shift),
// S = Σ w (z - shift)(z - shift)ᵀ (BLAS syrk on each prepared chunk, accumulated in place).
// Returns the first chunk whose sums were not finite, or -1.
std::int64_t shifted_pass(std::int64_t n, std::int64_t p, const prepare_rows& prepare,
                          const std::vector<double>& shift, double& W, std::vector<double>& sum,
                          std::vector<double>& S) {
  const std::int64_t B = cross_chunk_rows(p);
  std::vector<double> z(B * p);
  W = 0.0;
  sum.assign(p, 0.0);
  S.assign(p * p, 0.0);
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    prepare(i0, nb, shift.data(), z.data(), sum.data(), W);
    bool finite = std::isfinite(W);
    for (std::int64_t j = 0; j < p; ++j) finite &= std::isfinite(sum[j]);
    if (!finite) return i0;
    cpu::syrk_acc(static_cast<int>(p), static_cast<int>(nb), z.data(), S.data());
  }
  cpu::symmetrize_upper(static_cast<int>(p), S.data());
  return -1;
}

}  // namespace

std::int64_t accumulate_rows(cross_moments& acc, std::int64_t n, std::int64_t p,
                             std::vector<double> shift, const prepare_rows& prepare) {
  if (acc.mean.size() != static_cast<std::size_t>(p)) acc.reset(p);
  if (n == 0) return -1;
  for (auto& v : shift)
    if (!std::isfinite(v)) v = 0.0;  // reported by the pass
  std::vector<double> sum, S;
  double W = 0.0;
  const std::int64_t bad = shifted_pass(n, p, prepare, shift, W, sum, S);
  if (bad >= 0) return bad;
  cross_moments local;
  local.reset(p);
  local.rows = n;
  local.weight = W;
  if (W > 0.0) {
    bool poor = false;
    for (std::int64_t j = 0; j < p; ++j) {
      const double centred = S[j * p + j] - sum[j] * sum[j] / W;
      poor |= S[j * p + j] > 64.0 * std::max(centred, 0.0) && S[j * p + j] > 0.0;
    }
    if (poor) {
      // The first row was far from the mean of some column: once more about the mean, so the
      // cancellation in S - s sᵀ / W costs no digits.
      for (std::int64_t j = 0; j < p; ++j) shift[j] += sum[j] / W;
      shifted_pass(n, p, prepare, shift, W, sum, S);
    }
    for (std::int64_t j = 0; j < p; ++j) local.mean[j] = shift[j] + sum[j] / W;
    for (std::int64_t i = 0; i < p; ++i)
      for (std::int64_t j = 0; j < p; ++j) local.cross[i * p + j] = S[i * p + j] - sum[i] * sum[j] / W;
  }
  merge_into(acc, local);
  return -1;
}

}  // namespace spmdlearn::detail
