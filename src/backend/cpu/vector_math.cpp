#include "backend/cpu/vector_math.hpp"

#include <cmath>

#if defined(SPMDLEARN_WITH_LIBMVEC) && defined(__x86_64__)
#include <immintrin.h>

// glibc's vector ABI names (x86_64 vector function ABI): 8 doubles with AVX-512, 4 with AVX2.
extern "C" __m512d _ZGVeN8v_exp(__m512d);
extern "C" __m256d _ZGVdN4v_exp(__m256d);

namespace spmdlearn::cpu {
namespace {

__attribute__((target("avx512f"))) void exp_avx512(double* x, std::int64_t n) noexcept {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm512_storeu_pd(x + i, _ZGVeN8v_exp(_mm512_loadu_pd(x + i)));
  for (; i < n; ++i) x[i] = std::exp(x[i]);
}

__attribute__((target("avx2"))) void exp_avx2(double* x, std::int64_t n) noexcept {
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(x + i, _ZGVdN4v_exp(_mm256_loadu_pd(x + i)));
  for (; i < n; ++i) x[i] = std::exp(x[i]);
}

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

}  // namespace spmdlearn::cpu
#else
namespace spmdlearn::cpu {
void exp_inplace(double* x, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
}
}  // namespace spmdlearn::cpu
#endif
