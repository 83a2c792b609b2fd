// spmdlearn from C++: k-means of rows spread over the MPI ranks.
//
//   mpirun -n 2 ./build/kmeans
//
// Rank r holds the global rows r, r + size, ... of four tight groups of points around the corners
// (0,0), (10,0), (0,10), (10,10); k-means++ must find the four corners, and every rank must hold
// the same centres.
#include <spmdlearn/spmdlearn.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  auto world = spmdlearn::make_world_comm();
  const int rank = world->rank(), size = world->size();
  constexpr std::int64_t n_total = 4000, d = 2;
  std::vector<double> x;
  for (std::int64_t i = rank; i < n_total; i += size) {
    const double cx = 10.0 * static_cast<double>(i % 2), cy = 10.0 * static_cast<double>((i / 2) % 2);
    // a deterministic spread of +-0.5 around the corner
    const double u = static_cast<double>((i * 7919) % 101) / 100.0 - 0.5;
    const double v = static_cast<double>((i * 104729) % 103) / 102.0 - 0.5;
    x.push_back(cx + u);
    x.push_back(cy + v);
  }
  const spmdlearn::matrix_view<const double> X{x.data(), static_cast<std::int64_t>(x.size() / d), d};
  try {
    spmdlearn::cluster::kmeans_params p;
    p.n_clusters = 4;
    p.n_init = 3;
    p.seed = 42;
    const auto m = spmdlearn::cluster::kmeans_fit<double>(*world, X, std::nullopt, p);   // collective
    // every rank holds the same centres: compare with rank 0's
    std::vector<double> first = m.centers;
    world->bcast(std::span<double>(first), 0);
    bool ok = first == m.centers;
    for (std::int64_t j = 0; j < 4; ++j) {  // each centre near a corner
      const double cx = m.centers[j * 2], cy = m.centers[j * 2 + 1];
      const double ex = std::round(cx / 10.0) * 10.0, ey = std::round(cy / 10.0) * 10.0;
      ok = ok && std::fabs(cx - ex) < 0.1 && std::fabs(cy - ey) < 0.1;
    }
    ok = world->allreduce_value<std::int32_t>(ok ? 1 : 0, spmdlearn::reduce_op::min) == 1;
    if (rank == 0) {
      std::printf("ranks: %d, rows: %lld, iterations: %lld, inertia: %.4f\n", size,
                  static_cast<long long>(m.n_samples), static_cast<long long>(m.n_iter), m.inertia);
      for (std::int64_t j = 0; j < 4; ++j) std::printf("centre %lld: %.4f %.4f\n", static_cast<long long>(j), m.centers[j * 2], m.centers[j * 2 + 1]);
      std::printf("check: %s\n", ok ? "ok" : "FAILED");
    }
    return ok ? 0 : 1;
  } catch (const spmdlearn::error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 1;
  }
}
