// cuSOLVER versions of the small dense factorisations. See dense_cuda.hpp.
#include <string>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/dense_cuda.hpp"
#include "core/factorization_error.hpp"

namespace spmdlearn::cuda {
namespace {

// The context of the current device (cudaGetDevice), for work not tied to an input pointer.
context& current_context() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  return context_for(dev);
}

void check_info(const dev_array<int>& info, cudaStream_t st, const char* routine, int m, int n, const char* matrix) {
  int h = 0;
  check(cudaMemcpyAsync(&h, info.p, sizeof(int), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (h != 0) detail::throw_factorization_error(routine, h, m, n, matrix);
}

}  // namespace

std::vector<double> eigh(std::vector<double>& a, int n, bool vectors, const char* matrix) {
  std::vector<double> lam(n);
  if (n == 0) return lam;
  context& ctx = current_context();
  const cudaStream_t st = ctx.stream;
  cusolverDnHandle_t h = ctx.solver();
  const cusolverEigMode_t mode = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
  dev_array<double> A(a.size(), st), W(n, st);
  dev_array<int> info(1, st);
  check(cudaMemcpyAsync(A.p, a.data(), a.size() * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  int lwork = 0;
  check_solver(cusolverDnDsyevd_bufferSize(h, mode, CUBLAS_FILL_MODE_UPPER, n, A.p, n, W.p, &lwork),
               "cusolverDnDsyevd_bufferSize");
  dev_array<double> work(static_cast<std::size_t>(lwork > 0 ? lwork : 1), st);
  check_solver(cusolverDnDsyevd(h, mode, CUBLAS_FILL_MODE_UPPER, n, A.p, n, W.p, work.p, lwork, info.p),
               "cusolverDnDsyevd");
  check(cudaMemcpyAsync(lam.data(), W.p, n * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  if (vectors)
    check(cudaMemcpyAsync(a.data(), A.p, a.size() * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check_info(info, st, "cusolverDnDsyevd", n, n, matrix);
  return lam;
}

void geqrf(int m, int n, double* a, int lda, const char* matrix) {
  if (m == 0 || n == 0) return;
  context& ctx = current_context();
  const cudaStream_t st = ctx.stream;
  cusolverDnHandle_t h = ctx.solver();
  const std::size_t count = static_cast<std::size_t>(lda) * n;
  dev_array<double> A(count, st), tau(m < n ? m : n, st);
  dev_array<int> info(1, st);
  check(cudaMemcpyAsync(A.p, a, count * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  int lwork = 0;
  check_solver(cusolverDnDgeqrf_bufferSize(h, m, n, A.p, lda, &lwork), "cusolverDnDgeqrf_bufferSize");
  dev_array<double> work(static_cast<std::size_t>(lwork > 0 ? lwork : 1), st);
  check_solver(cusolverDnDgeqrf(h, m, n, A.p, lda, tau.p, work.p, lwork, info.p), "cusolverDnDgeqrf");
  check(cudaMemcpyAsync(a, A.p, count * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check_info(info, st, "cusolverDnDgeqrf", m, n, matrix);
}

void svd_square(std::vector<double>& a, int n, std::vector<double>& s, std::vector<double>& vt, const char* matrix) {
  s.assign(n, 0.0);
  vt.assign(static_cast<std::size_t>(n) * n, 0.0);
  if (n == 0) return;
  context& ctx = current_context();
  const cudaStream_t st = ctx.stream;
  cusolverDnHandle_t h = ctx.solver();
  dev_array<double> A(a.size(), st), S(n, st), VT(vt.size(), st);
  dev_array<int> info(1, st);
  check(cudaMemcpyAsync(A.p, a.data(), a.size() * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  int lwork = 0;
  check_solver(cusolverDnDgesvd_bufferSize(h, n, n, &lwork), "cusolverDnDgesvd_bufferSize");
  dev_array<double> work(static_cast<std::size_t>(lwork > 0 ? lwork : 1), st);
  check_solver(cusolverDnDgesvd(h, 'N', 'A', n, n, A.p, n, S.p, nullptr, 1, VT.p, n, work.p, lwork, nullptr,
                                info.p),
               "cusolverDnDgesvd");
  check(cudaMemcpyAsync(s.data(), S.p, n * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(vt.data(), VT.p, vt.size() * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check_info(info, st, "cusolverDnDgesvd", n, n, matrix);
}

}  // namespace spmdlearn::cuda
