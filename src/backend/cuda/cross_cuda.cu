// CUDA cross-products: the fused covariance pass for small d, the batched-gemm Gram pass for
// larger d and the linear models, and the Mahalanobis distances. See cross_cuda.hpp for the math.
//
// Why a hand-written kernel for small d: X^T X of a tall, narrow matrix (e.g. 200M x 16) is
// memory-bound (16 flops per byte), but cuBLAS's syrk/gemm for k >> m = n = 16 reaches a fraction
// of the memory bandwidth (gemm ~30%, syrk ~0.1% on an H100: bench/results), and centring first
// costs another write and read of the data. The fused pass reads X once.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "backend/cuda/cross_cuda.hpp"
#include "backend/cuda/centre_rows.cuh"
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/work_type.cuh"
#include "backend/cuda/moments_cuda.hpp"
#include "backend/cuda/tf32x3.cuh"

namespace spmdlearn::cuda {

// ---- device_doubles -------------------------------------------------------------------------
device_doubles::device_doubles(std::size_t n) : n_(n) {
  check(cudaGetDevice(&dev_), "cudaGetDevice");
  if (n == 0) return;
  check(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(double)), "cudaMalloc", n * sizeof(double));
  const cudaError_t e = cudaMemset(p_, 0, n * sizeof(double));
  if (e != cudaSuccess) {
    cudaFree(p_);
    p_ = nullptr;
    fail(e, "cudaMemset");
  }
}
device_doubles::~device_doubles() {
  if (p_) cudaFree(p_);
}
device_doubles::device_doubles(device_doubles&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), dev_(o.dev_) {}
device_doubles& device_doubles::operator=(device_doubles&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = std::exchange(o.p_, nullptr);
    n_ = std::exchange(o.n_, 0);
    dev_ = o.dev_;
  }
  return *this;
}
std::vector<double> device_doubles::to_host() const {
  std::vector<double> h(n_);
  if (n_) check(cudaMemcpy(h.data(), p_, n_ * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return h;
}
void device_doubles::from_host(const std::vector<double>& v) {
  if (v.size() != n_) throw runtime_error("device_doubles::from_host: size mismatch");
  if (n_) check(cudaMemcpy(p_, v.data(), n_ * sizeof(double), cudaMemcpyHostToDevice), "cudaMemcpy");
}

namespace {

constexpr int threads = 256;


__device__ __forceinline__ void load4(const float* p, float (&a)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  a[0] = v.x;
  a[1] = v.y;
  a[2] = v.z;
  a[3] = v.w;
}
__device__ __forceinline__ void load4(const double* p, double (&a)[4]) {
  const double2 v0 = *reinterpret_cast<const double2*>(p);
  const double2 v1 = *reinterpret_cast<const double2*>(p + 2);
  a[0] = v0.x;
  a[1] = v0.y;
  a[2] = v1.x;
  a[3] = v1.y;
}

// Widths up to this take the fused pass.
constexpr std::int64_t max_fused_d = 64;

// Tile geometry for a padded width D (16, 32 or 64): 4 x 4 register blocks, SB per dimension, NSB in
// all (the whole D x D output: the lower blocks cost FMAs only, which are not the limit for D <= 32);
// G groups of threads share the tile's rows; a tile holds R = 4096 / D rows, so every thread
// loads PER = 16 elements of it, always of the same column (256 is a multiple of D).
template <int D>
struct geometry {
  static constexpr int SB = D / 4, NSB = SB * SB, G = threads / NSB, R = 4096 / D,
                       PER = R * D / threads;
  static_assert(threads % NSB == 0 && threads % D == 0, "geometry");
};

template <class T, int D>
__global__ void __launch_bounds__(threads, 2)
    cross_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                 const double* __restrict__ shift, std::int64_t tiles, double* __restrict__ part) {
  using W = typename work_type<T>::type;
  using g_t = geometry<D>;
  constexpr int G = g_t::G, R = g_t::R, PER = g_t::PER, SB = g_t::SB, NSB = g_t::NSB;
  constexpr std::size_t tile_bytes = sizeof(W) * R * D, red_bytes = sizeof(double) * G * D * D;
  __shared__ __align__(16) unsigned char smem[tile_bytes > red_bytes ? tile_bytes : red_bytes];
  __shared__ double red1[G * D];
  W* tile = reinterpret_cast<W*>(smem);
  const int t = threadIdx.x;
  const int sb = t % NSB, g = t / NSB, bi = sb / SB, bj = sb % SB;
  const int jl = t % D;  // the column this thread loads
  const bool col_ok = jl < d;
  const W s = col_ok ? static_cast<W>(shift[jl]) : W(0);

  W v[PER];
  auto load = [&](std::int64_t tile_i) {
    const std::int64_t row0 = tile_i * R;
#pragma unroll
    for (int k = 0; k < PER; ++k) {
      const std::int64_t i = row0 + (t + k * threads) / D;
      v[k] = (col_ok && i < n) ? static_cast<W>(X[i * stride + jl]) - s : W(0);
    }
  };

  double acc[4][4], acc1[4];
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    acc1[p] = 0.0;
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[p][q] = 0.0;
  }
  if (static_cast<std::int64_t>(blockIdx.x) < tiles) load(blockIdx.x);
  for (std::int64_t ti = blockIdx.x; ti < tiles; ti += gridDim.x) {
    __syncthreads();  // the previous tile is consumed
#pragma unroll
    for (int k = 0; k < PER; ++k) tile[t + k * threads] = v[k];
    __syncthreads();
    // The next tile's loads are in flight while this one is multiplied.
    if (ti + gridDim.x < tiles) load(ti + gridDim.x);
    W a_acc[4][4], s_acc[4];
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      s_acc[p] = W(0);
#pragma unroll
      for (int q = 0; q < 4; ++q) a_acc[p][q] = W(0);
    }
#pragma unroll 4
    for (int r = g; r < R; r += G) {
      W a[4], b[4];
      load4(tile + r * D + 4 * bi, a);
      load4(tile + r * D + 4 * bj, b);
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        s_acc[p] += a[p];
#pragma unroll
        for (int q = 0; q < 4; ++q) a_acc[p][q] = fma(a[p], b[q], a_acc[p][q]);
      }
    }
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      acc1[p] += static_cast<double>(s_acc[p]);
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[p][q] += static_cast<double>(a_acc[p][q]);
    }
  }
  __syncthreads();
  // Combine the G row groups in a fixed order.
  double* red = reinterpret_cast<double*>(smem);
#pragma unroll
  for (int p = 0; p < 4; ++p)
#pragma unroll
    for (int q = 0; q < 4; ++q) red[(g * D + 4 * bi + p) * D + 4 * bj + q] = acc[p][q];
  if (bj == 0)
#pragma unroll
    for (int p = 0; p < 4; ++p) red1[g * D + 4 * bi + p] = acc1[p];
  __syncthreads();
  double* out = part + static_cast<std::int64_t>(blockIdx.x) * (D * D + D);
  for (int e = t; e < D * D; e += threads) {
    double sum = 0.0;
    for (int q = 0; q < G; ++q) sum += red[q * D * D + e];
    out[e] = sum;
  }
  for (int e = t; e < D; e += threads) {
    double sum = 0.0;
    for (int q = 0; q < G; ++q) sum += red1[q * D + e];
    out[D * D + e] = sum;
  }
}

// out[e] = Σ_b part[b][e] in block order (bitwise reproducible).
__global__ void sum_parts(const double* __restrict__ part, int blocks, int width, double* __restrict__ out) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= width) return;
  double s = 0.0;
  for (int b = 0; b < blocks; ++b) s += part[static_cast<std::int64_t>(b) * width + e];
  out[e] = s;
}

// Shifted sums of one fused pass: S (d x d) and s (d) about `shift` (as rounded to the work type).
struct shifted_sums {
  std::vector<double> S, s, shift_used;
};

template <class T, int D>
shifted_sums fused_pass(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                        const std::vector<double>& shift, cudaStream_t st) {
  using W = typename work_type<T>::type;
  shifted_sums r;
  r.shift_used.resize(d);
  for (std::int64_t j = 0; j < d; ++j) r.shift_used[j] = static_cast<double>(static_cast<W>(shift[j]));
  const std::int64_t tiles = (n + geometry<D>::R - 1) / geometry<D>::R;
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cross_kernel<T, D>, threads, 0),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const int blocks = static_cast<int>(
      std::min<std::int64_t>(tiles, static_cast<std::int64_t>(std::max(per_sm, 1)) * multiprocessors()));
  constexpr int width = D * D + D;
  dev_array<double> dshift(D, st), part(static_cast<std::size_t>(blocks) * width, st), out(width, st);
  std::vector<double> sh(D, 0.0);
  std::copy(r.shift_used.begin(), r.shift_used.end(), sh.begin());
  check(cudaMemcpyAsync(dshift.p, sh.data(), D * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  cross_kernel<T, D><<<blocks, threads, 0, st>>>(X, n, static_cast<int>(d), stride, dshift.p, tiles, part.p);
  check(cudaGetLastError(), "cross kernel launch");
  sum_parts<<<(width + threads - 1) / threads, threads, 0, st>>>(part.p, blocks, width, out.p);
  check(cudaGetLastError(), "sum_parts launch");
  std::vector<double> h(width);
  check(cudaMemcpyAsync(h.data(), out.p, width * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  r.S.resize(d * d);
  r.s.resize(d);
  for (std::int64_t i = 0; i < d; ++i) {
    r.s[i] = h[D * D + i];
    for (std::int64_t j = 0; j < d; ++j) r.S[i * d + j] = h[i * D + j];
  }
  return r;
}

template <class T>
shifted_sums fused(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                   const std::vector<double>& shift, cudaStream_t st) {
  if (d <= 16) return fused_pass<T, 16>(X, n, d, stride, shift, st);
  if (d <= 32) return fused_pass<T, 32>(X, n, d, stride, shift, st);
  return fused_pass<T, 64>(X, n, d, stride, shift, st);
}

}  // namespace

template <class T>
local_cross centered_cross(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride) {
  local_cross r;
  r.weight = static_cast<double>(n);
  r.mean.assign(d, 0.0);
  if (n == 0 || d == 0) {
    r.cross = device_doubles(static_cast<std::size_t>(d * d));
    return r;
  }
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  if (d <= max_fused_d) {
    std::vector<double> shift = first_row(X, d);
    for (auto& v : shift)
      if (!std::isfinite(v)) v = 0.0;  // reported by the pass itself
    shifted_sums f = fused(X, n, d, stride, shift, st);
    bool finite = true;
    for (double v : f.S) finite &= std::isfinite(v);
    if (!finite) throw_first_nonfinite(X, n, d, stride);
    const double N = static_cast<double>(n);
    bool poor_shift = false;
    for (std::int64_t j = 0; j < d; ++j) {
      const double centred = f.S[j * d + j] - f.s[j] * f.s[j] / N;
      poor_shift |= f.S[j * d + j] > 64.0 * std::max(centred, 0.0) && f.S[j * d + j] > 0.0;
    }
    if (poor_shift) {
      // The first row was far from the mean for some column: cancellation could cost digits.
      std::vector<double> mean(d);
      for (std::int64_t j = 0; j < d; ++j) mean[j] = f.shift_used[j] + f.s[j] / N;
      f = fused(X, n, d, stride, mean, st);
    }
    std::vector<double> C(d * d);
    for (std::int64_t j = 0; j < d; ++j) r.mean[j] = f.shift_used[j] + f.s[j] / N;
    for (std::int64_t i = 0; i < d; ++i)
      for (std::int64_t j = 0; j < d; ++j) {
        // Symmetrise: the lower blocks were summed in another order.
        const double sij = i <= j ? f.S[i * d + j] : f.S[j * d + i];
        const double si = i <= j ? f.s[i] : f.s[j], sj = i <= j ? f.s[j] : f.s[i];
        C[i * d + j] = sij - si * sj / N;
      }
    r.cross = device_doubles(static_cast<std::size_t>(d * d));
    r.cross.from_host(C);
    return r;
  }
  // Larger d: the shifted Gram pass of the linear models (batched cuBLAS gemm), no weights.
  weighted_moments m = weighted_cross<T>(X, n, d, stride, nullptr, 0, 0, nullptr);
  r.mean = std::move(m.mean);
  r.cross = device_doubles(static_cast<std::size_t>(d * d));
  r.cross.from_host(m.cross);
  return r;
}

namespace {

// The Gram pass for d > 64 and for the linear models. Rows are shifted (and scaled by sqrt(w))
// into a buffer of T, cut into batches of gram_batch rows; cublas<T>gemmStridedBatched forms one
// q x q product per batch (q = p + 1, see gram_prepare_kernel) and a reduction kernel adds the
// batches' products in double, in a fixed order. Why batches: one gemm with m = n = p and k = n
// rows leaves most of the GPU idle (cuBLAS tiles the small output, not k; a 256-column covariance
// ran at ~1 TFLOP/s), and for float data a float accumulation over at most gram_batch rows keeps
// the rounding near float's own (the double sum across batches adds none), the same split as the
// fused kernel's float tiles.
constexpr int gram_batch = 1024;
constexpr int prep_threads = 256;  // 8 warps a block
constexpr int prep_unroll = 6;     // loads a lane has in flight before its stores
static_assert(gram_batch % 32 == 0, "a batch is whole 32-row strips");

// Buffer rows [0, strips * 32) of a chunk, each q = p + 1 wide: buf[i][j] = sqrt(w_i) (z_ij - shift_j)
// for j < p, buf[i][p] = sqrt(w_i) (1 without weights); rows i >= nb (the last batch's padding)
// are 0. Each entry is computed in double (convert, subtract the shift, scale) and rounded once to
// T. bad = 1 (a plain store) for a negative or non-finite weight, which then counts as 0.
// Why the extra column: a batch's q x q Gram then holds S in its p x p block, s_j = Σ w (z_j -
// shift_j) in entry (p, j) and W = Σ w in entry (p, p), so the shifted sums come out of the same
// gemm; this kernel is purely element-wise (no per-block column partials, no shared memory, no
// serial weight loop) and runs at the memory bandwidth: one read of the rows, one write of the
// buffer.
// Layout: warp-per-strip of 32 rows, grid-stride over strips. A strip's 32 q buffer entries are
// contiguous; lane l writes entries e = l + 32 k (k < q), i.e. row e / q, column e % q, so each
// warp store is one contiguous run and the reads of a row are contiguous too (for any q, narrow
// or wide). Lane l computes sqrt(w) of the strip's row l once; an entry takes its row's factor by
// a shuffle. Off: the type of an offset inside a strip (int when 32 rows of X and of Y span less
// than 2^31 entries -- fewer registers and instructions, ~6% faster for float on an H200 --,
// else std::int64_t); rows and chunk offsets are always 64-bit.
template <class T, class Off>
__global__ void __launch_bounds__(prep_threads)
    gram_prepare_kernel(const T* __restrict__ X, std::int64_t sx, const T* __restrict__ Y, std::int64_t sy,
                        const T* __restrict__ w, std::int64_t nb, std::int64_t strips, int d, int t,
                        const double* __restrict__ shift, T* __restrict__ buf, int* __restrict__ bad) {
  constexpr int warps = prep_threads / 32;
  const int p = d + t, q = p + 1;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int dr = 32 / q, dj = 32 % q;  // (row, column) step of e -> e + 32
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * warps;
  for (std::int64_t strip = static_cast<std::int64_t>(blockIdx.x) * warps + threadIdx.x / 32; strip < strips;
       strip += step) {
    const std::int64_t i0 = strip * 32;
    double sw = 1.0;  // the factor of row i0 + lane
    if (w != nullptr && i0 + lane < nb) {
      double wi = static_cast<double>(w[i0 + lane]);
      if (!(wi >= 0.0) || !isfinite(wi)) {
        *bad = 1;
        wi = 0.0;
      }
      sw = sqrt(wi);
    }
    // Rows of the strip below nb (0 for a strip of padding).
    const int live = static_cast<int>(nb - i0 < 0 ? 0 : nb - i0 < 32 ? nb - i0 : 32);
    const T* __restrict__ Xs = X + i0 * sx;
    const T* __restrict__ Ys = Y != nullptr ? Y + i0 * sy : Y;  // read only when t > 0
    T* __restrict__ out = buf + i0 * q;
    const Off sxo = static_cast<Off>(sx), syo = static_cast<Off>(sy);
    int r = lane / q, j = lane % q;  // entry e = lane + 32 k of the strip: row r, column j
    for (int k0 = 0; k0 < q; k0 += prep_unroll) {
      // Issue the group's loads first (prep_unroll in flight), then convert and store.
      T raw[prep_unroll];
      const int rg = r, jg = j;
#pragma unroll
      for (int u = 0; u < prep_unroll; ++u) {
        raw[u] = T(0);
        if (k0 + u < q && r < live) {
          if (j < d)
            raw[u] = Xs[r * sxo + j];
          else if (j < p)
            raw[u] = Ys[r * syo + (j - d)];
        }
        j += dj;
        r += dr + (j >= q);
        j -= j >= q ? q : 0;
      }
      r = rg;
      j = jg;
#pragma unroll
      for (int u = 0; u < prep_unroll; ++u) {
        // Every lane shuffles (k0 + u < q is the same for the whole warp).
        const double f = w != nullptr ? __shfl_sync(0xffffffffu, sw, r & 31) : 1.0;
        if (k0 + u < q) {
          T v = T(0);
          if (r < live) v = j < p ? static_cast<T>(f * (static_cast<double>(raw[u]) - shift[j])) : static_cast<T>(f);
          out[(k0 + u) * 32 + lane] = v;
        }
        j += dj;
        r += dr + (j >= q);
        j -= j >= q ? q : 0;
      }
    }
  }
}

// Two stages, each sum in a fixed order (deterministic), over the entries (r, c) with r >= c of
// the column-major q x q batch Grams G[b][r + c q] (all that is used; G is symmetric): slice y of
// the grid adds its share of the batches into part[y][e] -- many slices keep enough loads in
// flight (one thread walking every batch was latency-bound: ~0.4 ms a chunk); then
// gram_finish_kernel adds the slices in order and scatters: (r, c) with r < p is S[c][r]
// (row-major upper triangle, c <= r), (p, c) with c < p is s[c], (p, p) is W.
constexpr int reduce_slices = 32;

template <class T>
__global__ void gram_reduce_kernel(const T* __restrict__ G, int batches, int q, double* __restrict__ part) {
  const std::int64_t qq = static_cast<std::int64_t>(q) * q;
  const std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (e >= qq || e % q < e / q) return;
  const int y = blockIdx.y, ny = gridDim.y;
  const int b0 = static_cast<int>(static_cast<std::int64_t>(batches) * y / ny);
  const int b1 = static_cast<int>(static_cast<std::int64_t>(batches) * (y + 1) / ny);
  double acc = 0.0;
#pragma unroll 4
  for (int b = b0; b < b1; ++b) acc += static_cast<double>(G[b * qq + e]);
  part[static_cast<std::int64_t>(y) * qq + e] = acc;
}

__global__ void gram_finish_kernel(const double* __restrict__ part, int slices, int q, double* __restrict__ S,
                                   double* __restrict__ s, double* __restrict__ W) {
  const std::int64_t qq = static_cast<std::int64_t>(q) * q;
  const std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (e >= qq) return;
  const std::int64_t r = e % q, c = e / q, p = q - 1;
  if (r < c) return;
  double acc = 0.0;
  for (int y = 0; y < slices; ++y) acc += part[static_cast<std::int64_t>(y) * qq + e];
  if (r < p)
    S[c * p + r] += acc;
  else if (c < p)
    s[c] += acc;
  else
    *W += acc;
}

cublasStatus_t gemm_batched(cublasHandle_t h, int q, int k, const float* A, float* C, int batches) {
  const float one = 1.0f, zero = 0.0f;
  // Column-major: a batch of A is q x k (lda = q; column i is buffer row i); C_b = A_b A_bᵀ.
  return cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, q, q, k, &one, A, q,
                                   static_cast<long long>(k) * q, A, q, static_cast<long long>(k) * q,
                                   &zero, C, q, static_cast<long long>(q) * q, batches);
}
cublasStatus_t gemm_batched(cublasHandle_t h, int q, int k, const double* A, double* C, int batches) {
  const double one = 1.0, zero = 0.0;
  return cublasDgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, q, q, k, &one, A, q,
                                   static_cast<long long>(k) * q, A, q, static_cast<long long>(k) * q,
                                   &zero, C, q, static_cast<long long>(q) * q, batches);
}

// ---- the float32 Gram pass on tensor cores (3xTF32, see tf32x3.cuh) ---------------------------
// For float data with q = p + 1 <= 128, one kernel replaces prepare + batched gemm, reading X once
// and writing no buffer. A block walks its own range of rows in slices of 32: cp.async brings the
// raw [x | y] rows of slice s + 1 into shared memory while the tensor cores work on slice s. Once
// a slice has landed, one pass forms every operand z = (raw − shift) · sqrt(w) in float (the
// shift is rounded to float first and reported so; without weights z is the exactly rounded
// difference, as the prepare kernel's) and its 3xTF32 halves, hi in place and lo beside it: a
// fragment load is then two shared-memory reads (forming and splitting at every fragment load
// repeated the work ~13x: ncu showed the kernel issue-bound). Column p is the constant 1 (so
// z = sqrt(w): s and W come out of the same products), columns past p are 0. Every 128 rows (flush_slices) a block adds its
// float registers into its own double partial part[block] (column-major q x q, entries r >= c);
// gram_finish_kernel adds the blocks' partials in block order: deterministic.
// Only the m16 x n8 output tiles that touch the lower triangle are computed (tile (i, j) covers
// rows 16i.., columns 8j..; j <= 2i + 1): 55 tiles at q = 102, dealt to the 8 warps in order
// (at most max_tiles = 9 each, 4 float registers a tile).
namespace gram_tc {
constexpr int TPB = 256, BK = 32, Q = 128, LD = Q + 8;  // LD % 32 == 8: conflict-free fragments
constexpr int max_tiles = 9;                            // ceil(72 / 8): 72 tiles at q = 128
// Rows between flushes of the float registers into the block's double partial: the tensor cores'
// float accumulation does not round to nearest, and a chain over 1024 rows (384 products) drifted
// by ~2e-5 relative (the covariance test caught it); 128 rows (48 products) stay near float's own
// rounding.
constexpr int flush_slices = 4;
constexpr int dyn_smem = 3 * BK * LD * 4;  // 52 KB: see the kernel

// Slice rows [r0, r0 + 32) ∩ [.., row_end) of [X | Y] into S[row][col] for col < p (zero rows past
// row_end). vec: d, sx and X are multiples of 4 floats (16-byte copies for the X part).
__device__ __forceinline__ void issue(float (*S)[LD], const float* __restrict__ X, std::int64_t sx,
                                      const float* __restrict__ Y, std::int64_t sy, std::int64_t r0,
                                      std::int64_t row_end, int d, int t, bool vec) {
  if (vec) {
    const int d4 = d / 4;
    for (int e = threadIdx.x; e < BK * d4; e += TPB) {
      const int r = e / d4, c = (e - r * d4) * 4;
      const bool valid = r0 + r < row_end;
      const float* src = valid ? X + (r0 + r) * sx + c : X;
      const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(&S[r][c]));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
    }
  } else {
    for (int e = threadIdx.x; e < BK * d; e += TPB) {
      const int r = e / d, c = e - r * d;
      const bool valid = r0 + r < row_end;
      const float* src = valid ? X + (r0 + r) * sx + c : X;
      const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(&S[r][c]));
      asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
    }
  }
  for (int e = threadIdx.x; e < BK * t; e += TPB) {
    const int r = e / t, c = e - r * t;
    const bool valid = r0 + r < row_end;
    const float* src = valid ? Y + (r0 + r) * sy + c : Y;
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(&S[r][d + c]));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

// sqrt(w) of row r0 + lane (0 past row_end; 1 without weights); a bad weight sets *bad and counts 0.
__device__ __forceinline__ float root_weight(const float* __restrict__ w, std::int64_t row, std::int64_t row_end,
                                             int* __restrict__ bad) {
  if (row >= row_end) return 0.0f;
  if (w == nullptr) return 1.0f;
  double wi = static_cast<double>(w[row]);
  if (!(wi >= 0.0) || !isfinite(wi)) {
    *bad = 1;
    wi = 0.0;
  }
  return static_cast<float>(sqrt(wi));
}

// PER: tiles a warp (ceil(total / 8), at most max_tiles), a template parameter so that the tile
// loop has no branches and the compiler interleaves the tiles' dependent mma chains; the last
// warp may compute tiles past `total` (on column 0) that it never writes.
template <int PER>
__global__ void __launch_bounds__(TPB, 2)
    kernel(const float* __restrict__ X, std::int64_t sx, const float* __restrict__ Y, std::int64_t sy,
           const float* __restrict__ w, std::int64_t n, int d, int t, const float* __restrict__ shift,
           std::int64_t rows_per_block, bool vec, double* __restrict__ part, int* __restrict__ bad) {
  // Dynamic shared memory (dyn_smem bytes): Zs[2][BK][LD] raw slices (the current one becomes the
  // hi halves), then Zl[BK][LD], the lo halves of the current slice.
  extern __shared__ __align__(16) float dyn[];
  float(*Zs)[BK][LD] = reinterpret_cast<float(*)[BK][LD]>(dyn);
  unsigned(*Zl)[LD] = reinterpret_cast<unsigned(*)[LD]>(dyn + 2 * BK * LD);
  __shared__ float sw[2][BK];
  __shared__ float sh[LD];
  __shared__ unsigned char tile_m[TPB / 32 * max_tiles], tile_c[TPB / 32 * max_tiles];
  const int p = d + t, q = p + 1;
  const std::int64_t qq = static_cast<std::int64_t>(q) * q;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  // The lower-triangle tiles in order (i, then j), and this warp's share [first, first + PER)
  // (entries past `total`: tile (0, 0), computed and never written).
  const int mtiles = (q + 15) / 16, ntiles = (q + 7) / 8;
  int total = 0;
  for (int i = 0; i < mtiles; ++i) total += min(2 * i + 2, ntiles);
  const int first = warp * PER;
  const int reach = max(16 * mtiles, 8 * ntiles);  // columns any fragment reads
  if (threadIdx.x == 0)
    for (int i = 0, j = 0, idx = 0; idx < TPB / 32 * PER; ++idx) {
      const bool real = idx < total;
      tile_m[idx] = static_cast<unsigned char>(real ? 16 * i : 0);
      tile_c[idx] = static_cast<unsigned char>(real ? 8 * j : 0);
      if (real && ++j == min(2 * i + 2, ntiles)) ++i, j = 0;
    }
  for (int c = threadIdx.x; c < LD; c += TPB) sh[c] = c < p ? shift[c] : 0.0f;
  const std::int64_t row_begin = static_cast<std::int64_t>(blockIdx.x) * rows_per_block;
  const std::int64_t row_end = row_begin + rows_per_block < n ? row_begin + rows_per_block : n;
  double* out = part + static_cast<std::int64_t>(blockIdx.x) * qq;
  float acc[PER][4];
#pragma unroll
  for (int u = 0; u < PER; ++u)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[u][e] = 0.0f;
  bool first_flush = true;
  int since_flush = 0;
  issue(Zs[0], X, sx, Y, sy, row_begin, row_end, d, t, vec);
  float my_sw = threadIdx.x < BK ? root_weight(w, row_begin + threadIdx.x, row_end, bad) : 0.0f;
  int cur = 0;
  for (std::int64_t r0 = row_begin; r0 < row_end; r0 += BK, cur ^= 1) {
    if (threadIdx.x < BK) sw[cur][threadIdx.x] = my_sw;
    if (r0 + BK < row_end) {  // the next slice flies while this one computes
      issue(Zs[cur ^ 1], X, sx, Y, sy, r0 + BK, row_end, d, t, vec);
      if (threadIdx.x < BK) my_sw = root_weight(w, r0 + BK + threadIdx.x, row_end, bad);
      asm volatile("cp.async.wait_group 1;\n" ::);
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::);
    }
    __syncthreads();
    // The operands of the slice and their halves, in the columns the fragments reach (reach <= Q,
    // a multiple of 8).
    float(*Z)[LD] = Zs[cur];
    for (int e = threadIdx.x; e < BK * reach; e += TPB) {
      const int r = e / reach, c = e - r * reach;
      const float z = c < p ? (Z[r][c] - sh[c]) * sw[cur][r] : c == p ? sw[cur][r] : 0.0f;
      unsigned hi, lo;
      tf32x3::split(z, hi, lo);
      Z[r][c] = __uint_as_float(hi);
      Zl[r][c] = lo;
    }
    __syncthreads();
    const unsigned(*Zh)[LD] = reinterpret_cast<const unsigned(*)[LD]>(Z);
#pragma unroll 1
    for (int kk = 0; kk < BK; kk += 8) {
#pragma unroll
      for (int u = 0; u < PER; ++u) {
        {
          const int m = tile_m[first + u] + g, c = tile_c[first + u] + g;
          const unsigned ah[4] = {Zh[kk + t4][m], Zh[kk + t4][m + 8], Zh[kk + t4 + 4][m], Zh[kk + t4 + 4][m + 8]};
          const unsigned al[4] = {Zl[kk + t4][m], Zl[kk + t4][m + 8], Zl[kk + t4 + 4][m], Zl[kk + t4 + 4][m + 8]};
          const unsigned bh[2] = {Zh[kk + t4][c], Zh[kk + t4 + 4][c]};
          const unsigned bl[2] = {Zl[kk + t4][c], Zl[kk + t4 + 4][c]};
          tf32x3::mma3(acc[u], ah, al, bh, bl);
        }
      }
    }
    if (++since_flush == flush_slices || r0 + BK >= row_end) {
#pragma unroll
      for (int u = 0; u < PER; ++u) {
        if (first + u < total) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int r = tile_m[first + u] + g + (e >> 1) * 8, c = tile_c[first + u] + 2 * t4 + (e & 1);
            if (r < q && c < q && r >= c) {
              double* o = out + r + static_cast<std::int64_t>(c) * q;
              *o = (first_flush ? 0.0 : *o) + static_cast<double>(acc[u][e]);
            }
            acc[u][e] = 0.0f;
          }
        }
      }
      first_flush = false;
      since_flush = 0;
    }
    __syncthreads();  // before the next issue overwrites this stage
  }
}
}  // namespace gram_tc

struct shifted_weighted {
  double W = 0.0;
  std::vector<double> S, s, shift;
};

template <class T>
shifted_weighted weighted_pass(const T* X, std::int64_t n, std::int64_t d, std::int64_t sx, const T* Y,
                               std::int64_t t, std::int64_t sy, const T* w,
                               const std::vector<double>& shift, const device_scope& scope) {
  const std::int64_t p = d + t, q = p + 1, qq = q * q;
  const cudaStream_t st = scope.stream();
  // Chunks of whole batches, ~256 MiB of buffer and batch Grams together (at least one batch).
  // (Session 4's 19 ms walls with 512 MiB were most likely the OpenBLAS-thread stall found in
  // session 5, not the chunk size; at 256 MiB this path fits 2M x 100 float in 3.19 ms on an H200.)
  const std::int64_t batch_bytes = (gram_batch * q + qq) * static_cast<std::int64_t>(sizeof(T));
  const std::int64_t per_chunk = std::max<std::int64_t>(1, (256LL << 20) / batch_bytes);
  const std::int64_t batches_total = (n + gram_batch - 1) / gram_batch;
  const std::int64_t chunk_batches = std::min(per_chunk, batches_total);
  const std::int64_t chunk_rows = chunk_batches * gram_batch;
  bool fast = false;  // the 3xTF32 kernel (float, q <= 128, sm_80+) instead of prepare + batched gemm
  if constexpr (std::is_same_v<T, float>) fast = q <= gram_tc::Q && tf32x3_enabled();
  // The fast kernel subtracts the shift in float: it uses (and reports) the shift rounded to float.
  std::vector<double> used_shift = shift;
  if (fast)
    for (auto& v : used_shift) v = static_cast<double>(static_cast<float>(v));
  dev_array<T> buf(fast ? 0 : static_cast<std::size_t>(chunk_rows * q), st),
      G(fast ? 0 : static_cast<std::size_t>(chunk_batches * qq), st);
  dev_array<double> dshift(p, st), S(p * p, st), s(p, st), W(1, st);
  dev_array<int> bad(1, st);
  dev_array<double> part(fast ? 0 : static_cast<std::size_t>(reduce_slices * qq), st);
  check(cudaMemcpyAsync(dshift.p, shift.data(), p * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemsetAsync(S.p, 0, p * p * sizeof(double), st), "cudaMemsetAsync");
  check(cudaMemsetAsync(s.p, 0, p * sizeof(double), st), "cudaMemsetAsync");
  check(cudaMemsetAsync(W.p, 0, sizeof(double), st), "cudaMemsetAsync");
  check(cudaMemsetAsync(bad.p, 0, sizeof(int), st), "cudaMemsetAsync");
  // Up to 64 blocks an SM: a block rarely walks more than a few strips when q is wide (the block
  // scheduler balances the SMs), and narrow rows still get warps that stream many strips.
  const std::int64_t max_blocks = 64LL * multiprocessors();
  // Offsets inside a 32-row strip fit an int (see gram_prepare_kernel).
  const std::int64_t int_max = std::numeric_limits<int>::max();
  const bool narrow = 32 * (sx + q) <= int_max && 32 * (sy + q) <= int_max;
  const unsigned reduce_blocks = static_cast<unsigned>((qq + threads - 1) / threads);
  if constexpr (std::is_same_v<T, float>) {
    if (fast) {
      // Two blocks an SM, each over a range of whole 32-row slices; every block has rows.
      const std::int64_t target = 2LL * multiprocessors();
      const std::int64_t rpb = std::max<std::int64_t>(gram_tc::BK, ((n + target - 1) / target + gram_tc::BK - 1) /
                                                                        gram_tc::BK * gram_tc::BK);
      const std::int64_t blocks = (n + rpb - 1) / rpb;
      dev_array<double> bpart(static_cast<std::size_t>(blocks * qq), st);
      dev_array<float> fshift(static_cast<std::size_t>(p), st);
      std::vector<float> hs(used_shift.begin(), used_shift.end());
      check(cudaMemcpyAsync(fshift.p, hs.data(), p * sizeof(float), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
      const bool vec = d % 4 == 0 && sx % 4 == 0 && reinterpret_cast<std::uintptr_t>(X) % 16 == 0;
      int total = 0;  // lower-triangle tiles (see gram_tc::kernel), dealt 8 ways
      for (std::int64_t i = 0; i < (q + 15) / 16; ++i) total += static_cast<int>(std::min<std::int64_t>(2 * i + 2, (q + 7) / 8));
      using kernel_t = decltype(&gram_tc::kernel<1>);
      static constexpr kernel_t kernels[] = {gram_tc::kernel<1>, gram_tc::kernel<2>, gram_tc::kernel<3>,
                                             gram_tc::kernel<4>, gram_tc::kernel<5>, gram_tc::kernel<6>,
                                             gram_tc::kernel<7>, gram_tc::kernel<8>, gram_tc::kernel<9>};
      const kernel_t kern = kernels[(total + 7) / 8 - 1];
      // Per call: the attribute belongs to the current device (a process may drive several).
      check(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, gram_tc::dyn_smem),
            "cudaFuncSetAttribute");
      kern<<<static_cast<unsigned>(blocks), gram_tc::TPB, gram_tc::dyn_smem, st>>>(
          X, sx, Y, sy, w, n, static_cast<int>(d), static_cast<int>(t), fshift.p, rpb, vec, bpart.p, bad.p);
      check(cudaGetLastError(), "Gram kernel (3xTF32) launch");
      gram_finish_kernel<<<reduce_blocks, threads, 0, st>>>(bpart.p, static_cast<int>(blocks), static_cast<int>(q), S.p,
                                                            s.p, W.p);
      check(cudaGetLastError(), "gram finish kernel launch");
    }
  }
  for (std::int64_t i0 = 0; !fast && i0 < n; i0 += chunk_rows) {
    const std::int64_t nb = std::min(chunk_rows, n - i0);
    const std::int64_t batches = (nb + gram_batch - 1) / gram_batch;
    const std::int64_t strips = batches * (gram_batch / 32);
    const std::int64_t blocks = std::min(max_blocks, (strips + prep_threads / 32 - 1) / (prep_threads / 32));
    auto* prepare = narrow ? gram_prepare_kernel<T, int> : gram_prepare_kernel<T, std::int64_t>;
    prepare<<<static_cast<unsigned>(blocks), prep_threads, 0, st>>>(
        X + i0 * sx, sx, Y ? Y + i0 * sy : nullptr, sy, w ? w + i0 : nullptr, nb, strips, static_cast<int>(d),
        static_cast<int>(t), dshift.p, buf.p, bad.p);
    check(cudaGetLastError(), "gram prepare kernel launch");
    check_blas(gemm_batched(scope.ctx->blas, static_cast<int>(q), gram_batch, buf.p, G.p, static_cast<int>(batches)),
               "cublas gemmStridedBatched");
    gram_reduce_kernel<T><<<dim3(reduce_blocks, reduce_slices), threads, 0, st>>>(G.p, static_cast<int>(batches),
                                                                                 static_cast<int>(q), part.p);
    check(cudaGetLastError(), "gram reduce kernel launch");
    gram_finish_kernel<<<reduce_blocks, threads, 0, st>>>(part.p, reduce_slices, static_cast<int>(q), S.p, s.p, W.p);
    check(cudaGetLastError(), "gram finish kernel launch");
  }
  shifted_weighted r;
  r.shift = used_shift;
  r.S.resize(p * p);
  r.s.resize(p);
  int flag = 0;
  check(cudaMemcpyAsync(r.S.data(), S.p, p * p * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(r.s.data(), s.p, p * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(&r.W, W.p, sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(&flag, bad.p, sizeof(int), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (flag) throw invalid_argument("sample_weight contains a negative value, NaN or infinity; weights must be finite and >= 0");
  // Only the row-major upper triangle (i <= j) was filled; mirror it so the result is exactly
  // symmetric.
  for (std::int64_t i = 0; i < p; ++i)
    for (std::int64_t j = i + 1; j < p; ++j) r.S[j * p + i] = r.S[i * p + j];
  return r;
}

}  // namespace

template <class T>
weighted_moments weighted_cross(const T* X, std::int64_t n, std::int64_t d, std::int64_t sx, const T* Y,
                                std::int64_t t, std::int64_t sy, const T* w) {
  const std::int64_t p = d + t;
  weighted_moments r;
  r.mean.assign(p, 0.0);
  r.cross.assign(p * p, 0.0);
  if (n == 0 || p == 0) return r;
  device_scope scope(X);
  if (t > 0) require_same_device(Y, scope.device, "y");
  if (w) require_same_device(w, scope.device, "sample_weight");
  std::vector<double> shift = first_row(X, d);
  if (t > 0) {
    const std::vector<double> y0 = first_row(Y, t);
    shift.insert(shift.end(), y0.begin(), y0.end());
  }
  for (auto& v : shift)
    if (!std::isfinite(v)) v = 0.0;  // reported by the pass itself
  shifted_weighted f = weighted_pass(X, n, d, sx, Y, t, sy, w, shift, scope);
  bool finite = std::isfinite(f.W);
  for (double v : f.S) finite &= std::isfinite(v);
  if (!finite) {
    throw_first_nonfinite(X, n, d, sx);
    if (t > 0) throw_first_nonfinite(Y, n, t, sy);
    throw invalid_argument("the weighted sums overflow (values too large)");
  }
  r.weight = f.W;
  if (!(f.W > 0.0)) return r;
  auto finish = [&](const shifted_weighted& g, bool& poor) {
    poor = false;
    for (std::int64_t j = 0; j < p; ++j) {
      r.mean[j] = g.shift[j] + g.s[j] / g.W;
      const double centred = g.S[j * p + j] - g.s[j] * g.s[j] / g.W;
      poor |= g.S[j * p + j] > 64.0 * std::max(centred, 0.0) && g.S[j * p + j] > 0.0;
    }
    for (std::int64_t i = 0; i < p; ++i)
      for (std::int64_t j = 0; j < p; ++j) r.cross[i * p + j] = g.S[i * p + j] - g.s[i] * g.s[j] / g.W;
  };
  bool poor = false;
  finish(f, poor);
  if (poor) {
    const std::vector<double> mean = r.mean;
    f = weighted_pass(X, n, d, sx, Y, t, sy, w, mean, scope);
    finish(f, poor);
  }
  return r;
}

template weighted_moments weighted_cross<float>(const float*, std::int64_t, std::int64_t, std::int64_t,
                                                const float*, std::int64_t, std::int64_t, const float*);
template weighted_moments weighted_cross<double>(const double*, std::int64_t, std::int64_t, std::int64_t,
                                                 const double*, std::int64_t, std::int64_t, const double*);

namespace {
__global__ void outer_kernel(double* C, int d, double f, const double* v) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e < d * d) C[e] += f * v[e / d] * v[e % d];
}
}  // namespace

void add_outer(device_doubles& C, std::int64_t d, double f, const std::vector<double>& v) {
  if (d == 0 || f == 0.0) return;
  int prev = -1;
  check(cudaGetDevice(&prev), "cudaGetDevice");
  if (prev != C.device()) check(cudaSetDevice(C.device()), "cudaSetDevice");
  context& ctx = context_for(C.device());
  {
    dev_array<double> dv(d, ctx.stream);
    check(cudaMemcpyAsync(dv.p, v.data(), d * sizeof(double), cudaMemcpyHostToDevice, ctx.stream), "cudaMemcpyAsync");
    const int total = static_cast<int>(d * d);
    outer_kernel<<<(total + threads - 1) / threads, threads, 0, ctx.stream>>>(C.data(), static_cast<int>(d), f, dv.p);
    check(cudaGetLastError(), "outer kernel launch");
    check(cudaStreamSynchronize(ctx.stream), "cudaStreamSynchronize");
  }
  if (prev != C.device()) cudaSetDevice(prev);
}

namespace {
// Rows of ~64 MiB of centred doubles per chunk.
std::int64_t chunk_rows(std::int64_t n, std::int64_t d) {
  return std::max<std::int64_t>(1, std::min<std::int64_t>(n, (64LL << 20) / (8 * std::max<std::int64_t>(d, 1))));
}

// out[i] = Σ_j buf[i, j] y[i, j] (rows of d doubles).
__global__ void row_dot(const double* __restrict__ a, const double* __restrict__ b, std::int64_t rows, int d,
                        double* __restrict__ out) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < rows;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int j = 0; j < d; ++j) s += a[i * d + j] * b[i * d + j];
    out[i] = s;
  }
}
}  // namespace

template <class T>
void mahalanobis(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                 const std::vector<double>& location, const std::vector<double>& precision, double* out) {
  if (n == 0 || d == 0) return;
  device_scope scope(X);
  require_same_device(out, scope.device, "the output");
  const cudaStream_t st = scope.stream();
  const std::int64_t B = chunk_rows(n, d);
  dev_array<double> buf(static_cast<std::size_t>(B) * d, st), y(static_cast<std::size_t>(B) * d, st),
      dloc(d, st), dp(d * d, st);
  check(cudaMemcpyAsync(dloc.p, location.data(), d * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dp.p, precision.data(), d * d * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  const double one = 1.0, zero = 0.0;
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t nb = std::min(B, n - i0);
    centre_rows_kernel<T, double, double><<<8 * multiprocessors(), threads, 0, st>>>(X + i0 * stride, nb, static_cast<int>(d),
                                                               stride, dloc.p, buf.p);
    check(cudaGetLastError(), "center kernel launch");
    // Column-major: buf is d x nb; y = P buf (P symmetric).
    const int di = static_cast<int>(d), ki = static_cast<int>(nb);
    check_blas(cublasDgemm(scope.ctx->blas, CUBLAS_OP_N, CUBLAS_OP_N, di, ki, di, &one, dp.p, di, buf.p,
                           di, &zero, y.p, di),
               "cublasDgemm");
    row_dot<<<8 * multiprocessors(), threads, 0, st>>>(buf.p, y.p, nb, di, out + i0);
    check(cudaGetLastError(), "row_dot launch");
  }
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
}

template local_cross centered_cross<float>(const float*, std::int64_t, std::int64_t, std::int64_t);
template local_cross centered_cross<double>(const double*, std::int64_t, std::int64_t, std::int64_t);
template void mahalanobis<float>(const float*, std::int64_t, std::int64_t, std::int64_t,
                                 const std::vector<double>&, const std::vector<double>&, double*);
template void mahalanobis<double>(const double*, std::int64_t, std::int64_t, std::int64_t,
                                  const std::vector<double>&, const std::vector<double>&, double*);

}  // namespace spmdlearn::cuda
