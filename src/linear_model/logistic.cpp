// LogisticRegression: distributed loss/gradient (one allreduce per evaluation) and replicated
// optimisers (L-BFGS, Newton-CG). See include/spmdlearn/linear_model.hpp for the objective.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>

#include "backend/cpu/lapack.hpp"
#include "backend/cpu/skinny_gemm.hpp"
#include "backend/cpu/vector_math.hpp"
#include "backend/cuda/logistic_cuda.hpp"
#include "backend/cuda/memory.hpp"
#include "backend/cuda/moments_cuda.hpp"
#include "core/threads.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"
#include "spmdlearn/linear_model.hpp"

namespace spmdlearn::linear_model {

namespace {

using vec = std::vector<double>;

double dot(const vec& a, const vec& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
double max_abs(const vec& a) {
  double m = 0.0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

// The distributed objective. Parameters θ: K' rows of [w_k (d) | b_k (if fit_intercept)].
template <class T>
class objective {
 public:
  objective(const comm& c, matrix_view<const T> X, vector_view<const std::int32_t> y, std::int64_t K,
            const T* w, double S, const logistic_params& p, std::unique_ptr<cuda::logistic_local> dev)
      : dev_(std::move(dev)), c_(c), X_(X), y_(y), w_(w), d_(X.cols), K_(K), kp_(K == 2 ? 1 : K),
        cols_(X.cols + (p.fit_intercept ? 1 : 0)), icpt_(p.fit_intercept),
        l2_(p.penalty ? 1.0 / (p.C * S) : 0.0), S_(S) {
    // ~256 KiB of rows a chunk: the gradient gemm rereads the chunk the logits gemm just read,
    // from L2 (1 MiB chunks fell out of it: 5% slower on the 2-core Xeon VM, bench/results).
    B_ = std::clamp<std::int64_t>((1 << 18) / (8 * std::max<std::int64_t>(d_ + kp_, 1)), 64, 8192);
    xbuf_.resize(std::max<std::int64_t>(B_ * d_, 1));
    raw_.resize(B_ * kp_);
    rowmax_.resize(B_);
    rowse_.resize(B_);
    rowlog_.resize(B_);
    on_device_ = X.device == device_kind::cuda;
    skinny_ = d_ > 0 && cpu::skinny_gemm_available(kp_);
    if (skinny_) skinny_buf_.resize(8 * d_);
  }
  std::int64_t size() const { return kp_ * cols_; }

  // f(θ) and ∇f(θ) over all ranks' rows (collective: one allreduce). Keeps the per-row
  // probabilities for hess_vec at this θ.
  double loss_grad(const vec& theta, vec& grad) {
    const std::int64_t n = on_device_ ? 0 : X_.rows;  // the device computes its own sums
    vec acc(2 + size(), 0.0);  // [loss, grad, failed]
    device_eval([&] { dev_->loss_grad(theta, acc); }, acc);
    prob_.resize(n * kp_);
    for (std::int64_t i0 = 0; i0 < n; i0 += B_) {
      const std::int64_t nb = std::min(B_, n - i0);
      logits(theta, i0, nb);
      double loss = 0.0;
      double* pr0 = prob_.data() + i0 * kp_;
      if (kp_ == 1) {
        // e = exp(-|z|) once per row gives both softplus and the sigmoid.
        for (std::int64_t i = 0; i < nb; ++i) {
          const double sw = w_ ? static_cast<double>(w_[i0 + i]) : 1.0;
          const double yv = y_[i0 + i] == 1 ? 1.0 : 0.0;
          const double z = raw_[i];
          const double e = std::exp(-std::abs(z));
          const double sp = std::max(z, 0.0) + std::log1p(e);  // log(1 + e^z)
          const double pz = z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
          loss += sw * (sp - yv * z);
          pr0[i] = pz;
          raw_[i] = sw * (pz - yv);
        }
      } else {
        for (std::int64_t i = 0; i < nb; ++i) {
          const double* r = raw_.data() + i * kp_;
          double m = r[0];
          for (std::int64_t k = 1; k < kp_; ++k) m = std::max(m, r[k]);
          rowmax_[i] = m;
        }
        const std::int64_t ne = nb * kp_;
        for (std::int64_t i = 0; i < nb; ++i)  // (a division e / kp_ an element cost ~10% of a fit)
          for (std::int64_t k = 0; k < kp_; ++k) pr0[i * kp_ + k] = raw_[i * kp_ + k] - rowmax_[i];
        cpu::exp_inplace(pr0, ne);
        for (std::int64_t i = 0; i < nb; ++i) {
          const double* pr = pr0 + i * kp_;
          double se = 0.0;
          for (std::int64_t k = 0; k < kp_; ++k) se += pr[k];
          rowse_[i] = se;
          rowlog_[i] = se;
        }
        cpu::log_inplace(rowlog_.data(), nb);
        for (std::int64_t i = 0; i < nb; ++i) {
          const double sw = w_ ? static_cast<double>(w_[i0 + i]) : 1.0;
          const int yi = y_[i0 + i];
          double* r = raw_.data() + i * kp_;
          double* pr = pr0 + i * kp_;
          loss += sw * (rowmax_[i] + rowlog_[i] - r[yi]);
          const double inv = 1.0 / rowse_[i];
          for (std::int64_t k = 0; k < kp_; ++k) {
            pr[k] *= inv;
            r[k] = sw * (pr[k] - (k == yi ? 1.0 : 0.0));
          }
        }
      }
      acc[0] += loss;
      add_transpose_product(nb, acc.data() + 1);
    }
    c_.allreduce<double>(acc, reduce_op::sum);
    check_failed(acc);
    grad.assign(acc.begin() + 1, acc.end());
    double f = acc[0] / S_;
    for (auto& g : grad) g /= S_;
    if (l2_ > 0.0) {
      for (std::int64_t k = 0; k < kp_; ++k)
        for (std::int64_t j = 0; j < d_; ++j) {
          const double v = theta[k * cols_ + j];
          f += 0.5 * l2_ * v * v;
          grad[k * cols_ + j] += l2_ * v;
        }
    }
    return f;
  }

  // H v at the θ of the last loss_grad (collective: one allreduce).
  void hess_vec(const vec& v, vec& out) {
    const std::int64_t n = on_device_ ? 0 : X_.rows;
    vec acc(size() + 1, 0.0);  // [Hv, failed]
    device_eval([&] { dev_->hess_vec(v, acc); }, acc);
    for (std::int64_t i0 = 0; i0 < n; i0 += B_) {
      const std::int64_t nb = std::min(B_, n - i0);
      logits(v, i0, nb);  // u = x·V_k (+ vb_k)
      for (std::int64_t i = 0; i < nb; ++i) {
        const double sw = w_ ? static_cast<double>(w_[i0 + i]) : 1.0;
        double* u = raw_.data() + i * kp_;
        const double* pr = prob_.data() + (i0 + i) * kp_;
        if (kp_ == 1) {
          u[0] = sw * pr[0] * (1.0 - pr[0]) * u[0];
        } else {
          double pu = 0.0;
          for (std::int64_t k = 0; k < kp_; ++k) pu += pr[k] * u[k];
          for (std::int64_t k = 0; k < kp_; ++k) u[k] = sw * pr[k] * (u[k] - pu);
        }
      }
      add_transpose_product(nb, acc.data());
    }
    c_.allreduce<double>(acc, reduce_op::sum);
    check_failed(acc);
    out.resize(size());
    for (std::int64_t e = 0; e < size(); ++e) out[e] = acc[e] / S_;
    if (l2_ > 0.0)
      for (std::int64_t k = 0; k < kp_; ++k)
        for (std::int64_t j = 0; j < d_; ++j) out[k * cols_ + j] += l2_ * v[k * cols_ + j];
  }

 private:
  // Runs the device part; a failure there (a CUDA error mid-fit) is turned into a flag in the last
  // element of acc, so that every rank learns of it from the allreduce instead of waiting.
  template <class F>
  void device_eval(F&& fn, vec& acc) {
    if (!dev_) return;
    try {
      fn();
    } catch (const std::exception& e) {
      failure_ = e.what();
      acc.back() = 1.0;
    }
  }
  void check_failed(vec& acc) {
    const double failed = acc.back();
    acc.pop_back();
    if (failed > 0.0)
      throw runtime_error("LogisticRegression: evaluating the loss failed on " +
                          std::to_string(static_cast<int>(failed)) + " rank(s)" +
                          (failure_.empty() ? std::string() : " (this rank: " + failure_ + ")"));
  }

  // raw_ (nb x K') = X[i0:i0+nb] Wᵀ + b; also leaves the rows as double in xbuf_.
  void logits(const vec& theta, std::int64_t i0, std::int64_t nb) {
    rows_ld_ = load_rows(i0, nb);
    // Column-major: raw (K' x nb) = Wᵀᵀ x: theta is d x K' (ld cols_), the rows are d x nb.
    const int kp = static_cast<int>(kp_), nbi = static_cast<int>(nb), di = static_cast<int>(d_),
              ld = static_cast<int>(cols_), lx = static_cast<int>(rows_ld_);
    const double one = 1.0, zero = 0.0;
    if (skinny_)
      cpu::skinny_logits(nb, d_, kp_, rows_, rows_ld_, theta.data(), cols_, raw_.data(), skinny_buf_.data());
    else if (d_ > 0)
      dgemm_("T", "N", &kp, &nbi, &di, &one, theta.data(), &ld, rows_, &lx, &zero, raw_.data(), &kp);
    else
      std::fill(raw_.begin(), raw_.begin() + nb * kp_, 0.0);
    if (icpt_)
      for (std::int64_t i = 0; i < nb; ++i)
        for (std::int64_t k = 0; k < kp_; ++k) raw_[i * kp_ + k] += theta[k * cols_ + d_];
  }
  // g[k, :d] += Σ_i raw_[i, k] x_i ; g[k, d] += Σ_i raw_[i, k]  (raw_ holds the residuals).
  void add_transpose_product(std::int64_t nb, double* g) {
    const int kp = static_cast<int>(kp_), nbi = static_cast<int>(nb), di = static_cast<int>(d_),
              ld = static_cast<int>(cols_), lx = static_cast<int>(rows_ld_);
    const double one = 1.0;
    // Column-major: G (d x K', ld cols_) += rows (d x nb) · rawᵀ (nb x K')
    if (skinny_)
      cpu::skinny_gradient(nb, d_, kp_, rows_, rows_ld_, raw_.data(), g, cols_, skinny_buf_.data());
    else if (d_ > 0)
      dgemm_("N", "T", &di, &kp, &nbi, &one, rows_, &lx, raw_.data(), &kp, &one, g, &ld);
    if (icpt_)
      for (std::int64_t i = 0; i < nb; ++i)
        for (std::int64_t k = 0; k < kp_; ++k) g[k * cols_ + d_] += raw_[i * kp_ + k];
  }

  // The chunk's rows as doubles for BLAS: float64 input is used in place (row stride as the
  // leading dimension), float32 is converted into xbuf_. Returns the leading dimension.
  std::int64_t load_rows(std::int64_t i0, std::int64_t nb) {
    if constexpr (std::is_same_v<T, double>) {
      rows_ = X_.rows > 0 ? X_.row(i0) : xbuf_.data();
      return std::max<std::int64_t>(X_.stride(), 1);
    } else {
      for (std::int64_t i = 0; i < nb; ++i) {
        const T* x = X_.row(i0 + i);
        double* o = xbuf_.data() + i * d_;
        for (std::int64_t j = 0; j < d_; ++j) o[j] = static_cast<double>(x[j]);
      }
      rows_ = xbuf_.data();
      return std::max<std::int64_t>(d_, 1);
    }
  }

  std::unique_ptr<cuda::logistic_local> dev_;  // this rank's rows on its GPU (null: host or none)
  const double* rows_ = nullptr;
  std::int64_t rows_ld_ = 1;
  const comm& c_;
  matrix_view<const T> X_;
  vector_view<const std::int32_t> y_;
  const T* w_;
  std::int64_t d_, K_, kp_, cols_;
  bool icpt_;
  bool on_device_ = false;
  bool skinny_ = false;  // 2..8 classes on an AVX-512 CPU: cpu::skinny_* instead of dgemm
  std::string failure_;
  double l2_, S_;
  std::int64_t B_ = 0;
  vec xbuf_, raw_, prob_, rowmax_, rowse_, rowlog_, skinny_buf_;
};

// Strong-Wolfe line search (Nocedal & Wright, algorithms 3.5/3.6, cubic interpolation) along p
// from x (f0, g0). On success x, f, g hold the new point. Every evaluation is collective; the
// decisions depend only on allreduced values, so every rank takes the same steps.
template <class F>
bool line_search(F& eval, vec& x, double& f, vec& g, const vec& p, double a1, int max_evals, int& evals) {
  constexpr double c1 = 1e-4, c2 = 0.9;
  const vec x0 = x, g0 = g;
  const double f0 = f, d0 = dot(g0, p);
  if (!(d0 < 0.0)) return false;
  vec xt(x0.size()), gt;
  auto phi = [&](double a, double& fa, double& da) {
    for (std::size_t i = 0; i < x0.size(); ++i) xt[i] = x0[i] + a * p[i];
    fa = eval(xt, gt);
    da = dot(gt, p);
    ++evals;

  };
  auto accept = [&](double fa) {
    x = xt;
    f = fa;
    g = gt;
    return true;
  };
  auto cubic = [](double a, double fa, double da, double b, double fb, double db) {
    const double d1 = da + db - 3.0 * (fa - fb) / (a - b);
    const double disc = d1 * d1 - da * db;
    if (disc < 0.0) return 0.5 * (a + b);
    const double d2 = std::copysign(std::sqrt(disc), b - a);
    const double t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
    // Keep the minimiser of the cubic (it is usually right even next to an end, e.g. after an
    // overshooting first step), but strictly inside the bracket.
    const double lo = std::min(a, b), hi = std::max(a, b), span = hi - lo;
    if (!std::isfinite(t)) return 0.5 * (a + b);
    return std::clamp(t, lo + 0.01 * span, hi - 0.01 * span);
  };
  double a_prev = 0.0, f_prev = f0, d_prev = d0, a = a1;
  for (int i = 0; i < max_evals; ++i) {
    double fa, da;
    phi(a, fa, da);
    if (!std::isfinite(fa)) {  // overflow: step back
      a = 0.5 * (a_prev + a);
      continue;
    }
    double lo, flo, dlo, hi, fhi, dhi;
    bool zoom = false;
    if (fa > f0 + c1 * a * d0 || (i > 0 && fa >= f_prev)) {
      lo = a_prev, flo = f_prev, dlo = d_prev, hi = a, fhi = fa, dhi = da;
      zoom = true;
    } else if (std::abs(da) <= -c2 * d0) {
      return accept(fa);
    } else if (da >= 0.0) {
      lo = a, flo = fa, dlo = da, hi = a_prev, fhi = f_prev, dhi = d_prev;
      zoom = true;
    }
    if (zoom) {
      for (int j = i + 1; j < max_evals; ++j) {
        const double at = cubic(lo, flo, dlo, hi, fhi, dhi);
        double ft, dt;
        phi(at, ft, dt);
        if (ft > f0 + c1 * at * d0 || ft >= flo) {
          hi = at, fhi = ft, dhi = dt;
        } else {
          if (std::abs(dt) <= -c2 * d0) return accept(ft);
          if (dt * (hi - lo) >= 0.0) hi = lo, fhi = flo, dhi = dlo;
          lo = at, flo = ft, dlo = dt;
        }
        // A bracket this narrow means f is flat to rounding along p: stop (the caller reports it).
        if (std::abs(hi - lo) <= 1e-10 * a1) break;
      }
      // No point met both conditions: take the best sufficient-decrease point if it improved.
      if (lo > 0.0 && flo < f0) {
        double fl, dl;
        phi(lo, fl, dl);
        return accept(fl);
      }
      return false;
    }
    // Still descending steeply: extrapolate (by 4, as Moré-Thuente's upper factor).
    a_prev = a, f_prev = fa, d_prev = da;
    a *= 4.0;
  }
  return false;
}

void report(const comm& c, int verbose, const char* solver, int it, double f, double gmax) {
  if (verbose > 0 && c.rank() == 0) {
    std::printf("[spmdlearn LogisticRegression %s] iter %3d  loss %.10g  max|grad| %.3e\n", solver, it, f, gmax);
    std::fflush(stdout);
  }
}

template <class T>
logistic_result run_lbfgs(const comm& c, objective<T>& obj, vec x, const logistic_params& p) {
  constexpr int m = 10;  // scipy's maxcor
  const double ftol = 64.0 * std::numeric_limits<double>::epsilon();
  logistic_result r;
  vec g;
  auto eval = [&](const vec& t, vec& gr) { return obj.loss_grad(t, gr); };
  double f = eval(x, g);
  std::vector<vec> S, Y;
  std::vector<double> rho;
  int evals = 1;
  report(c, p.verbose, "lbfgs", 0, f, max_abs(g));
  if (max_abs(g) <= p.tol) {
    r.converged = true;
    r.message = "gradient below tol at the start";
  }
  int it = 0;
  while (!r.converged && it < p.max_iter) {
    // Two-loop recursion: q = -H g.
    vec q(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) q[i] = -g[i];
    std::vector<double> alpha(S.size());
    for (int k = static_cast<int>(S.size()) - 1; k >= 0; --k) {
      alpha[k] = rho[k] * dot(S[k], q);
      for (std::size_t i = 0; i < q.size(); ++i) q[i] -= alpha[k] * Y[k][i];
    }
    if (!S.empty()) {
      const double gamma = dot(S.back(), Y.back()) / dot(Y.back(), Y.back());
      for (auto& v : q) v *= gamma;
    }
    for (std::size_t k = 0; k < S.size(); ++k) {
      const double beta = rho[k] * dot(Y[k], q);
      for (std::size_t i = 0; i < q.size(); ++i) q[i] += (alpha[k] - beta) * S[k][i];
    }
    // First step: unit length in the steepest-descent direction (as L-BFGS-B); then 1.
    double a1 = 1.0;
    if (S.empty()) a1 = std::min(1.0, 1.0 / std::sqrt(dot(q, q)));
    const vec x_old = x, g_old = g;
    const double f_old = f;
    if (!line_search(eval, x, f, g, q, a1, 50, evals)) {
      if (S.empty()) {
        r.message = "line search failed";
        break;
      }
      // Restart from steepest descent once before giving up.
      S.clear(), Y.clear(), rho.clear();
      for (std::size_t i = 0; i < q.size(); ++i) q[i] = -g[i];
      if (!line_search(eval, x, f, g, q, std::min(1.0, 1.0 / std::sqrt(dot(q, q))), 50, evals)) {
        r.message = "line search failed";
        break;
      }
    }
    ++it;
    vec s(x.size()), yv(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) s[i] = x[i] - x_old[i], yv[i] = g[i] - g_old[i];
    const double sy = dot(s, yv);
    if (sy > std::numeric_limits<double>::epsilon() * dot(yv, yv)) {
      if (static_cast<int>(S.size()) == m) S.erase(S.begin()), Y.erase(Y.begin()), rho.erase(rho.begin());
      S.push_back(std::move(s));
      Y.push_back(std::move(yv));
      rho.push_back(1.0 / sy);
    }
    const double gmax = max_abs(g);
    report(c, p.verbose, "lbfgs", it, f, gmax);
    if (gmax <= p.tol) {
      r.converged = true;
      r.message = "max |gradient| <= tol";
    } else if ((f_old - f) / std::max({std::abs(f_old), std::abs(f), 1.0}) <= ftol) {
      r.converged = true;
      r.message = "relative reduction of the loss <= 64 eps";
    }
  }
  if (!r.converged && r.message.empty()) r.message = "max_iter reached";
  r.message += "; " + std::to_string(evals) + " loss evaluations";
  r.n_iter = it;
  r.coef = std::move(x);
  return r;
}

template <class T>
logistic_result run_newton_cg(const comm& c, objective<T>& obj, vec x, const logistic_params& p) {
  logistic_result r;
  vec g, Hp, z;
  auto eval = [&](const vec& t, vec& gr) { return obj.loss_grad(t, gr); };
  double f = eval(x, g);
  int evals = 1, it = 0;
  while (it < p.max_iter) {
    // loss_grad was last called at x (the line search ends on its accepted point), so the
    // stored probabilities belong to x.
    const double gmax = max_abs(g);
    report(c, p.verbose, "newton-cg", it, f, gmax);
    if (gmax <= p.tol) {
      r.converged = true;
      r.message = "max |gradient| <= tol";
      break;
    }
    // Inexact Newton step: CG on H s = -g to the relative tolerance min(0.5, sqrt(|g|_1)) |g|_1.
    double mag = 0.0;
    for (double v : g) mag += std::abs(v);
    const double term = std::min(0.5, std::sqrt(mag)) * mag;
    vec s(x.size(), 0.0), res(g.size()), dir(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) res[i] = -g[i], dir[i] = res[i];
    double rr = dot(res, res);
    for (int k = 0; k < 200; ++k) {
      double res1 = 0.0;
      for (double v : res) res1 += std::abs(v);
      if (res1 <= term) break;
      obj.hess_vec(dir, Hp);
      const double curv = dot(dir, Hp);
      if (!(curv > 0.0)) {
        if (k == 0) s = res;  // not positive: fall back to steepest descent
        break;
      }
      const double alpha = rr / curv;
      for (std::size_t i = 0; i < s.size(); ++i) s[i] += alpha * dir[i], res[i] -= alpha * Hp[i];
      const double rr_new = dot(res, res);
      const double beta = rr_new / rr;
      rr = rr_new;
      for (std::size_t i = 0; i < dir.size(); ++i) dir[i] = res[i] + beta * dir[i];
    }
    if (!line_search(eval, x, f, g, s, 1.0, 50, evals)) {
      r.message = "line search failed";
      break;
    }
    ++it;
  }
  if (it >= p.max_iter && !r.converged) {
    // scikit-learn checks the gradient once more after the last step
    if (max_abs(g) <= p.tol) {
      r.converged = true;
      r.message = "max |gradient| <= tol";
    } else {
      r.message = "max_iter reached";
    }
  }
  r.n_iter = it;
  r.coef = std::move(x);
  return r;
}

}  // namespace

template <class T>
logistic_result fit_logistic(const comm& c, matrix_view<const T> X, vector_view<const std::int32_t> y,
                             std::int64_t n_classes, std::optional<vector_view<const T>> w,
                             const logistic_params& p, std::span<const double> init) {
  detail::configure_blas_threads(c);
  const char* what = "LogisticRegression";
  double wsum = 0.0;
  std::unique_ptr<cuda::logistic_local> dev;
  std::exception_ptr err;
  try {
    if (y.size != X.rows)
      throw invalid_argument(std::string(what) + ": y has " + std::to_string(y.size) +
                             " samples but X has " + std::to_string(X.rows));
    if (w && w->size != X.rows)
      throw invalid_argument(std::string(what) + ": sample_weight has " + std::to_string(w->size) +
                             " entries but X has " + std::to_string(X.rows) + " rows");
    if (n_classes < 2) throw invalid_argument("LogisticRegression needs at least 2 classes");
    if (!(p.C > 0.0)) throw invalid_argument("C must be > 0, got " + std::to_string(p.C));
    if (X.device == device_kind::cuda) {
      detail::check_device_matrix(what, X);
#ifdef SPMDLEARN_WITH_CUDA
      if (X.rows > 0) {
        if (y.device != device_kind::cuda || (w && w->device != device_kind::cuda))
          throw invalid_argument(std::string(what) + ": X is on a CUDA device, so y and sample_weight must be too");
        cuda::throw_first_nonfinite(X.data, X.rows, X.cols, X.stride());
        cuda::check_labels_weights<T>(y.data, w ? w->data : nullptr, X.rows, n_classes);
        if (w) {
          std::vector<T> hw(X.rows);
          cuda::copy_device_to_host(hw.data(), w->data, X.rows * sizeof(T));
          for (T v : hw) wsum += static_cast<double>(v);
        } else {
          wsum = static_cast<double>(X.rows);
        }
        // Before the agreement: its device buffers may not fit (MemoryError on every rank).
        dev = cuda::make_logistic_local<T>(X.data, X.rows, X.cols, X.stride(), y.data,
                                           w ? w->data : nullptr, n_classes == 2 ? 1 : n_classes,
                                           p.fit_intercept);
      }
#endif
    } else {
    detail::check_host_matrix(what, X);
    require_cpu(y.device, what);
    detail::check_sample_weight(what, X.rows, w);
    for (std::int64_t i = 0; i < y.size; ++i)
      if (y[i] < 0 || y[i] >= n_classes)
        throw invalid_argument(std::string(what) + ": class index " + std::to_string(y[i]) +
                               " out of range at local row " + std::to_string(i));
    for (std::int64_t i = 0; i < X.rows; ++i)
      for (std::int64_t j = 0; j < X.cols; ++j)
        if (!std::isfinite(X(i, j))) {
          detail::throw_if_nonfinite("X", X, i, 1);
        }
    for (std::int64_t i = 0; i < X.rows; ++i) wsum += w ? static_cast<double>((*w)[i]) : 1.0;
    }
  } catch (...) {
    err = std::current_exception();
  }
  const auto agreed = agree(c, err,
                            {{"n_features", detail::declared_features(X)},
                             {"dtype", static_cast<std::int64_t>(dtype_of<T>()), dtype_labels},
                             {"the number of classes", n_classes}});
  const std::int64_t d = std::max<std::int64_t>(agreed[0], 0);
  const double S = c.allreduce_value(wsum, reduce_op::sum);
  if (!(S > 0.0))
    throw invalid_argument(std::string(what) +
                           ": no rank holds a row with positive weight (the weights of all ranks' "
                           "rows sum to zero)");
  matrix_view<const T> Xd(X.data, X.rows, d, X.stride(), X.device);
  objective<T> obj(c, Xd, y, n_classes, w ? w->data : nullptr, S, p, std::move(dev));
  const std::int64_t kp = n_classes == 2 ? 1 : n_classes, cols = d + (p.fit_intercept ? 1 : 0);
  vec x0(obj.size(), 0.0);
  if (!init.empty()) {
    if (static_cast<std::int64_t>(init.size()) != obj.size())
      throw invalid_argument(std::string(what) + ": the initial coefficients have " +
                             std::to_string(init.size()) + " values, expected " +
                             std::to_string(obj.size()));
    x0.assign(init.begin(), init.end());
  }
  logistic_result r = p.solver == logistic_solver::lbfgs ? run_lbfgs(c, obj, std::move(x0), p)
                                                         : run_newton_cg(c, obj, std::move(x0), p);
  vec theta = std::move(r.coef);
  r.coef.assign(kp * d, 0.0);
  r.intercept.assign(kp, 0.0);
  for (std::int64_t k = 0; k < kp; ++k) {
    for (std::int64_t j = 0; j < d; ++j) r.coef[k * d + j] = theta[k * cols + j];
    if (p.fit_intercept) r.intercept[k] = theta[k * cols + d];
  }
  return r;
}

template logistic_result fit_logistic<float>(const comm&, matrix_view<const float>,
                                             vector_view<const std::int32_t>, std::int64_t,
                                             std::optional<vector_view<const float>>,
                                             const logistic_params&, std::span<const double>);
template logistic_result fit_logistic<double>(const comm&, matrix_view<const double>,
                                              vector_view<const std::int32_t>, std::int64_t,
                                              std::optional<vector_view<const double>>,
                                              const logistic_params&, std::span<const double>);

}  // namespace spmdlearn::linear_model
