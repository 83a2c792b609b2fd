#include "core/merge.hpp"

namespace spmdlearn::detail {

double merge_mean(double& wa, std::span<double> mean_a, double wb, std::span<const double> mean_b,
                  std::span<double> delta) {
  const std::size_t d = mean_a.size();
  if (wb == 0.0) {
    for (std::size_t j = 0; j < d; ++j) delta[j] = 0.0;
    return 0.0;
  }
  const double w = wa + wb;
  const double f = wb / w;
  for (std::size_t j = 0; j < d; ++j) {
    delta[j] = mean_b[j] - mean_a[j];
    mean_a[j] = wa == 0.0 ? mean_b[j] : mean_a[j] + delta[j] * f;
  }
  const double factor = wa == 0.0 ? 0.0 : wa * wb / w;
  wa = w;
  return factor;
}

global_mean merge_means_across(const comm& c, double weight, std::int64_t rows,
                               std::span<const double> mean, std::span<const double> extra) {
  const std::size_t d = mean.size(), rec = d + extra.size() + 2;
  std::vector<double> mine(rec);
  mine[0] = weight;
  mine[1] = static_cast<double>(rows);  // exact below 2^53 rows
  for (std::size_t j = 0; j < d; ++j) mine[j + 2] = mean[j];
  for (std::size_t j = 0; j < extra.size(); ++j) mine[d + 2 + j] = extra[j];
  std::vector<double> all = c.allgather<double>(mine);

  global_mean g;
  g.mean.assign(d, 0.0);
  std::vector<double> delta(d);
  for (int r = 0; r < c.size(); ++r) {
    const double* p = all.data() + r * rec;
    g.rows += static_cast<std::int64_t>(p[1]);
    merge_mean(g.weight, g.mean, p[0], std::span<const double>(p + 2, d), delta);
  }
  g.local_delta.resize(d);
  for (std::size_t j = 0; j < d; ++j) g.local_delta[j] = weight == 0.0 ? 0.0 : mean[j] - g.mean[j];
  g.gathered = std::move(all);
  return g;
}

}  // namespace spmdlearn::detail
