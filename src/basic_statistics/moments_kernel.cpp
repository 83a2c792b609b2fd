// Register-blocked moments kernel, compiled for AVX-512, AVX2+FMA and baseline x86-64; the first
// call picks the best variant the CPU supports (__builtin_cpu_supports), so one portable binary
// streams at memory speed on modern CPUs. (GCC's target_clones("arch=...") dispatches on the CPU
// *model* and fell back to the baseline on newer models, hence the explicit choice.)
#include "basic_statistics/moments_kernel.hpp"

#include <cstdlib>
#include <cstring>
#include <string_view>
#include <limits>
#include <type_traits>

#if defined(__GNUC__) && defined(__x86_64__)
#define SPMDLEARN_X86_DISPATCH 1
#endif

namespace spmdlearn::basic_statistics::kernel {

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// W columns over all rows of the chunk, written with GCC vector types so that the 4 accumulators
// are W-wide registers in every clone (the auto-vectoriser does not see through the row loop).
// Row-major rows are revisited once per column block, but the chunk is cache-resident after the
// first block.
template <int W>
struct vec_of {
  typedef double d __attribute__((vector_size(W * sizeof(double))));
  typedef float f __attribute__((vector_size(W * sizeof(float))));
};

template <int W, class T>
[[gnu::always_inline]] inline typename vec_of<W>::d load(const T* p) {
  using vd = typename vec_of<W>::d;
  if constexpr (std::is_same_v<T, double>) {
    vd v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  } else {
    typename vec_of<W>::f v;
    std::memcpy(&v, p, sizeof(v));
    return __builtin_convertvector(v, vd);
  }
}

template <int W, bool Weighted, class T>
[[gnu::always_inline]] inline void block(const T* __restrict x, std::int64_t stride,
                                         std::int64_t nb, const T* __restrict w,
                                         const double* __restrict shift, double* __restrict s1,
                                         double* __restrict s2, double* __restrict lo,
                                         double* __restrict hi) {
  using vd = typename vec_of<W>::d;
  const vd vinf = vd{} + inf;
  vd a1 = vd{}, a2 = vd{}, l = vinf, h = -vinf;
  vd s;
  std::memcpy(&s, shift, sizeof(s));
  for (std::int64_t i = 0; i < nb; ++i) {
    const vd v = load<W>(x + i * stride);
    const vd t = v - s;
    if constexpr (Weighted) {
      const double wi = static_cast<double>(w[i]);
      const vd wt = t * wi;
      a1 += wt;
      a2 += wt * t;
      const bool pos = wi > 0.0;  // rows of zero weight do not count for min/max
      const vd vl = pos ? v : vinf, vh = pos ? v : -vinf;
      l = vl < l ? vl : l;
      h = vh > h ? vh : h;
    } else {
      a1 += t;
      a2 += t * t;
      l = v < l ? v : l;
      h = v > h ? v : h;
    }
  }
  std::memcpy(s1, &a1, sizeof(a1));
  std::memcpy(s2, &a2, sizeof(a2));
  std::memcpy(lo, &l, sizeof(l));
  std::memcpy(hi, &h, sizeof(h));
}

// One column (the remainder after the vector blocks).
template <bool Weighted, class T>
[[gnu::always_inline]] inline void column(const T* __restrict x, std::int64_t stride,
                                          std::int64_t nb, const T* __restrict w, double shift,
                                          double* s1, double* s2, double* lo, double* hi) {
  double a1 = 0.0, a2 = 0.0, l = inf, h = -inf;
  for (std::int64_t i = 0; i < nb; ++i) {
    const double v = static_cast<double>(x[i * stride]);
    const double t = v - shift;
    const double wi = Weighted ? static_cast<double>(w[i]) : 1.0;
    a1 += wi * t;
    a2 += wi * t * t;
    if (!Weighted || wi > 0.0) {
      l = v < l ? v : l;
      h = v > h ? v : h;
    }
  }
  *s1 = a1;
  *s2 = a2;
  *lo = l;
  *hi = h;
}

template <bool Weighted, class T>
[[gnu::always_inline]] inline void all_columns(const T* x, std::int64_t stride, std::int64_t nb,
                                               std::int64_t d, const T* w, const double* shift,
                                               double* s1, double* s2, double* lo, double* hi) {
  std::int64_t j = 0;
  for (; j + 8 <= d; j += 8)
    block<8, Weighted>(x + j, stride, nb, w, shift + j, s1 + j, s2 + j, lo + j, hi + j);
  for (; j + 4 <= d; j += 4)
    block<4, Weighted>(x + j, stride, nb, w, shift + j, s1 + j, s2 + j, lo + j, hi + j);
  for (; j < d; ++j)
    column<Weighted>(x + j, stride, nb, w, shift[j], s1 + j, s2 + j, lo + j, hi + j);
}

template <class T>
[[gnu::always_inline]] inline void dispatch(const T* x, std::int64_t stride, std::int64_t nb,
                                            std::int64_t d, const T* w, const double* shift,
                                            double* s1, double* s2, double* lo, double* hi) {
  if (w)
    all_columns<true>(x, stride, nb, d, w, shift, s1, s2, lo, hi);
  else
    all_columns<false>(x, stride, nb, d, w, shift, s1, s2, lo, hi);
}

template <class T>
using kernel_fn = void (*)(const T*, std::int64_t, std::int64_t, std::int64_t, const T*,
                           const double*, double*, double*, double*, double*);

#define SPMDLEARN_VARIANT(name, attr)                                                            \
  template <class T>                                                                            \
  attr void name(const T* x, std::int64_t stride, std::int64_t nb, std::int64_t d, const T* w, \
                 const double* shift, double* s1, double* s2, double* lo, double* hi) {        \
    dispatch(x, stride, nb, d, w, shift, s1, s2, lo, hi);                                       \
  }
SPMDLEARN_VARIANT(variant_base, )
#ifdef SPMDLEARN_X86_DISPATCH
SPMDLEARN_VARIANT(variant_avx2, __attribute__((target("avx2,fma"))))
SPMDLEARN_VARIANT(variant_avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"))))
#endif
#undef SPMDLEARN_VARIANT

// SPMDLEARN_ISA=base|avx2 caps the choice (the tests run every variant this way).
template <class T>
kernel_fn<T> pick() {
#ifdef SPMDLEARN_X86_DISPATCH
  const char* cap = std::getenv("SPMDLEARN_ISA");
  const std::string_view want = cap ? cap : "";
  __builtin_cpu_init();
  if (want != "base" && want != "avx2" && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return &variant_avx512<T>;
  if (want != "base" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return &variant_avx2<T>;
#endif
  return &variant_base<T>;
}

}  // namespace

void chunk_moments(const double* x, std::int64_t stride, std::int64_t nb, std::int64_t d,
                   const double* w, const double* shift, double* s1, double* s2, double* lo,
                   double* hi) {
  static const kernel_fn<double> f = pick<double>();
  f(x, stride, nb, d, w, shift, s1, s2, lo, hi);
}

void chunk_moments(const float* x, std::int64_t stride, std::int64_t nb, std::int64_t d,
                   const float* w, const double* shift, double* s1, double* s2, double* lo,
                   double* hi) {
  static const kernel_fn<float> f = pick<float>();
  f(x, stride, nb, d, w, shift, s1, s2, lo, hi);
}

}  // namespace spmdlearn::basic_statistics::kernel
