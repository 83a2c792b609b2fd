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

std::int64_t accumulate_rows(cross_moments& acc, std::int64_t n, std::int64_t p,
                             const std::function<void(std::int64_t, std::int64_t, double*, double*)>& fill) {
  if (acc.mean.size() != static_cast<std::size_t>(p)) acc.reset(p);
  const std::int64_t B = cross_chunk_rows(p);
  std::vector<double> z(B * p), w(B), upper(p * p);
  cross_moments chunk;
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    fill(i0, nb, z.data(), w.data());
    chunk.reset(p);
    chunk.rows = nb;
    double W = 0.0;
    for (std::int64_t i = 0; i < nb; ++i) {
      W += w[i];
      const double* r = z.data() + i * p;
      for (std::int64_t j = 0; j < p; ++j) chunk.mean[j] += w[i] * r[j];
    }
    bool finite = std::isfinite(W);
    for (std::int64_t j = 0; j < p; ++j) finite &= std::isfinite(chunk.mean[j]);
    if (!finite) return i0;
    chunk.weight = W;
    if (W > 0.0) {
      for (std::int64_t j = 0; j < p; ++j) chunk.mean[j] /= W;
      for (std::int64_t i = 0; i < nb; ++i) {
        const double s = std::sqrt(w[i]);
        double* r = z.data() + i * p;
        for (std::int64_t j = 0; j < p; ++j) r[j] = s * (r[j] - chunk.mean[j]);
      }
      // Column-major view: z is p x nb; syrk fills the upper triangle (column-major) = lower
      // row-major; mirror it.
      std::fill(upper.begin(), upper.end(), 0.0);
      cpu::syrk_acc(static_cast<int>(p), static_cast<int>(nb), z.data(), upper.data());
      cpu::symmetrize_upper(static_cast<int>(p), upper.data());
      chunk.cross = upper;
    }
    merge_into(acc, chunk);
  }
  return -1;
}

}  // namespace spmdlearn::detail
