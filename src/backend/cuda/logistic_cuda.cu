// CUDA logistic-regression objective, local part (see logistic_cuda.hpp).
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/logistic_cuda.hpp"

namespace spmdlearn::cuda {

namespace {

constexpr int threads = 256;

// In place on raw (kp x nb, column-major: row i's kp logits contiguous): add the intercepts, then
// prob = sigmoid / softmax, loss_i = sw (softplus(z) - y z) or sw (lse - z_y), raw = sw (p - onehot).
template <class T>
__global__ void residual_kernel(double* __restrict raw, double* __restrict prob, double* __restrict loss,
                                const std::int32_t* __restrict y, const T* __restrict w,
                                const double* __restrict theta, std::int64_t nb, int kp, int d, int cols,
                                bool icpt) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < nb;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    double* r = raw + i * kp;
    double* p = prob + i * kp;
    const double sw = w ? static_cast<double>(w[i]) : 1.0;
    const int yi = y[i];
    if (icpt)
      for (int k = 0; k < kp; ++k) r[k] += theta[k * cols + d];
    if (kp == 1) {
      const double z = r[0], e = exp(-fabs(z));
      const double sp = fmax(z, 0.0) + log1p(e);
      const double pz = z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
      const double yv = yi == 1 ? 1.0 : 0.0;
      loss[i] = sw * (sp - yv * z);
      p[0] = pz;
      r[0] = sw * (pz - yv);
    } else {
      double m = r[0];
      for (int k = 1; k < kp; ++k) m = fmax(m, r[k]);
      double se = 0.0;
      for (int k = 0; k < kp; ++k) {
        p[k] = exp(r[k] - m);
        se += p[k];
      }
      loss[i] = sw * (m + log(se) - r[yi]);
      const double inv = 1.0 / se;
      for (int k = 0; k < kp; ++k) {
        p[k] *= inv;
        r[k] = sw * (p[k] - (k == yi ? 1.0 : 0.0));
      }
    }
  }
}

// In place on u (kp x nb): u = V x (+ vb) -> t = sw p (u - p·u)  (binary: sw p (1 - p) u).
template <class T>
__global__ void hess_kernel(double* __restrict u, const double* __restrict prob, const T* __restrict w,
                            const double* __restrict v, std::int64_t nb, int kp, int d, int cols, bool icpt) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < nb;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    double* r = u + i * kp;
    const double* p = prob + i * kp;
    const double sw = w ? static_cast<double>(w[i]) : 1.0;
    if (icpt)
      for (int k = 0; k < kp; ++k) r[k] += v[k * cols + d];
    if (kp == 1) {
      r[0] = sw * p[0] * (1.0 - p[0]) * r[0];
    } else {
      double pu = 0.0;
      for (int k = 0; k < kp; ++k) pu += p[k] * r[k];
      for (int k = 0; k < kp; ++k) r[k] = sw * p[k] * (r[k] - pu);
    }
  }
}

template <class T>
__global__ void to_double_kernel(const T* __restrict X, std::int64_t nb, int d, std::int64_t stride,
                                 double* __restrict out) {
  const std::int64_t total = nb * d;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e / d;
    out[e] = static_cast<double>(X[i * stride + (e - i * d)]);
  }
}

__global__ void fill_kernel(double* p, std::int64_t n, double v) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

template <class T>
__global__ void check_kernel(const std::int32_t* __restrict y, const T* __restrict w, std::int64_t n,
                             std::int64_t K, int* __restrict bad) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    if (y[i] < 0 || y[i] >= K) atomicOr(bad, 1);
    if (w) {
      const double v = static_cast<double>(w[i]);
      if (!(v >= 0.0) || !isfinite(v)) atomicOr(bad, 2);
    }
  }
}

template <class T>
class local_impl final : public logistic_local {
 public:
  local_impl(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const std::int32_t* y,
             const T* w, std::int64_t kp, bool icpt)
      : scope_(X), X_(X), n_(n), d_(d), stride_(stride), y_(y), w_(w), kp_(kp),
        cols_(d + (icpt ? 1 : 0)), icpt_(icpt) {
    const cudaStream_t st = scope_.stream();
    // Chunks of ~128 MiB of doubles.
    B_ = std::max<std::int64_t>(1, std::min<std::int64_t>(n, (128LL << 20) / (8 * std::max<std::int64_t>(d + kp, 1))));
    chunks_ = (n + B_ - 1) / B_;
    if (!std::is_same_v<T, double>)  // float64 rows are used in place (ld = stride)
      xbuf_ = std::make_unique<dev_array<double>>(static_cast<std::size_t>(B_) * d, st);
    raw_ = std::make_unique<dev_array<double>>(static_cast<std::size_t>(B_) * kp, st);
    prob_ = std::make_unique<dev_array<double>>(static_cast<std::size_t>(n) * kp, st);
    lossv_ = std::make_unique<dev_array<double>>(B_, st);
    ones_ = std::make_unique<dev_array<double>>(B_, st);
    theta_ = std::make_unique<dev_array<double>>(kp * cols_, st);
    G_ = std::make_unique<dev_array<double>>(kp * cols_, st);
    lsum_ = std::make_unique<dev_array<double>>(chunks_, st);
    fill_kernel<<<64, threads, 0, st>>>(ones_->p, B_, 1.0);
    check(cudaGetLastError(), "fill kernel launch");
  }

  void loss_grad(const std::vector<double>& theta, std::vector<double>& acc) override {
    run(theta, acc, true);
  }
  void hess_vec(const std::vector<double>& v, std::vector<double>& acc) override { run(v, acc, false); }

 private:
  // One pass over the chunks: with `grad`, the loss, probabilities and gradient at theta; else the
  // Hessian-vector product with theta = v.
  void run(const std::vector<double>& theta, std::vector<double>& acc, bool grad) {
    const cudaStream_t st = scope_.stream();
    cublasHandle_t h = scope_.ctx->blas;
    const std::int64_t sz = kp_ * cols_;
    check(cudaMemcpyAsync(theta_->p, theta.data(), sz * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
    check(cudaMemsetAsync(G_->p, 0, sz * sizeof(double), st), "cudaMemsetAsync");
    const double one = 1.0, zero = 0.0;
    const int kp = static_cast<int>(kp_), di = static_cast<int>(d_), cols = static_cast<int>(cols_);
    for (std::int64_t c = 0; c < chunks_; ++c) {
      const std::int64_t i0 = c * B_, nb = std::min(B_, n_ - i0);
      const int nbi = static_cast<int>(nb);
      const double* rows;
      int ld;
      if (xbuf_) {
        to_double_kernel<T><<<8 * multiprocessors(), threads, 0, st>>>(X_ + i0 * stride_, nb, di, stride_, xbuf_->p);
        check(cudaGetLastError(), "to_double kernel launch");
        rows = xbuf_->p;
        ld = di;
      } else {
        rows = reinterpret_cast<const double*>(X_) + i0 * stride_;
        ld = static_cast<int>(stride_);
      }
      // raw (kp x nb) = Θ_W (d x kp, ld cols)ᵀ · rows (d x nb)
      if (di > 0)
        check_blas(cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, kp, nbi, di, &one, theta_->p, cols, rows, ld, &zero,
                               raw_->p, kp), "cublasDgemm");
      else
        check(cudaMemsetAsync(raw_->p, 0, nb * kp * sizeof(double), st), "cudaMemsetAsync");
      const int blocks = static_cast<int>(std::min<std::int64_t>((nb + threads - 1) / threads, 8 * multiprocessors()));
      if (grad) {
        residual_kernel<T><<<blocks, threads, 0, st>>>(raw_->p, prob_->p + i0 * kp_, lossv_->p, y_ + i0,
                                                        w_ ? w_ + i0 : nullptr, theta_->p, nb, kp, di, cols, icpt_);
        check(cudaGetLastError(), "residual kernel launch");
        check_blas(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE), "cublasSetPointerMode");
        const cublasStatus_t s = cublasDdot(h, nbi, lossv_->p, 1, ones_->p, 1, lsum_->p + c);
        check_blas(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
        check_blas(s, "cublasDdot");
      } else {
        hess_kernel<T><<<blocks, threads, 0, st>>>(raw_->p, prob_->p + i0 * kp_, w_ ? w_ + i0 : nullptr,
                                                    theta_->p, nb, kp, di, cols, icpt_);
        check(cudaGetLastError(), "hess kernel launch");
      }
      // G (d x kp, ld cols) += rows (d x nb) · rawᵀ (nb x kp); intercepts: raw (kp x nb) · 1
      if (di > 0)
        check_blas(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, di, kp, nbi, &one, rows, ld, raw_->p, kp, &one,
                               G_->p, cols), "cublasDgemm");
      if (icpt_)
        check_blas(cublasDgemv(h, CUBLAS_OP_N, kp, nbi, &one, raw_->p, kp, ones_->p, 1, &one, G_->p + d_, cols),
                   "cublasDgemv");
    }
    std::vector<double> G(sz), ls(grad ? chunks_ : 0);
    check(cudaMemcpyAsync(G.data(), G_->p, sz * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    if (grad)
      check(cudaMemcpyAsync(ls.data(), lsum_->p, chunks_ * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
    const std::size_t off = grad ? 1 : 0;
    if (grad)
      for (double l : ls) acc[0] += l;
    for (std::int64_t e = 0; e < sz; ++e) acc[off + e] += G[e];
  }

  device_scope scope_;
  const T* X_;
  std::int64_t n_, d_, stride_;
  const std::int32_t* y_;
  const T* w_;
  std::int64_t kp_, cols_;
  bool icpt_;
  std::int64_t B_ = 1, chunks_ = 0;
  std::unique_ptr<dev_array<double>> xbuf_, raw_, prob_, lossv_, ones_, theta_, G_, lsum_;
};

}  // namespace

template <class T>
std::unique_ptr<logistic_local> make_logistic_local(const T* X, std::int64_t n, std::int64_t d,
                                                    std::int64_t stride, const std::int32_t* y,
                                                    const T* w, std::int64_t kp, bool icpt) {
  return std::make_unique<local_impl<T>>(X, n, d, stride, y, w, kp, icpt);
}

template <class T>
void check_labels_weights(const std::int32_t* y, const T* w, std::int64_t n, std::int64_t n_classes) {
  if (n == 0) return;
  device_scope scope(y);
  if (w) require_same_device(w, scope.device, "sample_weight");
  const cudaStream_t st = scope.stream();
  dev_array<int> bad(1, st);
  check(cudaMemsetAsync(bad.p, 0, sizeof(int), st), "cudaMemsetAsync");
  check_kernel<T><<<8 * multiprocessors(), threads, 0, st>>>(y, w, n, n_classes, bad.p);
  check(cudaGetLastError(), "check kernel launch");
  int flag = 0;
  check(cudaMemcpyAsync(&flag, bad.p, sizeof(int), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (flag & 1) throw invalid_argument("LogisticRegression: a class index is out of range");
  if (flag & 2)
    throw invalid_argument("LogisticRegression: sample_weight contains a negative value, NaN or infinity");
}

template std::unique_ptr<logistic_local> make_logistic_local<float>(const float*, std::int64_t, std::int64_t,
                                                                    std::int64_t, const std::int32_t*,
                                                                    const float*, std::int64_t, bool);
template std::unique_ptr<logistic_local> make_logistic_local<double>(const double*, std::int64_t, std::int64_t,
                                                                     std::int64_t, const std::int32_t*,
                                                                     const double*, std::int64_t, bool);
template void check_labels_weights<float>(const std::int32_t*, const float*, std::int64_t, std::int64_t);
template void check_labels_weights<double>(const std::int32_t*, const double*, std::int64_t, std::int64_t);

}  // namespace spmdlearn::cuda
