#include "backend/cpu/vector_math.hpp"

#include <cmath>

#if defined(SPMDLEARN_WITH_LIBMVEC) && defined(__x86_64__)
#include <immintrin.h>

// glibc's vector ABI names (x86_64 vector function ABI): 8 doubles with AVX-512, 4 with AVX2.
extern "C" __m512d _ZGVeN8v_exp(__m512d);
extern "C" __m256d _ZGVdN4v_exp(__m256d);
extern "C" __m512d _ZGVeN8v_log(__m512d);
extern "C" __m256d _ZGVdN4v_log(__m256d);

namespace spmdlearn::cpu {
namespace {

// Applies a libmvec function 8 (AVX-512) or 4 (AVX2) lanes at a time, the scalar one to the tail.
#define SPMDLEARN_VECTOR_LOOP(NAME, TARGET, WIDTH, LOAD, STORE, VFN, SFN)        \
  __attribute__((target(TARGET))) void NAME(double* x, std::int64_t n) noexcept { \
    std::int64_t i = 0;                                                          \
    for (; i + WIDTH <= n; i += WIDTH) STORE(x + i, VFN(LOAD(x + i)));           \
    for (; i < n; ++i) x[i] = SFN(x[i]);                                         \
  }
SPMDLEARN_VECTOR_LOOP(exp_avx512, "avx512f", 8, _mm512_loadu_pd, _mm512_storeu_pd, _ZGVeN8v_exp, std::exp)
SPMDLEARN_VECTOR_LOOP(exp_avx2, "avx2", 4, _mm256_loadu_pd, _mm256_storeu_pd, _ZGVdN4v_exp, std::exp)
SPMDLEARN_VECTOR_LOOP(log_avx512, "avx512f", 8, _mm512_loadu_pd, _mm512_storeu_pd, _ZGVeN8v_log, std::log)
SPMDLEARN_VECTOR_LOOP(log_avx2, "avx2", 4, _mm256_loadu_pd, _mm256_storeu_pd, _ZGVdN4v_log, std::log)
#undef SPMDLEARN_VECTOR_LOOP

int level() noexcept {
  static const int l = __builtin_cpu_supports("avx512f") ? 2 : (__builtin_cpu_supports("avx2") ? 1 : 0);
  return l;
}

}  // namespace

void exp_inplace(double* x, std::int64_t n) noexcept {
  switch (level()) {
    case 2: exp_avx512(x, n); return;
    case 1: exp_avx2(x, n); return;
    default:
      for (std::int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
  }
}

void log_inplace(double* x, std::int64_t n) noexcept {
  switch (level()) {
    case 2: log_avx512(x, n); return;
    case 1: log_avx2(x, n); return;
    default:
      for (std::int64_t i = 0; i < n; ++i) x[i] = std::log(x[i]);
  }
}

}  // namespace spmdlearn::cpu
#else
namespace spmdlearn::cpu {
void exp_inplace(double* x, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}
void log_inplace(double* x, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) x[i] = std::log(x[i]);
}
}  // namespace spmdlearn::cpu
#endif
