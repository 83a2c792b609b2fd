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

inline std::vector<double> eigh(std::vector<double>& a, int n, bool vectors, where w) {
#ifdef SPMDLEARN_WITH_CUDA
  if (w == where::gpu) return cuda::eigh(a, n, vectors);
#endif
  (void)w;
  const detail::blas_serial_scope serial(n);  // d x d: see blas_serial_scope
  return cpu::eigh(a, n, vectors);
}

inline int geqrf(int m, int n, double* a, int lda, where w) {
#ifdef SPMDLEARN_WITH_CUDA
  if (w == where::gpu) return cuda::geqrf(m, n, a, lda);
#endif
  (void)w;
  const detail::blas_serial_scope serial(std::max(m, n));
  return cpu::geqrf(m, n, a, lda);
}

// Singular values (descending) and Vᵀ (n x n, column-major) of the square column-major a.
inline void svd_square(std::vector<double>& a, int n, std::vector<double>& s, std::vector<double>& vt, where w) {
#ifdef SPMDLEARN_WITH_CUDA
  if (w == where::gpu) return cuda::svd_square(a, n, s, vt);
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
  if (info != 0) throw runtime_error("dgesvd failed with info=" + std::to_string(info));
}

}  // namespace spmdlearn::dense
