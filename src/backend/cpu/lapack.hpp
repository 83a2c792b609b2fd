// Fortran BLAS/LAPACK prototypes (any reference-compatible library: OpenBLAS, MKL, BLIS, netlib).
// Declared here rather than through cblas.h/lapacke.h so the build needs only what CMake's
// FindBLAS/FindLAPACK locate. Column-major; our row-major d x d symmetric matrices are their own
// transpose, and a row-major n x d block is a column-major d x n matrix with leading dimension d.
#pragma once

#include "backend/cpu/skinny_gemm.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "core/factorization_error.hpp"
#include "spmdlearn/core/error.hpp"

extern "C" {
void dsyrk_(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* beta, double* c, const int* ldc);
void dsyr_(const char* uplo, const int* n, const double* alpha, const double* x, const int* incx,
           double* a, const int* lda);
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
             double* work, const int* lwork, int* iwork, const int* liwork, int* info);
}

namespace spmdlearn::cpu {

// C (n x n, column-major, upper) += A Aᵀ where A is n x k column-major (lda = n).
inline void syrk_acc(int n, int k, const double* a, double* c) {
  if (gram_kernel_available(n)) {  // AVX-512 tiles for n <= 128 with single-threaded BLAS (skinny_gemm.hpp)
    gram_upper_acc(k, n, a, c);
    return;
  }
  const double one = 1.0;
  dsyrk_("U", "N", &n, &k, &one, a, &n, &one, c, &n);
}

// C (upper) += alpha x xᵀ.
inline void syr(int n, double alpha, const double* x, double* c) {
  const int inc = 1;
  dsyr_("U", &n, &alpha, x, &inc, c, &n);
}

// Copies the upper triangle (column-major) into the lower: a full symmetric matrix.
inline void symmetrize_upper(int n, double* c) {
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < j; ++i) c[j + i * n] = c[i + j * n];
}

}  // namespace spmdlearn::cpu

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda, int* info);
void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda,
             double* b, const int* ldb, int* info);
}

namespace spmdlearn::cpu {

// Symmetric eigen-decomposition (LAPACK dsyevd) of the n x n matrix a, eigenvalues ascending;
// a is overwritten by the eigenvectors (columns, column-major).
// With vectors = false only the eigenvalues are computed (several times cheaper) and a is
// overwritten by scratch. `matrix` names a for the error message (detail::throw_factorization_error).
inline std::vector<double> eigh(std::vector<double>& a, int n, bool vectors = true,
                                const char* matrix = "symmetric matrix") {
  std::vector<double> lam(n);
  if (n == 0) return lam;
  const char* jobz = vectors ? "V" : "N";
  int info = 0, lwork = -1, liwork = -1, iwork_q = 0;
  double work_q = 0;
  dsyevd_(jobz, "U", &n, a.data(), &n, lam.data(), &work_q, &lwork, &iwork_q, &liwork, &info);
  lwork = static_cast<int>(work_q);
  liwork = iwork_q;
  std::vector<double> work(std::max(1, lwork));
  std::vector<int> iwork(std::max(1, liwork));
  dsyevd_(jobz, "U", &n, a.data(), &n, lam.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0) detail::throw_factorization_error("dsyevd", info, n, n, matrix);
  return lam;
}

}  // namespace spmdlearn::cpu

extern "C" {
void dgeqrf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work,
             const int* lwork, int* info);
void dgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, double* a,
             const int* lda, double* s, double* u, const int* ldu, double* vt, const int* ldvt,
             double* work, const int* lwork, int* info);
}

namespace spmdlearn::cpu {

// In place: the m x n column-major matrix a (lda) is replaced by its QR factorisation; returns
// info. The upper triangle of the leading min(m, n) rows then holds R.
inline int geqrf(int m, int n, double* a, int lda) {
  if (m == 0 || n == 0) return 0;
  std::vector<double> tau(std::min(m, n));
  int info = 0, lwork = -1;
  double q = 0;
  dgeqrf_(&m, &n, a, &lda, tau.data(), &q, &lwork, &info);
  lwork = std::max(1, static_cast<int>(q));
  std::vector<double> work(lwork);
  dgeqrf_(&m, &n, a, &lda, tau.data(), work.data(), &lwork, &info);
  return info;
}

}  // namespace spmdlearn::cpu

extern "C" {
void dtrsm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m,
            const int* n, const double* alpha, const double* a, const int* lda, double* b,
            const int* ldb);
}
