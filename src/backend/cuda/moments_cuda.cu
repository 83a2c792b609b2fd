// CUDA statistics kernels: one coalesced pass over a row-major device matrix.
//
// Block layout: 256 threads; a block covers `cols` = min(d, 256) columns (blockIdx.y picks the
// column tile) and R = 256 / cols rows at a time: thread t reads row r = t / cols, column
// j = t % cols, so a warp reads consecutive addresses. Each thread keeps double accumulators for
// its column; threads of the same column are combined in a fixed order in shared memory, and the
// per-block partials are combined in a fixed order by a second kernel: the result is bitwise
// reproducible. All blocks use the same shift, so partials add without Chan corrections; the host
// checks the shift was good enough (and re-runs about the mean when it was not).

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/work_type.cuh"
#include "backend/cuda/moments_cuda.hpp"
#include "basic_statistics/moments_kernel.hpp"
#include "spmdlearn/core/error.hpp"

namespace spmdlearn::cuda {

namespace {

constexpr int threads = 256;


template <class T, bool Weighted>
__global__ void __launch_bounds__(threads)
    partial_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                   const T* __restrict__ w, const double* __restrict__ shift,
                   std::int64_t rows_per_block, double* __restrict__ part) {
  using W = typename work_type<T>::type;
  __shared__ double sh1[threads], sh2[threads], shl[threads], shh[threads], shw[threads], shm[threads];
  const int cols = min(d - static_cast<int>(blockIdx.y) * threads, threads);
  const int R = threads / cols;
  const int t = threadIdx.x;
  const int r = t / cols, jl = t % cols;
  const int j = blockIdx.y * threads + jl;
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * rows_per_block;
  const std::int64_t row1 = min(n, row0 + rows_per_block);
  double a1 = 0.0, a2 = 0.0, ws = 0.0, wmin = INFINITY;
  W lo = INFINITY, hi = -INFINITY;
  if (r < R) {
    const W s = static_cast<W>(shift[j]);
    std::int64_t i = row0 + r;
    // Four rows in flight per thread.
    for (; i + 3 * R < row1; i += 4 * R) {
      W v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = static_cast<W>(X[(i + u * R) * stride + j]);
      if constexpr (Weighted) {
        W wi[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) wi[u] = static_cast<W>(w[i + u * R]);
        W p1 = 0, p2 = 0;
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const W tt = v[u] - s, wt = wi[u] * tt;
          p1 += wt;
          p2 += wt * tt;
          ws += static_cast<double>(wi[u]);
          wmin = fmin(wmin, static_cast<double>(wi[u]));
          if (wi[u] > W(0)) {
            lo = min(lo, v[u]);
            hi = max(hi, v[u]);
          }
        }
        a1 += static_cast<double>(p1);
        a2 += static_cast<double>(p2);
      } else {
        W p1 = 0, p2 = 0;
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const W tt = v[u] - s;
          p1 += tt;
          p2 += tt * tt;
          lo = min(lo, v[u]);
          hi = max(hi, v[u]);
        }
        a1 += static_cast<double>(p1);
        a2 += static_cast<double>(p2);
      }
    }
    for (; i < row1; i += R) {
      const W v = static_cast<W>(X[i * stride + j]);
      const W wi = Weighted ? static_cast<W>(w[i]) : W(1);
      const W tt = v - s, wt = wi * tt;
      a1 += static_cast<double>(wt);
      a2 += static_cast<double>(wt * tt);
      if (Weighted) {
        ws += static_cast<double>(wi);
        wmin = fmin(wmin, static_cast<double>(wi));
      }
      if (!Weighted || wi > W(0)) {
        lo = min(lo, v);
        hi = max(hi, v);
      }
    }
  }
  // NaN must not vanish in min/max: it shows in a1 (and the host reports it), so min/max may skip.
  sh1[t] = a1;
  sh2[t] = a2;
  shl[t] = static_cast<double>(lo);
  shh[t] = static_cast<double>(hi);
  shw[t] = ws;
  shm[t] = wmin;
  __syncthreads();
  if (t < cols) {
    double l = shl[t], h = shh[t];
    for (int q = 1; q < R; ++q) {
      const int o = q * cols + t;
      a1 += sh1[o];
      a2 += sh2[o];
      l = fmin(l, shl[o]);
      h = fmax(h, shh[o]);
      ws += shw[o];
      wmin = fmin(wmin, shm[o]);
    }
    // part layout: [block][6][d]; the weight sum and smallest weight are per column (every column
    // sees the same rows).
    double* p = part + static_cast<std::int64_t>(blockIdx.x) * 6 * d;
    p[j] = a1;
    p[d + j] = a2;
    p[2 * d + j] = l;
    p[3 * d + j] = h;
    p[4 * d + j] = ws;
    p[5 * d + j] = wmin;
  }
}

// One block per column: thread t takes partials t, t + 256, ... in order, then a fixed-shape tree
// in shared memory -- parallel, and still the same bits on every run.
__global__ void __launch_bounds__(threads)
    combine_kernel(const double* __restrict__ part, int blocks, int d, double* __restrict__ out) {
  __shared__ double r1[threads], r2[threads], rl[threads], rh[threads], rw[threads], rm[threads];
  const int j = blockIdx.x, t = threadIdx.x;
  double a1 = 0.0, a2 = 0.0, lo = INFINITY, hi = -INFINITY, ws = 0.0, wmin = INFINITY;
  for (int b = t; b < blocks; b += threads) {
    const double* p = part + static_cast<std::int64_t>(b) * 6 * d;
    a1 += p[j];
    a2 += p[d + j];
    // fmin/fmax drop NaN; a NaN input is caught from a1 by the host.
    lo = fmin(lo, p[2 * d + j]);
    hi = fmax(hi, p[3 * d + j]);
    ws += p[4 * d + j];
    wmin = fmin(wmin, p[5 * d + j]);
  }
  r1[t] = a1;
  r2[t] = a2;
  rl[t] = lo;
  rh[t] = hi;
  rw[t] = ws;
  rm[t] = wmin;
  __syncthreads();
  for (int half = threads / 2; half > 0; half /= 2) {
    if (t < half) {
      r1[t] += r1[t + half];
      r2[t] += r2[t + half];
      rl[t] = fmin(rl[t], rl[t + half]);
      rh[t] = fmax(rh[t], rh[t + half]);
      rw[t] += rw[t + half];
      rm[t] = fmin(rm[t], rm[t + half]);
    }
    __syncthreads();
  }
  if (t == 0) {
    out[j] = r1[0];
    out[d + j] = r2[0];
    out[2 * d + j] = rl[0];
    out[3 * d + j] = rh[0];
    out[4 * d + j] = rw[0];
    out[5 * d + j] = rm[0];
  }
}

// The first non-finite element (smallest flat index), for the error message.
template <class T>
__global__ void find_nonfinite(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                               unsigned long long* first) {
  const std::int64_t total = n * d;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e / d, j = e % d;
    if (!isfinite(static_cast<double>(X[i * stride + j])))
      atomicMin(first, static_cast<unsigned long long>(e));
  }
}

}  // namespace

template <class T>
column_moments moments(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const T* w,
                       const std::vector<double>& shift) {
  column_moments out;
  out.s1.assign(d, 0.0);
  out.s2.assign(d, 0.0);
  out.lo.assign(d, std::numeric_limits<double>::infinity());
  out.hi.assign(d, -std::numeric_limits<double>::infinity());
  out.shift_used.resize(d);
  for (std::int64_t j = 0; j < d; ++j)
    out.shift_used[j] = static_cast<double>(static_cast<typename work_type<T>::type>(shift[j]));
  if (n == 0 || d == 0) return out;
  device_scope scope(X);
  if (w) require_same_device(w, scope.device, "sample_weight");
  const cudaStream_t st = scope.stream();
  const int col_tiles = static_cast<int>((d + threads - 1) / threads);
  // One full wave: as many blocks as can be resident at once, each with a contiguous run of rows
  // (no tail of half-empty waves).
  int per_sm = 0;
  if (w)
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, partial_kernel<T, true>, threads, 0),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  else
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, partial_kernel<T, false>, threads, 0),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const std::int64_t target =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(std::max(per_sm, 1)) * multiprocessors() / col_tiles);
  const std::int64_t rows_per_block = std::max<std::int64_t>(64, (n + target - 1) / target);
  const int blocks = static_cast<int>((n + rows_per_block - 1) / rows_per_block);

  dev_array<double> dshift(d, st), dpart(static_cast<std::size_t>(blocks) * 6 * d, st), dout(6 * d, st);
  check(cudaMemcpy(dshift.p, out.shift_used.data(), d * sizeof(double), cudaMemcpyHostToDevice),
        "cudaMemcpy");
  const dim3 grid(blocks, col_tiles);
  if (w)
    partial_kernel<T, true><<<grid, threads, 0, st>>>(X, n, static_cast<int>(d), stride, w, dshift.p,
                                               rows_per_block, dpart.p);
  else
    partial_kernel<T, false><<<grid, threads, 0, st>>>(X, n, static_cast<int>(d), stride, w, dshift.p,
                                                rows_per_block, dpart.p);
  check(cudaGetLastError(), "moments kernel launch");
  combine_kernel<<<static_cast<int>(d), threads, 0, st>>>(dpart.p, blocks, static_cast<int>(d), dout.p);
  check(cudaGetLastError(), "combine kernel launch");
  std::vector<double> host(6 * d);
  check(cudaMemcpy(host.data(), dout.p, 6 * d * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
  for (std::int64_t j = 0; j < d; ++j) {
    out.s1[j] = host[j];
    out.s2[j] = host[d + j];
    out.lo[j] = host[2 * d + j];
    out.hi[j] = host[3 * d + j];
  }
  out.weight = w ? host[4 * d] : static_cast<double>(n);
  if (w) {
    // Weights are checked here, in the same pass: fmin ignores NaN, the sum does not.
    if (!std::isfinite(out.weight))
      throw invalid_argument("sample_weight contains NaN or infinity");
    if (host[5 * d] < 0.0)
      throw invalid_argument("sample_weight contains a negative value (" +
                             std::to_string(host[5 * d]) + "); weights must be >= 0");
  }

  bool finite = true;
  for (std::int64_t j = 0; j < d; ++j) finite &= std::isfinite(out.s1[j]) && std::isfinite(out.s2[j]);
  if (!finite) throw_first_nonfinite(X, n, d, stride);
  return out;
}

template <class T>
void throw_first_nonfinite(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride) {
  if (n == 0 || d == 0) return;
  device_scope scope(X, false);
  const cudaStream_t st = scope.stream();
  dev_array<unsigned long long> first(1, st);
  const unsigned long long none = ~0ULL;
  check(cudaMemcpy(first.p, &none, sizeof(none), cudaMemcpyHostToDevice), "cudaMemcpy");
  find_nonfinite<T><<<8 * multiprocessors(), 256, 0, st>>>(X, n, static_cast<int>(d), stride, first.p);
  check(cudaGetLastError(), "find_nonfinite launch");
  unsigned long long e = none;
  check(cudaMemcpy(&e, first.p, sizeof(e), cudaMemcpyDeviceToHost), "cudaMemcpy");
  if (e == none) return;
  T v;
  const std::int64_t i = static_cast<std::int64_t>(e) / d, j = static_cast<std::int64_t>(e) % d;
  check(cudaMemcpy(&v, X + i * stride + j, sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  throw invalid_argument(std::string("X contains ") + (std::isnan(v) ? "NaN" : "infinity") +
                         " (local row " + std::to_string(i) + ", column " + std::to_string(j) +
                         "); remove or impute non-finite values first");
}
template void throw_first_nonfinite<float>(const float*, std::int64_t, std::int64_t, std::int64_t);
template void throw_first_nonfinite<double>(const double*, std::int64_t, std::int64_t, std::int64_t);

template <class T>
std::vector<double> first_row(const T* X, std::int64_t d) {
  device_scope scope(X, false);
  std::vector<T> row(d);
  check(cudaMemcpy(row.data(), X, d * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return std::vector<double>(row.begin(), row.end());
}

void free_device(void* p) noexcept {
  if (p) cudaFree(p);
}

device_buffer to_device(const void* host, std::size_t bytes) {
  device_buffer b;
  if (bytes == 0) return b;
  check(cudaMalloc(&b.ptr, bytes), "cudaMalloc", bytes);
  const cudaError_t e = cudaMemcpy(b.ptr, host, bytes, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) {
    cudaFree(b.release());
    fail(e, "cudaMemcpy");
  }
  return b;
}

template <class T>
__global__ void scale_kernel(const T* __restrict__ X, T* __restrict__ out, std::int64_t n, int d,
                             std::int64_t stride, const double* __restrict__ a,
                             const double* __restrict__ b, int* __restrict__ bad) {
  const std::int64_t total = n * d;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e / d;
    const int j = static_cast<int>(e - i * d);
    const double v = static_cast<double>(X[i * stride + j]);
    if (!isfinite(v)) *bad = 1;
    out[e] = static_cast<T>(v * a[j] + b[j]);
  }
}

template <class T>
void scale_columns(const T* X, T* out, std::int64_t n, std::int64_t d, std::int64_t stride,
                   const std::vector<double>& a, const std::vector<double>& b) {
  if (n == 0 || d == 0) return;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  dev_array<double> da(d, st), db(d, st);
  dev_array<int> bad(1, st);
  const int zero = 0;
  check(cudaMemcpy(da.p, a.data(), d * sizeof(double), cudaMemcpyHostToDevice), "cudaMemcpy");
  check(cudaMemcpy(db.p, b.data(), d * sizeof(double), cudaMemcpyHostToDevice), "cudaMemcpy");
  check(cudaMemcpy(bad.p, &zero, sizeof(int), cudaMemcpyHostToDevice), "cudaMemcpy");
  scale_kernel<T><<<8 * multiprocessors(), threads, 0, st>>>(X, out, n, static_cast<int>(d), stride, da.p,
                                                      db.p, bad.p);
  check(cudaGetLastError(), "scale kernel launch");
  int flag = 0;
  check(cudaMemcpy(&flag, bad.p, sizeof(int), cudaMemcpyDeviceToHost), "cudaMemcpy");
  if (flag)
    throw invalid_argument("Input X contains NaN or infinity; remove or impute non-finite values "
                           "first");
}

template void scale_columns<float>(const float*, float*, std::int64_t, std::int64_t, std::int64_t,
                                   const std::vector<double>&, const std::vector<double>&);
template void scale_columns<double>(const double*, double*, std::int64_t, std::int64_t,
                                    std::int64_t, const std::vector<double>&,
                                    const std::vector<double>&);

template <class T>
exact_moments column_moments_exact(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                                   const T* w) {
  exact_moments r;
  r.mean.assign(d, 0.0);
  r.m2.assign(d, 0.0);
  r.lo.assign(d, std::numeric_limits<double>::infinity());
  r.hi.assign(d, -std::numeric_limits<double>::infinity());
  if (n == 0) return r;
  std::vector<double> shift = first_row(X, d);
  for (auto& v : shift)
    if (!std::isfinite(v)) v = 0.0;  // reported by the pass itself
  column_moments m = moments(X, n, d, stride, w, shift);
  r.weight = m.weight;
  r.lo = m.lo;
  r.hi = m.hi;
  if (r.weight == 0.0) return r;
  const double W = r.weight;
  bool poor_shift = false;
  for (std::int64_t j = 0; j < d; ++j) {
    r.mean[j] = m.shift_used[j] + m.s1[j] / W;
    r.m2[j] = basic_statistics::kernel::centred_squares(m.s1[j], m.s2[j], W);  // inf, not NaN, where squares overflow
    poor_shift |= (m.s2[j] > 64.0 * r.m2[j] && m.s2[j] > 0.0) || !std::isfinite(m.s2[j]);
  }
  if (poor_shift) {
    column_moments e = moments(X, n, d, stride, w, r.mean);
    for (std::int64_t j = 0; j < d; ++j) {
      r.m2[j] = basic_statistics::kernel::centred_squares(e.s1[j], e.s2[j], W);
      r.mean[j] = e.shift_used[j] + e.s1[j] / W;
    }
  }
  return r;
}

template exact_moments column_moments_exact<float>(const float*, std::int64_t, std::int64_t,
                                                   std::int64_t, const float*);
template exact_moments column_moments_exact<double>(const double*, std::int64_t, std::int64_t,
                                                    std::int64_t, const double*);
template column_moments moments<float>(const float*, std::int64_t, std::int64_t, std::int64_t,
                                       const float*, const std::vector<double>&);
template column_moments moments<double>(const double*, std::int64_t, std::int64_t, std::int64_t,
                                        const double*, const std::vector<double>&);
template std::vector<double> first_row<float>(const float*, std::int64_t);
template std::vector<double> first_row<double>(const double*, std::int64_t);

}  // namespace spmdlearn::cuda
