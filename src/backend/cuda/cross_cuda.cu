// CUDA cross-products: the fused covariance pass for small d, the batched-gemm Gram pass for
// larger d and the linear models, and the Mahalanobis distances. See cross_cuda.hpp for the math.
//
// Why a hand-written kernel for small d: X^T X of a tall, narrow matrix (e.g. 200M x 16) is
// memory-bound (16 flops per byte), but cuBLAS's syrk/gemm for k >> m = n = 16 reaches a fraction
// of the memory bandwidth (gemm ~30%, syrk ~0.1% on an H100: bench/results), and centring first
// costs another write and read of the data. The fused pass reads X once.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
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
// and writing no buffer. A block walks its own range of rows in slices of 32:
// - cp.async brings the raw [x | y] rows of slices s + 1 and s + 2 into shared memory (three
//   stages) while slice s is computed;
// - one pass forms every operand z = (raw − shift) · sqrt(w) in float and its 3xTF32 halves, and
//   stores them transposed (T[column][row], hi and lo apart). Column p is the constant 1 (so
//   z = sqrt(w): s and W come out of the same products), columns past p are 0. Without weights z
//   is the exactly rounded difference, as in the prepare kernel;
// - the output is cut into 16 x 16 units (i, j), j <= i (the lower triangle; 28 at q = 102),
//   dealt in order to the 8 warps. In the transposed layout one ldmatrix.x4 gives a 16-column
//   strip as an A fragment (m16 x k8) and, reordered, as the B fragments of two n8 tiles: a unit
//   costs at most 4 ldmatrix (A reused along a row, none for B on the diagonal) for 6 mma. The
//   first version read fragments with 12 scalar loads per 3 mma and was issue-bound (1.6 ms at
//   2M x 100 on an H200).
// Accumulation: the tensor cores' float accumulation truncates, so its error is a bias that
// grows with the length of an mma chain (1024 rows drifted ~2e-5 relative; the covariance test
// caught it). The mma registers are emptied after every slice (12 chained mma) into float
// registers added with round-to-nearest, and those into the block's own double partial
// part[block] (column-major q x q, entries r >= c) every 2048 rows (spill_slices);
// gram_finish_kernel adds the blocks' partials in block order: deterministic. On an H200
// (session 6, CudaGram.WeightedCrossMatchesFloat64) emptying every 4 slices instead left errors
// of up to 5.7e-6 of the cross-products' scale and 1.2e-6 in the weight, every slice 1e-6 and
// 1.5e-7, for 3% more kernel time (1.20 against 1.17 ms at 2M x 100).
// The shift is the first row (non-finite entries 0: the sums report them) rounded to float, read
// on the device (no host round trip); block 0 reports it in shift_out. A given shift (the second
// pass, at the mean) comes in `shift`.
namespace gram_tc {
constexpr int TPB = 256, WARPS = TPB / 32, BK = 32, Q = 128, STAGES = 3;
constexpr int LDR = Q + 4;   // raw rows: 16-byte aligned; float4 reads down 8 rows hit distinct banks
constexpr int LDT = BK + 4;  // transposed rows: an ldmatrix's eight 16-byte rows hit distinct banks
constexpr int max_units = 5;  // ceil(36 / 8): 36 units at q = 128
constexpr int spill_slices = 64;  // 2048 rows in the float registers before the double partial
constexpr int dyn_smem = (STAGES * BK * LDR + 2 * Q * LDT) * 4;  // 86 KB: two blocks an SM

// Slice rows [r0, r0 + 32) ∩ [.., row_end) of [X | Y] into S[row][col] for col < p (zero rows past
// row_end: the forming pass reads them), then commit the group. vec: d, sx and X are multiples
// of 4 floats (16-byte copies for the X part).
__device__ __forceinline__ void issue(float (*S)[LDR], const float* __restrict__ X, std::int64_t sx,
                                      const float* __restrict__ Y, std::int64_t sy, std::int64_t r0,
                                      std::int64_t row_end, int d, int t, bool vec) {
  if (r0 >= row_end) {  // past the block's rows: an empty group keeps the wait counts uniform
    asm volatile("cp.async.commit_group;\n" ::);
    return;
  }
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

// sqrt(w) of `row` (0 past row_end; 1 without weights); a bad weight sets *bad and counts 0.
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

// Four 8 x 8 32-bit matrices from shared memory (lane l gives the row address l % 8 of matrix
// l / 8; register k holds word l % 4 of row l / 4 of matrix k).
__device__ __forceinline__ void ldsm4(unsigned* r, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// PER: units a warp (ceil(units / 8)), a template parameter so that the unit loop unrolls and
// its registers stay registers. Units past the last are skipped (warp-uniform).
template <int PER>
__global__ void __launch_bounds__(TPB, 2)
    kernel(const float* __restrict__ X, std::int64_t sx, const float* __restrict__ Y, std::int64_t sy,
           const float* __restrict__ w, std::int64_t n, int d, int t, const float* __restrict__ shift,
           std::int64_t rows_per_block, bool vec, double* __restrict__ part, int* __restrict__ bad,
           double* __restrict__ shift_out) {
  // Dynamic shared memory: R[STAGES][BK][LDR] raw slices, then Th[Q][LDT] and Tl[Q][LDT], the hi
  // and lo halves of the current slice's operands, transposed.
  extern __shared__ __align__(16) float dyn[];
  float(*R)[BK][LDR] = reinterpret_cast<float(*)[BK][LDR]>(dyn);
  unsigned(*Th)[LDT] = reinterpret_cast<unsigned(*)[LDT]>(dyn + STAGES * BK * LDR);
  unsigned(*Tl)[LDT] = Th + Q;
  __shared__ float sw[STAGES][BK];
  __shared__ float sh[Q];
  const int p = d + t, q = p + 1;
  const std::int64_t qq = static_cast<std::int64_t>(q) * q;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int mt = (q + 15) / 16, reach = 16 * mt;  // strips; columns any fragment reads
  // This warp's units: the lower-triangle units in order (i, then j), [warp PER, warp PER + PER).
  int ui[PER], uj[PER];
  {
    int i = 0, x = warp * PER;
    while (i < mt && x > i) x -= ++i;  // row i holds i + 1 units
    for (int u = 0; u < PER; ++u) {
      ui[u] = i;
      uj[u] = x;
      if (++x > i) ++i, x = 0;
    }
  }
  for (int c = threadIdx.x; c < Q; c += TPB) {
    float v = 0.0f;
    if (c < p) {
      v = shift ? shift[c] : c < d ? X[c] : Y[c - d];
      if (!isfinite(v)) v = 0.0f;
      if (shift_out && blockIdx.x == 0) shift_out[c] = static_cast<double>(v);
    }
    sh[c] = v;
  }
  const std::int64_t row_begin = static_cast<std::int64_t>(blockIdx.x) * rows_per_block;
  const std::int64_t row_end = row_begin + rows_per_block < n ? row_begin + rows_per_block : n;
  double* out = part + static_cast<std::int64_t>(blockIdx.x) * qq;
  // ldmatrix row address of this lane inside a strip (bytes): row (l % 8) + 8 ((l / 8) % 2), word
  // 4 (l / 16): registers 0..3 are then a0..a3 of the strip's A fragment.
  const unsigned lane_off = ((((lane & 7) + ((lane >> 3) & 1) * 8) * LDT) + (lane >> 4) * 4) * 4;
  const unsigned th0 = static_cast<unsigned>(__cvta_generic_to_shared(&Th[0][0])) + lane_off;
  const unsigned tl0 = static_cast<unsigned>(__cvta_generic_to_shared(&Tl[0][0])) + lane_off;
  constexpr unsigned strip_bytes = 16 * LDT * 4;
  float acc[PER][2][4], acc2[PER][2][4];
#pragma unroll
  for (int u = 0; u < PER; ++u)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[u][h][e] = acc2[u][h][e] = 0.0f;
  // Prologue: slices 0 and 1 in flight, their weights staged, slice 2's weights in a register.
  issue(R[0], X, sx, Y, sy, row_begin, row_end, d, t, vec);
  issue(R[1], X, sx, Y, sy, row_begin + BK, row_end, d, t, vec);
  if (threadIdx.x < BK) {
    sw[0][threadIdx.x] = root_weight(w, row_begin + threadIdx.x, row_end, bad);
    sw[1][threadIdx.x] = root_weight(w, row_begin + BK + threadIdx.x, row_end, bad);
  }
  float next_sw = threadIdx.x < BK ? root_weight(w, row_begin + 2 * BK + threadIdx.x, row_end, bad) : 0.0f;
  bool first_spill = true;
  int since_spill = 0, stage = 0;
  for (std::int64_t r0 = row_begin; r0 < row_end; r0 += BK, stage = stage == STAGES - 1 ? 0 : stage + 1) {
    // Slice s + 2 goes into the stage slice s - 1 used: every thread finished reading it before
    // the barrier after the last forming pass.
    const int ahead = stage == 0 ? STAGES - 1 : stage - 1;
    issue(R[ahead], X, sx, Y, sy, r0 + 2 * BK, row_end, d, t, vec);  // an empty group past the end
    if (threadIdx.x < BK) {
      sw[ahead][threadIdx.x] = next_sw;
      next_sw = root_weight(w, r0 + 3 * BK + threadIdx.x, row_end, bad);
    }
    asm volatile("cp.async.wait_group 2;\n" ::);
    __syncthreads();  // slice s landed (every thread's copies); every warp finished slice s - 1
    for (int e = threadIdx.x; e < BK * reach / 4; e += TPB) {
      const int r = e & (BK - 1), c = (e / BK) * 4;
      const float4 v = *reinterpret_cast<const float4*>(&R[stage][r][c]);
      const float s = sw[stage][r];
      const float raw[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int cc = c + k;
        const float z = cc < p ? (raw[k] - sh[cc]) * s : cc == p ? s : 0.0f;
        unsigned hi, lo;
        tf32x3::split(z, hi, lo);
        Th[cc][r] = hi;
        Tl[cc][r] = lo;
      }
    }
    __syncthreads();
#pragma unroll 1
    for (int kk = 0; kk < BK; kk += 8) {
      unsigned ah[4], al[4], bh[4], bl[4];
      int row = -1;
#pragma unroll
      for (int u = 0; u < PER; ++u) {
        if (ui[u] >= mt) continue;  // past the last unit
        if (ui[u] != row) {
          row = ui[u];
          ldsm4(ah, th0 + row * strip_bytes + kk * 4);
          ldsm4(al, tl0 + row * strip_bytes + kk * 4);
        }
        if (uj[u] == row) {
#pragma unroll
          for (int e = 0; e < 4; ++e) bh[e] = ah[e], bl[e] = al[e];
        } else {
          ldsm4(bh, th0 + uj[u] * strip_bytes + kk * 4);
          ldsm4(bl, tl0 + uj[u] * strip_bytes + kk * 4);
        }
        // B of the n8 tile h: rows 8h.. of the strip, words kk.. and kk + 4..: registers h, h + 2.
        // The two tiles' products alternate (mma3's order, small terms first), so that no mma
        // waits on the one before it.
        const unsigned b0h[2] = {bh[0], bh[2]}, b0l[2] = {bl[0], bl[2]}, b1h[2] = {bh[1], bh[3]},
                       b1l[2] = {bl[1], bl[3]};
        tf32x3::mma(acc[u][0], al, b0h);
        tf32x3::mma(acc[u][1], al, b1h);
        tf32x3::mma(acc[u][0], ah, b0l);
        tf32x3::mma(acc[u][1], ah, b1l);
        tf32x3::mma(acc[u][0], ah, b0h);
        tf32x3::mma(acc[u][1], ah, b1h);
      }
    }
#pragma unroll
    for (int u = 0; u < PER; ++u)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc2[u][h][e] += acc[u][h][e], acc[u][h][e] = 0.0f;
    if (++since_spill == spill_slices || r0 + BK >= row_end) {
      since_spill = 0;
#pragma unroll
      for (int u = 0; u < PER; ++u) {
        if (ui[u] >= mt) continue;
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int r = 16 * ui[u] + g + (e >> 1) * 8, c = 16 * uj[u] + 8 * h + 2 * t4 + (e & 1);
            if (r < q && c < q && r >= c) {
              double* o = out + r + static_cast<std::int64_t>(c) * q;
              *o = (first_spill ? 0.0 : *o) + static_cast<double>(acc2[u][h][e]);
            }
            acc2[u][h][e] = 0.0f;
          }
      }
      first_spill = false;
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
}
}  // namespace gram_tc

struct shifted_weighted {
  double W = 0.0;
  std::vector<double> S, s, shift;
};

// shift: the shift to subtract, or nullptr for the first row (taken on the device by the 3xTF32
// kernel, on the host otherwise; non-finite entries become 0 -- the sums then report them).
template <class T>
shifted_weighted weighted_pass(const T* X, std::int64_t n, std::int64_t d, std::int64_t sx, const T* Y,
                               std::int64_t t, std::int64_t sy, const T* w,
                               const std::vector<double>* shift, const device_scope& scope) {
  const std::int64_t p = d + t, q = p + 1, qq = q * q;
  const cudaStream_t st = scope.stream();
  bool fast = false;  // the 3xTF32 kernel (float, q <= 128, sm_80+) instead of prepare + batched gemm
  if constexpr (std::is_same_v<T, float>) fast = q <= gram_tc::Q && tf32x3_enabled();
  // Everything the host reads back, in one buffer (one copy): S (p x p), s (p), W, the shift used
  // (p), and the bad-weight flag (an int in the last slot).
  const std::int64_t o_s = p * p, o_W = o_s + p, o_shift = o_W + 1, o_bad = o_shift + p, o_end = o_bad + 1;
  dev_array<double> res(static_cast<std::size_t>(o_end), st);
  check(cudaMemsetAsync(res.p, 0, o_end * sizeof(double), st), "cudaMemsetAsync");
  int* bad = reinterpret_cast<int*>(res.p + o_bad);
  std::vector<double> used_shift;
  if (shift) {
    used_shift = *shift;
  } else if (!fast) {
    used_shift = first_row(X, d);
    if (t > 0) {
      const std::vector<double> y0 = first_row(Y, t);
      used_shift.insert(used_shift.end(), y0.begin(), y0.end());
    }
    for (auto& v : used_shift)
      if (!std::isfinite(v)) v = 0.0;
  }
  const unsigned reduce_blocks = static_cast<unsigned>((qq + threads - 1) / threads);
  if constexpr (std::is_same_v<T, float>) {
    if (fast) {
      // Two blocks an SM, each over a range of whole 32-row slices; every block has rows.
      const std::int64_t target = 2LL * multiprocessors();
      const std::int64_t rpb = std::max<std::int64_t>(gram_tc::BK, ((n + target - 1) / target + gram_tc::BK - 1) /
                                                                        gram_tc::BK * gram_tc::BK);
      const std::int64_t blocks = (n + rpb - 1) / rpb;
      dev_array<double> bpart(static_cast<std::size_t>(blocks * qq), st);
      // A given shift is subtracted in float: rounded to float here, and reported so.
      dev_array<float> fshift(shift ? static_cast<std::size_t>(p) : 0, st);
      if (shift) {
        for (auto& v : used_shift) v = static_cast<double>(static_cast<float>(v));
        const std::vector<float> hs(used_shift.begin(), used_shift.end());
        check(cudaMemcpyAsync(fshift.p, hs.data(), p * sizeof(float), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
      }
      const bool vec = d % 4 == 0 && sx % 4 == 0 && reinterpret_cast<std::uintptr_t>(X) % 16 == 0;
      const int mt = static_cast<int>((q + 15) / 16), units = mt * (mt + 1) / 2;  // dealt 8 ways
      using kernel_t = decltype(&gram_tc::kernel<1>);
      static constexpr kernel_t kernels[] = {gram_tc::kernel<1>, gram_tc::kernel<2>, gram_tc::kernel<3>,
                                             gram_tc::kernel<4>, gram_tc::kernel<5>};
      static_assert(std::size(kernels) == gram_tc::max_units);
      const kernel_t kern = kernels[(units + gram_tc::WARPS - 1) / gram_tc::WARPS - 1];
      // Per call: the attribute belongs to the current device (a process may drive several).
      check(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, gram_tc::dyn_smem),
            "cudaFuncSetAttribute");
      kern<<<static_cast<unsigned>(blocks), gram_tc::TPB, gram_tc::dyn_smem, st>>>(
          X, sx, Y, sy, w, n, static_cast<int>(d), static_cast<int>(t), shift ? fshift.p : nullptr, rpb, vec,
          bpart.p, bad, shift ? nullptr : res.p + o_shift);
      check(cudaGetLastError(), "Gram kernel (3xTF32) launch");
      gram_finish_kernel<<<reduce_blocks, threads, 0, st>>>(bpart.p, static_cast<int>(blocks), static_cast<int>(q),
                                                            res.p, res.p + o_s, res.p + o_W);
      check(cudaGetLastError(), "gram finish kernel launch");
    }
  }
  if (!fast) {
    // Chunks of whole batches, ~256 MiB of buffer and batch Grams together (at least one batch).
    // (Session 4's 19 ms walls with 512 MiB were most likely the OpenBLAS-thread stall found in
    // session 5, not the chunk size; at 256 MiB this path fits 2M x 100 float in 3.19 ms on an H200.)
    const std::int64_t batch_bytes = (gram_batch * q + qq) * static_cast<std::int64_t>(sizeof(T));
    const std::int64_t per_chunk = std::max<std::int64_t>(1, (256LL << 20) / batch_bytes);
    const std::int64_t batches_total = (n + gram_batch - 1) / gram_batch;
    const std::int64_t chunk_batches = std::min(per_chunk, batches_total);
    const std::int64_t chunk_rows = chunk_batches * gram_batch;
    dev_array<T> buf(static_cast<std::size_t>(chunk_rows * q), st), G(static_cast<std::size_t>(chunk_batches * qq), st);
    dev_array<double> dshift(p, st), part(static_cast<std::size_t>(reduce_slices * qq), st);
    check(cudaMemcpyAsync(dshift.p, used_shift.data(), p * sizeof(double), cudaMemcpyHostToDevice, st),
          "cudaMemcpyAsync");
    // Up to 64 blocks an SM: a block rarely walks more than a few strips when q is wide (the block
    // scheduler balances the SMs), and narrow rows still get warps that stream many strips.
    const std::int64_t max_blocks = 64LL * multiprocessors();
    // Offsets inside a 32-row strip fit an int (see gram_prepare_kernel).
    const std::int64_t int_max = std::numeric_limits<int>::max();
    const bool narrow = 32 * (sx + q) <= int_max && 32 * (sy + q) <= int_max;
    for (std::int64_t i0 = 0; i0 < n; i0 += chunk_rows) {
      const std::int64_t nb = std::min(chunk_rows, n - i0);
      const std::int64_t batches = (nb + gram_batch - 1) / gram_batch;
      const std::int64_t strips = batches * (gram_batch / 32);
      const std::int64_t blocks = std::min(max_blocks, (strips + prep_threads / 32 - 1) / (prep_threads / 32));
      auto* prepare = narrow ? gram_prepare_kernel<T, int> : gram_prepare_kernel<T, std::int64_t>;
      prepare<<<static_cast<unsigned>(blocks), prep_threads, 0, st>>>(
          X + i0 * sx, sx, Y ? Y + i0 * sy : nullptr, sy, w ? w + i0 : nullptr, nb, strips, static_cast<int>(d),
          static_cast<int>(t), dshift.p, buf.p, bad);
      check(cudaGetLastError(), "gram prepare kernel launch");
      check_blas(gemm_batched(scope.ctx->blas, static_cast<int>(q), gram_batch, buf.p, G.p, static_cast<int>(batches)),
                 "cublas gemmStridedBatched");
      gram_reduce_kernel<T><<<dim3(reduce_blocks, reduce_slices), threads, 0, st>>>(G.p, static_cast<int>(batches),
                                                                                   static_cast<int>(q), part.p);
      check(cudaGetLastError(), "gram reduce kernel launch");
      gram_finish_kernel<<<reduce_blocks, threads, 0, st>>>(part.p, reduce_slices, static_cast<int>(q), res.p,
                                                            res.p + o_s, res.p + o_W);
      check(cudaGetLastError(), "gram finish kernel launch");
    }
  }
  std::vector<double> host(static_cast<std::size_t>(o_end));
  check(cudaMemcpyAsync(host.data(), res.p, o_end * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  int flag = 0;
  std::memcpy(&flag, host.data() + o_bad, sizeof(int));
  if (flag) throw invalid_argument("sample_weight contains a negative value, NaN or infinity; weights must be finite and >= 0");
  shifted_weighted r;
  r.S.assign(host.begin(), host.begin() + o_s);
  r.s.assign(host.begin() + o_s, host.begin() + o_W);
  r.W = host[o_W];
  if (fast && !shift) used_shift.assign(host.begin() + o_shift, host.begin() + o_bad);
  r.shift = std::move(used_shift);
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
  shifted_weighted f = weighted_pass(X, n, d, sx, Y, t, sy, w, nullptr, scope);  // shift: the first row
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
    f = weighted_pass(X, n, d, sx, Y, t, sy, w, &mean, scope);
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
