// spmdlearn from C++: the principal components of rows spread over the MPI ranks, by the exact
// TSQR solver and from the merged covariance.
//
//   mpirun -n 2 ./build/pca
//
// Rank r holds the global rows r, r + size, ... of a synthetic data set whose columns have
// variances 16, 4, 1 and 0.25 in a rotated basis; both solvers must give those variances.
#include <spmdlearn/spmdlearn.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  auto world = spmdlearn::make_world_comm();
  const int rank = world->rank(), size = world->size();
  constexpr std::int64_t n_total = 4000, d = 4;
  const double scale[d] = {4.0, 2.0, 1.0, 0.5};
  std::vector<double> x;
  for (std::int64_t i = rank; i < n_total; i += size) {
    // deterministic, zero-mean coordinates with unit variance (a +-1 pattern per column)
    double z[d];
    for (std::int64_t j = 0; j < d; ++j) z[j] = scale[j] * (((i >> j) & 1) ? 1.0 : -1.0);
    // rotate by 45 degrees in the (0, 1) plane
    const double a = (z[0] + z[1]) / std::sqrt(2.0), b = (z[0] - z[1]) / std::sqrt(2.0);
    const double row[d] = {a + 10.0, b - 3.0, z[2], z[3]};
    x.insert(x.end(), row, row + d);
  }
  const spmdlearn::matrix_view<const double> X{x.data(), static_cast<std::int64_t>(x.size() / d), d};
  try {
    namespace dec = spmdlearn::decomposition;
    const auto full = dec::pca_full<double>(*world, X);               // collective
    spmdlearn::covariance::state s;
    spmdlearn::covariance::partial_fit<double>(*world, s, X);         // collective
    const auto eig = dec::pca_covariance_eigh(s);                     // local
    bool ok = true;
    const double n = static_cast<double>(n_total);
    for (std::int64_t k = 0; k < d; ++k) {
      const double expect = scale[k] * scale[k] * n / (n - 1);
      ok = ok && std::fabs(full.explained_variance[k] - expect) < 1e-9 * expect &&
           std::fabs(eig.explained_variance[k] - expect) < 1e-9 * expect;
    }
    if (rank == 0) {
      std::printf("ranks: %d, rows: %lld\n", size, static_cast<long long>(n_total));
      std::printf("explained variance (full):  %.6f %.6f %.6f %.6f\n", full.explained_variance[0],
                  full.explained_variance[1], full.explained_variance[2], full.explained_variance[3]);
      std::printf("explained variance (eigh):  %.6f %.6f %.6f %.6f\n", eig.explained_variance[0],
                  eig.explained_variance[1], eig.explained_variance[2], eig.explained_variance[3]);
      std::printf("first component: %.6f %.6f %.6f %.6f\n", full.components[0], full.components[1],
                  full.components[2], full.components[3]);
      std::printf("check: %s\n", ok ? "ok" : "FAILED");
    }
    return ok ? 0 : 1;
  } catch (const spmdlearn::error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 1;
  }
}
