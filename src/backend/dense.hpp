// Where a fit's small dense factorisations (d x d) run: the host's LAPACK (single-threaded, see
// blas_serial_scope), or cuSOLVER on the current GPU when every rank's rows were on GPUs (decided
// together by the caller, so that every rank does the same arithmetic and the model stays
// bitwise identical on every rank).
#pragma once

#include <algorithm>
#include <vector>

#include "backend/cpu/lapack.hpp"
#include "core/threads.hpp"
#ifdef SPMDLEARN_WITH_CUDA
#include "backend/cuda/dense_cuda.hpp"
#endif

namespace spmdlearn::dense {

enum class where { host, gpu };

// `matrix` names the matrix in the error a failure throws (detail::throw_factorization_error).
inline std::vector<double> eigh(std::vector<double>& a, int n, bool vectors, where w, const char* matrix) {
#ifdef SPMDLEARN_WITH_CUDA
  if (w == where::gpu) return cuda::eigh(a, n, vectors, matrix);
#endif
  (void)w;
  const detail::blas_serial_scope serial(n);  // d x d: see blas_serial_scope
  return cpu::eigh(a, n, vectors, matrix);
}

// QR of the m x n column-major a in place; throws on failure.
inline void geqrf(int m, int n, double* a, int lda, where w, const char* matrix) {
#ifdef SPMDLEARN_WITH_CUDA
  if (w == where::gpu) return cuda::geqrf(m, n, a, lda, matrix);
#endif
  (void)w;
  const detail::blas_serial_scope serial(std::max(m, n));
  const int info = cpu::geqrf(m, n, a, lda);
  if (info != 0) detail::throw_factorization_error("dgeqrf", info, m, n, matrix);
}

// Singular values (descending) and Vᵀ (n x n, column-major) of the square column-major a.
inline void svd_square(std::vector<double>& a, int n, std::vector<double>& s, std::vector<double>& vt, where w,
                       const char* matrix) {
#ifdef SPMDLEARN_WITH_CUDA
  if (w == where::gpu) return cuda::svd_square(a, n, s, vt, matrix);
#endif
  (void)w;
  const detail::blas_serial_scope serial(n);
  s.assign(n, 0.0);
  vt.assign(static_cast<std::size_t>(n) * n, 0.0);
  if (n == 0) return;
  int info = 0, lwork = -1, one = 1;
  double q = 0, dummy = 0;
  dgesvd_("N", "A", &n, &n, a.data(), &n, s.data(), &dummy, &one, vt.data(), &n, &q, &lwork, &info);
  lwork = std::max(1, static_cast<int>(q));
  std::vector<double> work(lwork);
  dgesvd_("N", "A", &n, &n, a.data(), &n, s.data(), &dummy, &one, vt.data(), &n, work.data(), &lwork, &info);
  if (info != 0) detail::throw_factorization_error("dgesvd", info, n, n, matrix);
}

}  // namespace spmdlearn::dense
