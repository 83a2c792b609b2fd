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

int scale_exponent(double v) {
  if (!(v > 0.0)) return no_exponent;
  if (!std::isfinite(v)) return 1024;
  const int e = std::ilogb(v);
  return (e >= -400 && e <= 400) ? 0 : e + 1;
}

namespace {

// Column j's opinion on its exponent: none when the group has no weight or j has no spread.
int opinion(const cross_moments& m, std::int64_t j) {
  const std::int64_t p = static_cast<std::int64_t>(m.mean.size());
  return m.weight > 0.0 && m.cross[j * p + j] != 0.0 ? m.exponent[j] : no_exponent;
}

int settled(int e) { return e == no_exponent ? 0 : e; }

// m.cross re-expressed in units of the exponents `to` (each >= m's own where m has an opinion:
// exact, but for contributions that underflow because they lie below the others' rounding).
// Columns without spread have zero rows (the matrix is positive semi-definite).
void rescale(cross_moments& m, const std::vector<int>& to) {
  if (m.exponent == to) return;
  const std::int64_t p = static_cast<std::int64_t>(m.mean.size());
  std::vector<char> flat(p);
  for (std::int64_t j = 0; j < p; ++j) flat[j] = m.cross[j * p + j] == 0.0;
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = 0; j < p; ++j) {
      double& v = m.cross[i * p + j];
      v = flat[i] || flat[j] ? 0.0 : std::ldexp(v, m.exponent[i] + m.exponent[j] - to[i] - to[j]);
    }
  m.exponent = to;
}

}  // namespace

void merge_into(cross_moments& a, const cross_moments& b) {
  const std::int64_t p = static_cast<std::int64_t>(b.mean.size());
  if (a.mean.size() != b.mean.size()) a.reset(p);
  std::vector<int> to(p);
  for (std::int64_t j = 0; j < p; ++j) to[j] = std::max(opinion(a, j), opinion(b, j));
  std::vector<double> delta(p);
  const double f = merge_mean(a.weight, a.mean, b.weight, b.mean, delta);
  for (std::int64_t j = 0; j < p; ++j) {
    if (f != 0.0) to[j] = std::max(to[j], scale_exponent(std::abs(delta[j])));
    to[j] = settled(to[j]);
    delta[j] = std::ldexp(delta[j], -to[j]);
  }
  rescale(a, to);
  cross_moments scaled_b;
  const cross_moments* bp = &b;
  if (b.exponent != to) {
    scaled_b = b;
    rescale(scaled_b, to);
    bp = &scaled_b;
  }
  a.rows += b.rows;
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = 0; j < p; ++j) a.cross[i * p + j] += bp->cross[i * p + j] + f * delta[i] * delta[j];
}

cross_moments merge_across(const comm& c, cross_moments local) {
  const std::int64_t p = static_cast<std::int64_t>(local.mean.size());
  std::vector<double> opinions(p);
  for (std::int64_t j = 0; j < p; ++j) opinions[j] = opinion(local, j);
  global_mean g = merge_means_across(c, local.weight, local.rows, local.mean, opinions);
  // Common exponents from every rank's opinion and every rank's offset from the global mean, read
  // from the gathered records: the same on every rank.
  std::vector<int> to(p, no_exponent);
  const std::size_t rec = static_cast<std::size_t>(2 * p + 2);
  for (int r = 0; r < c.size(); ++r) {
    const double* q = g.gathered.data() + r * rec;
    if (q[0] == 0.0) continue;  // no weight: no opinion, no offset
    for (std::int64_t j = 0; j < p; ++j)
      to[j] = std::max({to[j], static_cast<int>(q[2 + p + j]), scale_exponent(std::abs(q[2 + j] - g.mean[j]))});
  }
  for (auto& e : to) e = settled(e);
  rescale(local, to);
  std::vector<double> delta(p);
  for (std::int64_t j = 0; j < p; ++j) delta[j] = std::ldexp(g.local_delta[j], -to[j]);
  // Σ_r (M_r + W_r δ_r δ_rᵀ), δ_r = mean_r - mean: reduce the upper triangle only.
  std::vector<double> packed;
  packed.reserve(p * (p + 1) / 2);
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = i; j < p; ++j) packed.push_back(local.cross[i * p + j] + local.weight * delta[i] * delta[j]);
  c.allreduce<double>(packed, reduce_op::sum);
  cross_moments out;
  out.weight = g.weight;
  out.rows = g.rows;
  out.mean = std::move(g.mean);
  out.exponent = std::move(to);
  out.cross.assign(p * p, 0.0);
  std::size_t k = 0;
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = i; j < p; ++j, ++k) out.cross[i * p + j] = out.cross[j * p + i] = packed[k];
  return out;
}

namespace {

// One pass over rows [0, n) about `shift`: W = Σ w, s = Σ w (z - shift),
// S = Σ w (z - shift)(z - shift)ᵀ (BLAS syrk on each prepared chunk, accumulated in place). With
// `exponent`, column j of each prepared chunk is scaled by 2^-exponent_j first (S in those units,
// s in data units). Returns the first chunk whose sums were not finite, or -1.
std::int64_t shifted_pass(std::int64_t n, std::int64_t p, const prepare_rows& prepare,
                          const std::vector<double>& shift, const std::vector<int>* exponent, double& W,
                          std::vector<double>& sum, std::vector<double>& S) {
  const std::int64_t B = cross_chunk_rows(p);
  std::vector<double> z(B * p);
  W = 0.0;
  sum.assign(p, 0.0);
  S.assign(p * p, 0.0);
  // Multiplying by 2^-e rounds as ldexp does; 2^-e itself is a double unless e is beyond the
  // normal exponents (subnormal data), where ldexp remains.
  std::vector<double> factor(p, 1.0);
  bool by_ldexp = false;
  if (exponent)
    for (std::int64_t j = 0; j < p; ++j) {
      const int e = (*exponent)[j];
      by_ldexp |= e < -1022 || e > 1022;
      factor[j] = std::ldexp(1.0, -e);
    }
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    prepare(i0, nb, shift.data(), z.data(), sum.data(), W);
    bool finite = std::isfinite(W);
    for (std::int64_t j = 0; j < p; ++j) finite &= std::isfinite(sum[j]);
    if (!finite) return i0;
    if (exponent && by_ldexp)
      for (std::int64_t i = 0; i < nb; ++i)
        for (std::int64_t j = 0; j < p; ++j) z[i * p + j] = std::ldexp(z[i * p + j], -(*exponent)[j]);
    else if (exponent)
      for (std::int64_t i = 0; i < nb; ++i)
        for (std::int64_t j = 0; j < p; ++j) z[i * p + j] *= factor[j];
    cpu::syrk_acc(static_cast<int>(p), static_cast<int>(nb), z.data(), S.data());
  }
  cpu::symmetrize_upper(static_cast<int>(p), S.data());
  return -1;
}

// The largest |sqrt(w) (z - shift)| of each column over rows [0, n) (one more pass, taken only
// for data near the float range).
std::vector<double> max_deviation(std::int64_t n, std::int64_t p, const prepare_rows& prepare,
                                  const std::vector<double>& shift) {
  const std::int64_t B = cross_chunk_rows(p);
  std::vector<double> z(B * p), sum(p), dev(p, 0.0);
  double W = 0.0;
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    prepare(i0, nb, shift.data(), z.data(), sum.data(), W);
    for (std::int64_t i = 0; i < nb; ++i)
      for (std::int64_t j = 0; j < p; ++j) dev[j] = std::max(dev[j], std::abs(z[i * p + j]));
  }
  return dev;
}

// Whether some column's squares left the range where they are exact, judged from the diagonal of
// S: overflowed (not finite, or above 2^800), or underflowed (below 2^-800 though the column
// varies: its shifted sum is not zero; tiny deviations that also sum to exactly zero pass for a
// constant column).
bool squares_out_of_range(const std::vector<double>& S, const std::vector<double>& sum, std::int64_t p) {
  for (std::int64_t j = 0; j < p; ++j) {
    const double v = S[j * p + j];
    if (!(v <= 0x1p800) || (v < 0x1p-800 && (v > 0.0 || sum[j] != 0.0))) return true;
  }
  return false;
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
  const std::int64_t bad = shifted_pass(n, p, prepare, shift, nullptr, W, sum, S);
  if (bad >= 0) return bad;
  cross_moments local;
  local.reset(p);
  local.rows = n;
  local.weight = W;
  if (W > 0.0) {
    if (squares_out_of_range(S, sum, p)) {
      // Values near the float range: about the mean, each column scaled by the power of two that
      // brings its largest deviation near 1.
      for (std::int64_t j = 0; j < p; ++j) shift[j] += sum[j] / W;
      const std::vector<double> dev = max_deviation(n, p, prepare, shift);
      bool scaled = false;
      for (std::int64_t j = 0; j < p; ++j) {
        local.exponent[j] = settled(scale_exponent(dev[j]));
        scaled |= local.exponent[j] != 0;
      }
      shifted_pass(n, p, prepare, shift, scaled ? &local.exponent : nullptr, W, sum, S);
    } else {
      bool poor = false;
      for (std::int64_t j = 0; j < p; ++j) {
        const double centred = S[j * p + j] - sum[j] * sum[j] / W;
        poor |= S[j * p + j] > 64.0 * std::max(centred, 0.0) && S[j * p + j] > 0.0;
      }
      if (poor) {
        // The first row was far from the mean of some column: once more about the mean, so the
        // cancellation in S - s sᵀ / W costs no digits.
        for (std::int64_t j = 0; j < p; ++j) shift[j] += sum[j] / W;
        shifted_pass(n, p, prepare, shift, nullptr, W, sum, S);
      }
    }
    std::vector<double> s(p);
    for (std::int64_t j = 0; j < p; ++j) {
      local.mean[j] = shift[j] + sum[j] / W;
      s[j] = std::ldexp(sum[j], -local.exponent[j]);
    }
    for (std::int64_t i = 0; i < p; ++i)
      for (std::int64_t j = 0; j < p; ++j) local.cross[i * p + j] = S[i * p + j] - s[i] * s[j] / W;
  }
  merge_into(acc, local);
  return -1;
}

}  // namespace spmdlearn::detail
