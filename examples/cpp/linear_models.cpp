// spmdlearn from C++: least squares, ridge and logistic regression on rows spread over MPI ranks.
//
//   mpirun -n 2 ./build/linear_models
//
// Rank r holds the global rows r, r + size, ... of a synthetic problem with known coefficients
// (y = 1.5 + 2 x0 - x1 + 0.5 x2, plus a little noise; class = 1 where y > 1.5). All ranks call the
// collective fits together; the models are identical on every rank, and rank 0 prints them.
#include <spmdlearn/spmdlearn.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {
constexpr std::int64_t n_total = 2000, d = 3;
}

int main() {
  auto world = spmdlearn::make_world_comm();
  const int rank = world->rank(), size = world->size();
  std::vector<double> x, y;
  std::vector<std::int32_t> label;
  for (std::int64_t i = rank; i < n_total; i += size) {
    const double t = static_cast<double>(i);
    const double row[d] = {std::sin(0.013 * t), std::cos(0.007 * t), (i % 11) / 10.0};
    x.insert(x.end(), row, row + d);
    const double target = 1.5 + 2.0 * row[0] - row[1] + 0.5 * row[2] + 1e-3 * std::sin(3.1 * t);
    y.push_back(target);
    label.push_back(target > 1.5 ? 1 : 0);
  }
  const std::int64_t n = static_cast<std::int64_t>(y.size());
  const spmdlearn::matrix_view<const double> X{x.data(), n, d}, Y{y.data(), n, 1};
  try {
    namespace lm = spmdlearn::linear_model;
    lm::normal_state s;
    lm::partial_fit<double>(*world, s, X, Y, std::nullopt);         // collective
    const auto ols = lm::solve(s, {}, /*fit_intercept=*/true);       // local
    const double alpha[] = {10.0};
    const auto ridge = lm::solve(s, alpha, true);
    const auto logit = lm::fit_logistic<double>(                     // collective
        *world, X, spmdlearn::vector_view<const std::int32_t>{label.data(), n}, 2, std::nullopt, {});
    const bool ok = std::fabs(ols.coef[0] - 2.0) < 1e-2 && std::fabs(ols.coef[1] + 1.0) < 1e-2 &&
                    std::fabs(ols.intercept[0] - 1.5) < 1e-2 && logit.converged;
    if (rank == 0) {
      std::printf("ranks: %d, rows: %lld\n", size, static_cast<long long>(n_total));
      std::printf("least squares: intercept %.4f coef %.4f %.4f %.4f\n", ols.intercept[0], ols.coef[0],
                  ols.coef[1], ols.coef[2]);
      std::printf("ridge(10):     intercept %.4f coef %.4f %.4f %.4f\n", ridge.intercept[0],
                  ridge.coef[0], ridge.coef[1], ridge.coef[2]);
      std::printf("logistic:      intercept %.4f coef %.4f %.4f %.4f (%d iterations)\n",
                  logit.intercept[0], logit.coef[0], logit.coef[1], logit.coef[2], logit.n_iter);
      std::printf("check: %s\n", ok ? "ok" : "FAILED");
    }
    return ok ? 0 : 1;
  } catch (const spmdlearn::error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 1;
  }
}
