// Typed row-major wrappers of BLAS gemm (float and double) for the kernels that work in the
// precision of the input. Fortran prototypes, as in lapack.hpp.
#pragma once

#include <cstdint>

extern "C" {
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc);
}

namespace spmdlearn::cpu {

// D (rows x k, row-major, ld k) = alpha * X Cᵀ + beta * D, with X rows x d (row stride ldx) and
// C k x d (row-major, ld d).
inline void gemm_rows_by_centers(std::int64_t rows, std::int64_t k, std::int64_t d, double alpha,
                                 const double* X, std::int64_t ldx, const double* C, double beta,
                                 double* D) {
  const int m = static_cast<int>(k), n = static_cast<int>(rows), kk = static_cast<int>(d);
  const int lda = kk, ldb = static_cast<int>(ldx), ldc = m;
  dgemm_("T", "N", &m, &n, &kk, &alpha, C, &lda, X, &ldb, &beta, D, &ldc);
}
inline void gemm_rows_by_centers(std::int64_t rows, std::int64_t k, std::int64_t d, float alpha,
                                 const float* X, std::int64_t ldx, const float* C, float beta,
                                 float* D) {
  const int m = static_cast<int>(k), n = static_cast<int>(rows), kk = static_cast<int>(d);
  const int lda = kk, ldb = static_cast<int>(ldx), ldc = m;
  sgemm_("T", "N", &m, &n, &kk, &alpha, C, &lda, X, &ldb, &beta, D, &ldc);
}

}  // namespace spmdlearn::cpu
