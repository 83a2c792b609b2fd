// spmdlearn from C++: column statistics and the covariance of a data set whose rows are spread
// over the MPI ranks.
//
//   mpirun -n 2 ./build/basic_statistics
//
// Every rank builds its own block of a deterministic synthetic data set (rank r holds the global
// rows r, r + size, r + 2 size, ...), then all ranks call the collective computations together.
// The results are identical on every rank; rank 0 prints them.
#include <spmdlearn/spmdlearn.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

constexpr std::int64_t n_total = 1000;  // rows over all ranks
constexpr std::int64_t d = 4;           // features

// Global row i of the data set.
void make_row(std::int64_t i, double* x) {
  const double t = static_cast<double>(i);
  x[0] = t / n_total;                            // uniform grid on [0, 1)
  x[1] = std::sin(0.01 * t);
  x[2] = 2.0 * x[0] + 0.1 * std::cos(0.37 * t);  // correlated with x[0]
  x[3] = static_cast<double>(i % 7) - 3.0;
}

void print_row(const char* label, const std::vector<double>& v, std::size_t offset = 0) {
  std::printf("%-20s", label);
  for (std::int64_t j = 0; j < d; ++j) std::printf(" % .9f", v[offset + j]);
  std::printf("\n");
}

}  // namespace

int main() {
  // Initialises MPI (and finalises it at exit) unless the program already did.
  auto world = spmdlearn::make_world_comm();
  const int rank = world->rank(), size = world->size();

  // This rank's rows only. A rank may hold no row at all (more ranks than rows): that is fine.
  std::vector<double> local;
  std::int64_t n_local = 0;
  for (std::int64_t i = rank; i < n_total; i += size, ++n_local) {
    local.resize((n_local + 1) * d);
    make_row(i, local.data() + n_local * d);
  }
  const spmdlearn::matrix_view<const double> X{local.data(), n_local, d};

  try {
    // Collective: every rank calls these, in the same order.
    const auto stats = spmdlearn::basic_statistics::compute(*world, X);
    const auto cov = spmdlearn::covariance::compute(*world, X, {});

    // Column 0 is i / n for i = 0..n-1: mean (n - 1) / (2n), variance (ddof 1) (n + 1) / (12 n).
    const double n = static_cast<double>(n_total);
    bool ok = std::fabs(stats.mean[0] - (n - 1) / (2 * n)) < 1e-12 &&
              std::fabs(stats.variance[0] - (n + 1) / (12 * n)) < 1e-12 &&
              std::fabs(cov.covariance[0] - stats.variance[0] * (n - 1) / n) < 1e-12;
    // The model is replicated: every rank holds the same bits.
    std::vector<double> mine(stats.mean);
    mine.insert(mine.end(), cov.covariance.begin(), cov.covariance.end());
    const auto all = world->allgather<double>(mine);
    for (int r = 0; r < size; ++r)
      for (std::size_t k = 0; k < mine.size(); ++k) ok = ok && all[r * mine.size() + k] == mine[k];
    const bool all_ok = world->allreduce_value<std::int32_t>(ok ? 1 : 0, spmdlearn::reduce_op::min) == 1;

    if (rank == 0) {
      std::printf("ranks: %d, rows: %lld, features: %lld\n", size,
                  static_cast<long long>(n_total), static_cast<long long>(d));
      print_row("mean:", stats.mean);
      print_row("variance:", stats.variance);
      print_row("min:", stats.min);
      print_row("max:", stats.max);
      print_row("covariance row 0:", cov.covariance);
      std::printf("check: %s\n", all_ok ? "ok" : "FAILED");
    }
    return all_ok ? 0 : 1;
  } catch (const spmdlearn::error& e) {
    // Every rank gets the same error, naming the rank that failed first.
    std::fprintf(stderr, "[rank %d] %s\n", rank, e.what());
    return 1;
  }
}
