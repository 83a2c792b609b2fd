// CUDA parts of PCA's full (TSQR) and randomized solvers. See pca_cuda.hpp.
#include <algorithm>
#include <optional>
#include <string>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/pca_cuda.hpp"
#include "core/factorization_error.hpp"

namespace spmdlearn::cuda {
namespace {

constexpr int threads = 256;

// out (column-major, leading dimension ld) rows [r0, r0 + rows) = X rows - mean.
template <class T>
__global__ void centred_colmajor_kernel(const T* __restrict__ X, std::int64_t rows, int d, std::int64_t stride,
                                        const double* __restrict__ mean, double* __restrict__ out,
                                        std::int64_t ld, std::int64_t r0) {
  const std::int64_t total = rows * d;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e / d;
    const int j = static_cast<int>(e - i * d);
    out[r0 + i + j * ld] = static_cast<double>(X[i * stride + j]) - mean[j];
  }
}

// Zeroes m's entries below the diagonal in columns [0, d) (leading dimension ld, `rows` rows).
__global__ void zero_below_diagonal(double* m, std::int64_t ld, std::int64_t rows, int d) {
  const std::int64_t total = rows * d;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(e / rows);
    const std::int64_t i = e - static_cast<std::int64_t>(j) * rows;
    if (i > j) m[i + j * ld] = 0.0;
  }
}

// out[e] = Σ_b parts[b][e] for e < count, in batch order.
__global__ void sum_batches(const double* __restrict__ parts, int batches, std::int64_t count, double* __restrict__ out) {
  const std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (e >= count) return;
  double acc = 0.0;
  for (int b = 0; b < batches; ++b) acc += parts[b * count + e];
  out[e] = acc;
}

__global__ void sum_squares_kernel(const double* __restrict__ a, std::int64_t n, double* __restrict__ partial) {
  __shared__ double red[threads];
  double acc = 0.0;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    acc += a[e] * a[e];
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int s = threads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = red[0];
}

unsigned grid_for(std::int64_t work) {
  const std::int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min<std::int64_t>(blocks, 8LL * multiprocessors())));
}

}  // namespace

template <class T>
std::vector<double> centred_r(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                              const std::vector<double>& mean) {
  std::vector<double> R(static_cast<std::size_t>(d * d), 0.0);
  if (n == 0 || d == 0) return R;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  cusolverDnHandle_t solver = scope.ctx->solver();
  // [R (d rows); chunk (B rows)], column-major: ~512 MiB, at least as many rows as columns.
  const std::int64_t B = std::max<std::int64_t>(d, std::min<std::int64_t>(n, (512LL << 20) / (8 * d)));
  const std::int64_t ld = d + B;
  const int di = static_cast<int>(d);
  dev_array<double> m(static_cast<std::size_t>(ld * d), st), dmean(d, st), tau(d, st);
  dev_array<int> info(1, st);
  check(cudaMemsetAsync(m.p, 0, ld * d * sizeof(double), st), "cudaMemsetAsync");
  check(cudaMemcpyAsync(dmean.p, mean.data(), d * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  int lwork = 0;
  check_solver(cusolverDnDgeqrf_bufferSize(solver, static_cast<int>(ld), di, m.p, static_cast<int>(ld), &lwork),
               "cusolverDnDgeqrf_bufferSize");
  dev_array<double> work(static_cast<std::size_t>(std::max(lwork, 1)), st);
  std::int64_t rr = 0;  // rows of R at the top of m
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    centred_colmajor_kernel<T><<<grid_for(nb * d), threads, 0, st>>>(X + i0 * stride, nb, di, stride, dmean.p,
                                                                     m.p, ld, rr);
    check(cudaGetLastError(), "centring kernel launch");
    const std::int64_t total = rr + nb;
    check_solver(cusolverDnDgeqrf(solver, static_cast<int>(total), di, m.p, static_cast<int>(ld), tau.p, work.p,
                                  lwork, info.p),
                 "cusolverDnDgeqrf");
    rr = std::min(total, d);
    // Keep R (upper triangle of the top rr rows); the Householder vectors below it go.
    zero_below_diagonal<<<grid_for(rr * d), threads, 0, st>>>(m.p, ld, rr, di);
    check(cudaGetLastError(), "zero kernel launch");
  }
  int h_info = 0;
  check(cudaMemcpy2DAsync(R.data(), d * sizeof(double), m.p, ld * sizeof(double), rr * sizeof(double), d,
                          cudaMemcpyDeviceToHost, st),
        "cudaMemcpy2DAsync");
  check(cudaMemcpyAsync(&h_info, info.p, sizeof(int), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (h_info != 0) detail::throw_factorization_error("cusolverDnDgeqrf", h_info, n, d, "matrix of this rank's centred rows");
  return R;
}

template std::vector<double> centred_r<float>(const float*, std::int64_t, std::int64_t, std::int64_t,
                                              const std::vector<double>&);
template std::vector<double> centred_r<double>(const double*, std::int64_t, std::int64_t, std::int64_t,
                                               const std::vector<double>&);

// ---- range_finder ---------------------------------------------------------------------------

struct range_finder::impl {
  static constexpr std::int64_t batch = 1024;
  device_scope scope;
  std::int64_t n = 0, d = 0;
  int l = 0;
  dev_array<double> A;
  std::optional<dev_array<double>> Y;
  impl(const void* X, std::int64_t rows, std::int64_t cols)
      : scope(X), n(rows), d(cols), A(static_cast<std::size_t>(rows * cols), scope.stream()) {}
  cudaStream_t st() const { return scope.stream(); }
  cublasHandle_t blas() const { return scope.ctx->blas; }

  // Σ over the rows of Pᵀ Q (P: n x a, Q: n x b, column-major, leading dimension n) -> a x b on the
  // host: whole 1024-row batches by one strided-batched gemm, the rest by one gemm, the partial
  // products summed in batch order.
  std::vector<double> tall_tn(const double* P, int a, const double* Q, int b) {
    std::vector<double> out(static_cast<std::size_t>(a) * b, 0.0);
    if (n == 0 || a == 0 || b == 0) return out;
    const std::int64_t full = n / batch, rest = n - full * batch;
    const std::int64_t parts = full + (rest > 0 ? 1 : 0), count = static_cast<std::int64_t>(a) * b;
    dev_array<double> G(static_cast<std::size_t>(parts * count), st()), sum(static_cast<std::size_t>(count), st());
    const double one = 1.0, zero = 0.0;
    const int ldn = static_cast<int>(n);
    if (full > 0)
      check_blas(cublasDgemmStridedBatched(blas(), CUBLAS_OP_T, CUBLAS_OP_N, a, b, static_cast<int>(batch), &one, P,
                                           ldn, batch, Q, ldn, batch, &zero, G.p, a, count, static_cast<int>(full)),
                 "cublasDgemmStridedBatched");
    if (rest > 0)
      check_blas(cublasDgemm(blas(), CUBLAS_OP_T, CUBLAS_OP_N, a, b, static_cast<int>(rest), &one, P + full * batch,
                             ldn, Q + full * batch, ldn, &zero, G.p + full * count, a),
                 "cublasDgemm");
    sum_batches<<<static_cast<unsigned>((count + threads - 1) / threads), threads, 0, st()>>>(
        G.p, static_cast<int>(parts), count, sum.p);
    check(cudaGetLastError(), "sum kernel launch");
    check(cudaMemcpyAsync(out.data(), sum.p, count * sizeof(double), cudaMemcpyDeviceToHost, st()), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(st()), "cudaStreamSynchronize");
    return out;
  }
};

template <class T>
range_finder::range_finder(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                           const std::vector<double>& mean)
    : d_(d) {
  if (n == 0 || d == 0) return;  // an empty rank: every product is zero
  p_ = std::make_unique<impl>(X, n, d);
  dev_array<double> dmean(d, p_->st());
  check(cudaMemcpyAsync(dmean.p, mean.data(), d * sizeof(double), cudaMemcpyHostToDevice, p_->st()), "cudaMemcpyAsync");
  centred_colmajor_kernel<T><<<grid_for(n * d), threads, 0, p_->st()>>>(X, n, static_cast<int>(d), stride, dmean.p,
                                                                        p_->A.p, n, 0);
  check(cudaGetLastError(), "centring kernel launch");
}

range_finder::~range_finder() = default;

double range_finder::sum_squares() {
  if (!p_) return 0.0;
  const std::int64_t total = p_->n * p_->d;
  const unsigned blocks = grid_for(total);
  dev_array<double> part(blocks, p_->st());
  sum_squares_kernel<<<blocks, threads, 0, p_->st()>>>(p_->A.p, total, part.p);
  check(cudaGetLastError(), "sum of squares launch");
  std::vector<double> h(blocks);
  check(cudaMemcpyAsync(h.data(), part.p, blocks * sizeof(double), cudaMemcpyDeviceToHost, p_->st()), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(p_->st()), "cudaStreamSynchronize");
  double s = 0.0;
  for (double v : h) s += v;
  return s;
}

void range_finder::set_basis(const std::vector<double>& M, int l) {
  l_ = l;
  if (!p_) return;
  impl& q = *p_;
  if (q.l != l || !q.Y) {
    q.Y.reset();
    q.Y.emplace(static_cast<std::size_t>(q.n * l), q.st());
    q.l = l;
  }
  dev_array<double> dM(M.size(), q.st());
  check(cudaMemcpyAsync(dM.p, M.data(), M.size() * sizeof(double), cudaMemcpyHostToDevice, q.st()), "cudaMemcpyAsync");
  const double one = 1.0, zero = 0.0;
  const int ni = static_cast<int>(q.n), di = static_cast<int>(q.d);
  check_blas(cublasDgemm(q.blas(), CUBLAS_OP_N, CUBLAS_OP_N, ni, l, di, &one, q.A.p, ni, dM.p, di, &zero, q.Y->p, ni),
             "cublasDgemm");
  check(cudaStreamSynchronize(q.st()), "cudaStreamSynchronize");  // dM is freed on return
}

std::vector<double> range_finder::basis_gram() {
  if (!p_) return std::vector<double>(static_cast<std::size_t>(l_) * l_, 0.0);
  return p_->tall_tn(p_->Y->p, p_->l, p_->Y->p, p_->l);
}

void range_finder::basis_solve_upper(const std::vector<double>& R) {
  if (!p_) return;
  impl& q = *p_;
  dev_array<double> dR(R.size(), q.st());
  check(cudaMemcpyAsync(dR.p, R.data(), R.size() * sizeof(double), cudaMemcpyHostToDevice, q.st()), "cudaMemcpyAsync");
  const double one = 1.0;
  check_blas(cublasDtrsm(q.blas(), CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT,
                         static_cast<int>(q.n), q.l, &one, dR.p, q.l, q.Y->p, static_cast<int>(q.n)),
             "cublasDtrsm");
  check(cudaStreamSynchronize(q.st()), "cudaStreamSynchronize");
}

std::vector<double> range_finder::project() {
  if (!p_) return std::vector<double>(static_cast<std::size_t>(d_) * l_, 0.0);
  return p_->tall_tn(p_->A.p, static_cast<int>(p_->d), p_->Y->p, p_->l);
}

template range_finder::range_finder(const float*, std::int64_t, std::int64_t, std::int64_t, const std::vector<double>&);
template range_finder::range_finder(const double*, std::int64_t, std::int64_t, std::int64_t, const std::vector<double>&);

}  // namespace spmdlearn::cuda
