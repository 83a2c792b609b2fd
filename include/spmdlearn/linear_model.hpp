// Distributed linear models: least squares and ridge by normal equations (scikit-learn's
// LinearRegression, Ridge), and L2-penalised logistic regression (LogisticRegression).
//
// Normal equations. Every rank accumulates, for its rows z = [x | y] (d features, t targets) and
// weights w >= 0, the weighted mean and the centred cross-products Σ w (z - mean)(z - mean)ᵀ
// (cache-sized chunks centred on their own mean, BLAS syrk, Chan merges); ranks merge them with the
// same correction against the global mean, so X^T X and X^T y are never formed from raw sums.
// `solve` then finds, with A = Xc^T Xc and B = Xc^T Yc (centred when fit_intercept, raw otherwise):
//   ridge (alpha > 0):  (A + alpha I) coef = B     Cholesky; eigen fallback if not positive definite
//   least squares:      A coef = B                 Cholesky when A has full numerical rank, else the
//                                                  minimum-norm solution V diag(1/lambda) V^T B over
//                                                  the eigenvalues above the cutoff (scikit-learn's
//                                                  lstsq answer for rank-deficient X, same cutoff)
//   intercept = mean_y - mean_x^T coef.
//
//   spmdlearn::linear_model::normal_state s;
//   spmdlearn::linear_model::partial_fit<double>(comm, s, X, Y, std::nullopt);   // collective
//   auto r = spmdlearn::linear_model::solve(s, {}, true);                           // local
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "spmdlearn/core/comm.hpp"
#include "spmdlearn/core/table.hpp"

namespace spmdlearn::linear_model {

// Replicated on every rank: all rows of all ranks seen so far.
struct normal_state {
  std::int64_t n_features = 0;
  std::int64_t n_targets = 0;
  std::int64_t n_rows = 0;
  double weight = 0.0;         // Σ w (n without weights)
  std::vector<double> mean;    // p = d + t weighted means of [X | Y]
  std::vector<double> cross;   // p x p row-major, Σ w (z - mean)(z - mean)ᵀ 2^-(e_i + e_j)
  // e: column j's deviations enter the products scaled by 2^-e_j (exact), so that data near the
  // float range neither overflow nor underflow; 0 for ordinary data (empty means all 0).
  std::vector<int> exponent;
};

// Collective. Merges every rank's rows (X: n x d, Y: n x t, w: n, >= 0) into s. Every rank throws
// the same error for NaN/inf in X or Y, a Y or w of the wrong length, negative weights, d, t or
// dtype differing between ranks or from s, and when no rank holds a row (`what` names the caller).
template <class T>
void partial_fit(const comm& c, normal_state& s, matrix_view<const T> X, matrix_view<const T> Y,
                 std::optional<vector_view<const T>> w, const char* what = "LinearRegression");

struct solution {
  std::vector<double> coef;       // t x d row-major
  std::vector<double> intercept;  // t (zeros without fit_intercept)
  std::vector<double> singular;   // d singular values of the (centred, sqrt(w)-scaled) X, descending
  std::int64_t rank = 0;          // numerical rank of X
};

// Local. `alpha`: empty for least squares, else one value or one per target (all >= 0).
// `rcond`: singular values of X below rcond * s_max count as zero (scikit-learn's LinearRegression
// passes its `tol`, 1e-6 by default, to lstsq as this cutoff); the cutoff never goes below the
// rounding of the normal equations themselves (~16 d eps relative to the largest eigenvalue).
// `on_gpu`: the eigen-decomposition runs on the current GPU (cuSOLVER) instead of the host's
// LAPACK -- for fits whose rows were on GPUs on every rank (builds without CUDA ignore it).
// `spectrum` false (least squares only): when a Cholesky-based bound proves the rank full, skip
// the eigen-decomposition and leave `singular` empty (rank = d); the caller computes the singular
// values if and when they are wanted. Otherwise (or if the bound is inconclusive) as with true.
solution solve(const normal_state& s, std::span<const double> alpha, bool fit_intercept,
               double rcond = 1e-6, bool on_gpu = false, bool spectrum = true);

// Collective: the coefficient of determination of all ranks' rows, per target (scikit-learn's
// r2_score with multioutput="raw_values"): 1 - Σ w (y - p)² / Σ w (y - ȳ)², ȳ the global weighted
// mean (Chan-merged); 1.0 where both sums are 0 and 0.0 where only the second is (force_finite).
template <class T>
std::vector<double> r2_score(const comm& c, matrix_view<const T> Y, matrix_view<const T> P,
                             std::optional<vector_view<const T>> w);

// ---- logistic regression -------------------------------------------------------------------
//
// Minimises scikit-learn's objective (sw = sample weights times class weights, S = Σ sw over all
// ranks' rows, K classes):
//   f(W, b) = (1/S) Σ_i sw_i loss_i + ||W||² / (2 C S)      (intercepts b not penalised)
//   binary (K = 2): one coefficient row, loss_i = log(1 + e^{r_i}) - y_i r_i, r_i = x_i·w + b
//   multinomial (K > 2): K rows, loss_i = log Σ_k e^{r_ik} - r_{i,y_i}
// Each evaluation computes the local loss and gradient with BLAS (chunks of rows, gemm) and
// allreduces them once; the optimiser (L-BFGS with a strong-Wolfe line search, or Newton-CG with
// Hessian-vector products, one allreduce each) then runs identically on every rank, so every
// rank ends with the same bits. Convergence as scikit-learn: max |gradient| <= tol (L-BFGS also
// stops when f stops decreasing: relative reduction <= 64 eps).
enum class logistic_solver : int { lbfgs = 0, newton_cg = 1 };

struct logistic_params {
  double C = 1.0;              // inverse regularisation strength
  bool penalty = true;         // false: no L2 term (penalty=None)
  bool fit_intercept = true;
  double tol = 1e-4;
  int max_iter = 100;
  logistic_solver solver = logistic_solver::lbfgs;
  int verbose = 0;             // > 0: one line per iteration on rank 0 (stdout)
};

struct logistic_result {
  std::vector<double> coef;       // K' x d row-major (K' = 1 for two classes, else K)
  std::vector<double> intercept;  // K' (zeros without fit_intercept)
  int n_iter = 0;
  bool converged = false;
  std::string message;            // why the optimiser stopped
};

// Collective. y: class indices in [0, n_classes) of this rank's rows; w: sample weights (already
// multiplied by class weights), >= 0. `init`: optional start (K' x (d + fit_intercept), row-major
// [coef | intercept]), e.g. warm_start. Every rank throws the same error for NaN/inf in X, labels
// out of range, bad weights, or d/dtype differing between ranks.
template <class T>
logistic_result fit_logistic(const comm& c, matrix_view<const T> X,
                             vector_view<const std::int32_t> y, std::int64_t n_classes,
                             std::optional<vector_view<const T>> w, const logistic_params& p,
                             std::span<const double> init = {});

}  // namespace spmdlearn::linear_model
