// Typed row-major wrappers of BLAS gemm (float and double) for the kernels that work in the
// precision of the input. Fortran prototypes, as in lapack.hpp.
#pragma once

#include <cstdint>
#include <type_traits>

extern "C" {
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc);
}

namespace spmdlearn::cpu {

// Column-major gemm in the precision of T: C = alpha op(A) op(B) + beta C.
template <class T>
inline void gemm(const char* ta, const char* tb, std::int64_t m, std::int64_t n, std::int64_t k,
                 T alpha, const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C,
                 std::int64_t ldc) {
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  const int la = static_cast<int>(lda), lb = static_cast<int>(ldb), lc = static_cast<int>(ldc);
  if constexpr (std::is_same_v<T, float>)
    sgemm_(ta, tb, &mi, &ni, &ki, &alpha, A, &la, B, &lb, &beta, C, &lc);
  else
    dgemm_(ta, tb, &mi, &ni, &ki, &alpha, A, &la, B, &lb, &beta, C, &lc);
}

// D (rows x k, row-major, ld k) = alpha * X Cᵀ + beta * D, with X rows x d (row stride ldx) and
// C k x d (row-major, ld d).
template <class T>
inline void gemm_rows_by_centers(std::int64_t rows, std::int64_t k, std::int64_t d, T alpha,
                                 const T* X, std::int64_t ldx, const T* C, T beta, T* D) {
  gemm<T>("T", "N", k, rows, d, alpha, C, d, X, ldx, beta, D, k);
}

// D (rows x k, column-major, ld rows) = alpha * X Cᵀ, same X and C.
template <class T>
inline void gemm_centers_by_rows(std::int64_t rows, std::int64_t k, std::int64_t d, T alpha,
                                 const T* X, std::int64_t ldx, const T* C, T* D) {
  gemm<T>("T", "N", rows, k, d, alpha, X, ldx, C, d, T(0), D, rows);
}

}  // namespace spmdlearn::cpu
