// See skinny_gemm.hpp. The summation order is fixed (row by row, four rows at a time, in column
// order), so a fit is reproducible on a given machine.
#include "backend/cpu/skinny_gemm.hpp"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SPMDLEARN_SKINNY_X86 1
#endif

namespace spmdlearn::cpu {

#ifdef SPMDLEARN_SKINNY_X86

constexpr std::int64_t prefetch_rows = 8;

// The lanes of a row's K values in an 8-lane vector.
inline __mmask8 class_lanes(std::int64_t K) { return static_cast<__mmask8>((1u << K) - 1); }
// Rows i .. i + 3 of a matrix with row stride lx, from row i's address.
inline void four_rows(const double* x, std::int64_t lx, const double*& x0, const double*& x1, const double*& x2,
                      const double*& x3) {
  x0 = x;
  x1 = x0 + lx;
  x2 = x1 + lx;
  x3 = x2 + lx;
}

bool skinny_gemm_available(std::int64_t K) noexcept {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512 && K >= 2 && K <= 8;
}

__attribute__((target("avx512f"))) void skinny_logits(std::int64_t nb, std::int64_t d, std::int64_t K, const double* X,
                                                      std::int64_t lx, const double* theta, std::int64_t ld, double* R,
                                                      double* Wt) noexcept {
  for (std::int64_t j = 0; j < d; ++j)
    for (std::int64_t k = 0; k < 8; ++k) Wt[j * 8 + k] = k < K ? theta[k * ld + j] : 0.0;
  const __mmask8 m = class_lanes(K);
  std::int64_t i = 0;
  for (; i + 4 <= nb; i += 4) {
    const double *x0, *x1, *x2, *x3;
    four_rows(X + i * lx, lx, x0, x1, x2, x3);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    if (i + prefetch_rows + 4 <= nb) {
      // This pass streams X from memory: ask for the rows 8 ahead (31.2 -> 25.0 ms an
      // evaluation of 500K x 50 with the gradient, in a probe on the 2-core Xeon VM).
      const char* pf = reinterpret_cast<const char*>(X + (i + prefetch_rows) * lx);
      const std::int64_t bytes = (3 * lx + d) * static_cast<std::int64_t>(sizeof(double));
      for (std::int64_t o = 0; o < bytes; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
    }
    for (std::int64_t j = 0; j < d; ++j) {
      const __m512d w = _mm512_loadu_pd(Wt + j * 8);
      a0 = _mm512_fmadd_pd(_mm512_set1_pd(x0[j]), w, a0);
      a1 = _mm512_fmadd_pd(_mm512_set1_pd(x1[j]), w, a1);
      a2 = _mm512_fmadd_pd(_mm512_set1_pd(x2[j]), w, a2);
      a3 = _mm512_fmadd_pd(_mm512_set1_pd(x3[j]), w, a3);
    }
    _mm512_mask_storeu_pd(R + (i + 0) * K, m, a0);
    _mm512_mask_storeu_pd(R + (i + 1) * K, m, a1);
    _mm512_mask_storeu_pd(R + (i + 2) * K, m, a2);
    _mm512_mask_storeu_pd(R + (i + 3) * K, m, a3);
  }
  for (; i < nb; ++i) {
    const double* x0 = X + i * lx;
    __m512d a0 = _mm512_setzero_pd();
    for (std::int64_t j = 0; j < d; ++j) a0 = _mm512_fmadd_pd(_mm512_set1_pd(x0[j]), _mm512_loadu_pd(Wt + j * 8), a0);
    _mm512_mask_storeu_pd(R + i * K, m, a0);
  }
}

__attribute__((target("avx512f"))) void skinny_gradient(std::int64_t nb, std::int64_t d, std::int64_t K,
                                                        const double* X, std::int64_t lx, const double* R, double* G,
                                                        std::int64_t ld, double* acc) noexcept {
  std::memset(acc, 0, sizeof(double) * 8 * static_cast<std::size_t>(d));
  const __mmask8 m = class_lanes(K);
  std::int64_t i = 0;
  for (; i + 4 <= nb; i += 4) {
    const double *x0, *x1, *x2, *x3;
    four_rows(X + i * lx, lx, x0, x1, x2, x3);
    const __m512d r0 = _mm512_maskz_loadu_pd(m, R + (i + 0) * K), r1 = _mm512_maskz_loadu_pd(m, R + (i + 1) * K),
                  r2 = _mm512_maskz_loadu_pd(m, R + (i + 2) * K), r3 = _mm512_maskz_loadu_pd(m, R + (i + 3) * K);
    for (std::int64_t j = 0; j < d; ++j) {
      __m512d a = _mm512_loadu_pd(acc + j * 8);
      a = _mm512_fmadd_pd(_mm512_set1_pd(x0[j]), r0, a);
      a = _mm512_fmadd_pd(_mm512_set1_pd(x1[j]), r1, a);
      a = _mm512_fmadd_pd(_mm512_set1_pd(x2[j]), r2, a);
      a = _mm512_fmadd_pd(_mm512_set1_pd(x3[j]), r3, a);
      _mm512_storeu_pd(acc + j * 8, a);
    }
  }
  for (; i < nb; ++i) {
    const double* x0 = X + i * lx;
    const __m512d r0 = _mm512_maskz_loadu_pd(m, R + i * K);
    for (std::int64_t j = 0; j < d; ++j)
      _mm512_storeu_pd(acc + j * 8, _mm512_fmadd_pd(_mm512_set1_pd(x0[j]), r0, _mm512_loadu_pd(acc + j * 8)));
  }
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t j = 0; j < d; ++j) G[k * ld + j] += acc[j * 8 + k];
}

// OpenBLAS's thread count, when OpenBLAS is the BLAS (a weak symbol: absent with another BLAS).
extern "C" int openblas_get_num_threads(void) __attribute__((weak));

bool gram_kernel_available(std::int64_t p) noexcept {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512 && p >= 1 && p <= 128 && openblas_get_num_threads != nullptr && openblas_get_num_threads() == 1;
}

namespace {

// One tile: S's rows a0 .. a0 + 7 against NV 8-wide column vectors from b0 (lanes past p masked
// to zero), over the nb rows; then the entries with a <= b < p are added to S.
template <int NV>
__attribute__((target("avx512f"), always_inline)) inline void gram_tile(std::int64_t nb, std::int64_t p,
                                                                        const double* Z, std::int64_t a0,
                                                                        std::int64_t b0, double* S) {
  __mmask8 m[NV];
  for (int v = 0; v < NV; ++v) {
    const std::int64_t r = p - (b0 + 8 * v);
    m[v] = r >= 8 ? static_cast<__mmask8>(0xff) : class_lanes(r);
  }
  std::int64_t ai[8];  // rows of S past p read a valid column (their sums are dropped)
  for (int i = 0; i < 8; ++i) ai[i] = std::min(a0 + i, p - 1);
  __m512d c[8][NV];
  for (int i = 0; i < 8; ++i)
    for (int v = 0; v < NV; ++v) c[i][v] = _mm512_setzero_pd();
  const double* z = Z;
  for (std::int64_t r = 0; r < nb; ++r, z += p) {
    __m512d vb[NV];
    for (int v = 0; v < NV; ++v) vb[v] = _mm512_maskz_loadu_pd(m[v], z + b0 + 8 * v);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const __m512d x = _mm512_set1_pd(z[ai[i]]);
      for (int v = 0; v < NV; ++v) c[i][v] = _mm512_fmadd_pd(x, vb[v], c[i][v]);
    }
  }
  alignas(64) double T[8 * 8 * NV];
  for (int i = 0; i < 8; ++i)
    for (int v = 0; v < NV; ++v) _mm512_store_pd(T + (i * NV + v) * 8, c[i][v]);
  for (int i = 0; i < 8 && a0 + i < p; ++i)
    for (int q = 0; q < 8 * NV && b0 + q < p; ++q)
      if (b0 + q >= a0 + i) S[(a0 + i) + (b0 + q) * p] += T[i * 8 * NV + q];
}

}  // namespace

__attribute__((target("avx512f"))) void gram_upper_acc(std::int64_t nb, std::int64_t p, const double* Z,
                                                       double* S) noexcept {
  for (std::int64_t a0 = 0; a0 < p; a0 += 8)
    for (std::int64_t b0 = a0; b0 < p; b0 += 24) {
      const std::int64_t nv = std::min<std::int64_t>(3, (p - b0 + 7) / 8);
      if (nv == 3)
        gram_tile<3>(nb, p, Z, a0, b0, S);
      else if (nv == 2)
        gram_tile<2>(nb, p, Z, a0, b0, S);
      else
        gram_tile<1>(nb, p, Z, a0, b0, S);
    }
}

#else  // not x86-64 GCC/Clang: never available, the callers use BLAS

bool gram_kernel_available(std::int64_t) noexcept { return false; }
void gram_upper_acc(std::int64_t, std::int64_t, const double*, double*) noexcept {}

bool skinny_gemm_available(std::int64_t) noexcept { return false; }
void skinny_logits(std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t, const double*, std::int64_t,
                   double*, double*) noexcept {}
void skinny_gradient(std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t, const double*, double*,
                     std::int64_t, double*) noexcept {}

#endif

}  // namespace spmdlearn::cpu
