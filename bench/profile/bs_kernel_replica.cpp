// Stand-alone copy of spmdlearn's BasicStatistics inner loops (src/basic_statistics/basic_statistics.cpp,
// unweighted path, as of 2026-11-27), to see what bounds them. Not library code; not built by CMake.
//
//   g++ -O3 -DNDEBUG -o /tmp/k_base bs_kernel_replica.cpp                 # how the library is built
//   g++ -O3 -DNDEBUG -march=native -o /tmp/k_native bs_kernel_replica.cpp
//   HUGE=1 taskset -c 0 /tmp/k_base; HUGE=1 taskset -c 0 /tmp/k_native
//
// Prints, for 2,000,000 x 16 float64 (256 MB): column sums only (accumulators in registers),
// the same loops run 128x over a 2 MB block that stays in L2 (compute cost alone), and from DRAM:
// a scalar streaming sum, pass 1 (sums/min/max per chunk), pass 1 + pass 2 (centred squares,
// re-read from cache), pass 1 with the accumulators in registers for d = 16.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>
#include <cstdlib>
#include <sys/mman.h>
using i64 = std::int64_t;
constexpr double inf = std::numeric_limits<double>::infinity();
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// pass1 = sums/min/max per chunk; pass2 = centred squares per chunk (from cache)
template <bool Pass2>
void accumulate(const double* X, i64 n, i64 d, double* out) {
  const i64 B = std::clamp<i64>((256 << 10) / (8 * d), 16, 4096);
  std::vector<double> s(d), mn(d), mx(d), mb(d), m2b(d);
  double* __restrict sp = s.data(); double* __restrict mnp = mn.data(); double* __restrict mxp = mx.data();
  double* __restrict mbp = mb.data(); double* __restrict m2p = m2b.data();
  double acc = 0;
  for (i64 i0 = 0; i0 < n; i0 += B) {
    const i64 nb = std::min(B, n - i0);
    std::fill(s.begin(), s.end(), 0.0); std::fill(mn.begin(), mn.end(), inf); std::fill(mx.begin(), mx.end(), -inf);
    for (i64 i = i0; i < i0 + nb; ++i) {
      const double* __restrict x = X + i * d;
      for (i64 j = 0; j < d; ++j) {
        const double v = x[j];
        sp[j] += v; mnp[j] = v < mnp[j] ? v : mnp[j]; mxp[j] = v > mxp[j] ? v : mxp[j];
      }
    }
    if (Pass2) {
      for (i64 j = 0; j < d; ++j) { mbp[j] = sp[j] / nb; m2p[j] = 0; }
      for (i64 i = i0; i < i0 + nb; ++i) {
        const double* __restrict x = X + i * d;
        for (i64 j = 0; j < d; ++j) { const double t = x[j] - mbp[j]; m2p[j] += t * t; }
      }
    }
    for (i64 j = 0; j < d; ++j) acc += sp[j] + mnp[j] + mxp[j] + m2p[j];
  }
  *out = acc;
}

// d = 16 with the accumulators in registers (what a register-blocked kernel would do)
void pass1_regs16(const double* X, i64 n, double* out) {
  double s[16] = {}, mn[16], mx[16];
  for (int j = 0; j < 16; ++j) { mn[j] = inf; mx[j] = -inf; }
  for (i64 i = 0; i < n; ++i) {
    const double* __restrict x = X + i * 16;
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) { const double v = x[j]; s[j] += v; mn[j] = v < mn[j] ? v : mn[j]; mx[j] = v > mx[j] ? v : mx[j]; }
  }
  double a = 0; for (int j = 0; j < 16; ++j) a += s[j] + mn[j] + mx[j];
  *out = a;
}

int main() {
  const i64 n = 2000000, d = 16;
  struct HugeVec { double* p; i64 sz; double* data() { return p; } double& operator[](i64 k) { return p[k]; } double* begin() { return p; } double* end() { return p + sz; } };
  HugeVec X{static_cast<double*>(std::aligned_alloc(1 << 21, n * d * 8)), n * d};
  if (std::getenv("HUGE")) madvise(X.p, n * d * 8, MADV_HUGEPAGE);
  std::mt19937_64 g(1); std::normal_distribution<double> nd;
  for (auto& v : X) v = nd(g);
  double r = 0;
  auto best = [&](auto f) { double b = 1e9; for (int k = 0; k < 9; ++k) { asm volatile("" : : "r"(X.data()) : "memory"); double t = now(); f(); asm volatile("" : : "r"(&r) : "memory"); b = std::min(b, now() - t); } return b; };
  double t_stream = best([&] { double a = 0; for (i64 k = 0; k < n * d; k += 8) { a += X[k] + X[k+1] + X[k+2] + X[k+3] + X[k+4] + X[k+5] + X[k+6] + X[k+7]; } r += a; });
  double t1 = best([&] { accumulate<false>(X.data(), n, d, &r); });
  double t12 = best([&] { accumulate<true>(X.data(), n, d, &r); });
  double tsum = best([&] { double s[16] = {}; for (i64 i = 0; i < n; ++i) { const double* x = X.data() + i * 16;
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) s[j] += x[j]; } for (int j = 0; j < 16; ++j) r += s[j]; });
  std::printf("column sums only (regs) %.4f\n", tsum);
  {  // same work from L2: 128 passes over 2 MB (= 256 MB of reads)
    const i64 m = 16384;
    double tc = best([&] { for (int p = 0; p < 128; ++p) accumulate<false>(X.data(), m, d, &r); });
    double tc2 = best([&] { for (int p = 0; p < 128; ++p) accumulate<true>(X.data(), m, d, &r); });
    double tcs = best([&] { for (int p = 0; p < 128; ++p) { double s[16] = {}; for (i64 i = 0; i < m; ++i) { const double* x = X.data() + i * 16;
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) s[j] += x[j]; } for (int j = 0; j < 16; ++j) r += s[j]; } });
    std::printf("in-cache (2 MB x 128): pass1 %.4f | pass1+pass2 %.4f | column sums %.4f\n", tc, tc2, tcs);
  }
  double tr = best([&] { pass1_regs16(X.data(), n, &r); });
  std::printf("rows %lld x %lld (%.0f MB): stream-sum %.4f s | pass1 (sum/min/max) %.4f | pass1+pass2 %.4f | pass1 regs d=16 %.4f   [%g]\n",
              (long long)n, (long long)d, n * d * 8 / 1e6, t_stream, t1, t12, tr, r);
}
