// CUDA k-means local work (fused distance + argmin, M-step sums, k-means++ passes). See kmeans_cuda.hpp;
// checked on 4x H200 in session 4 (bench/results/gpu_2026-11-27_h200x4_session4.md).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <string>

#include "backend/cuda/centre_rows.cuh"
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kmeans_cuda.hpp"
#include "backend/cuda/tf32x3.cuh"

namespace spmdlearn::cuda {
namespace {

constexpr int threads = 256;
constexpr int tile_rows = 16384;  // rows of one partial-sum tile
constexpr int slices = 32;        // ordered slices of the tile reduction

// ---- the fused distance + argmin kernel ------------------------------------------------------
// One block takes BM = 128 rows and walks the centres in tiles of BN = 128: a register-blocked
// SIMT gemm (256 threads, 8 x 8 products each, BK-deep slices of d double-buffered in shared
// memory) accumulates x·c in the precision of X, then the epilogue takes ‖c‖² − 2 x·c per
// product, the first minimum over the thread's 8 centres, over the 16 threads sharing the rows
// (shuffles), and over the centre tiles in order. So no distance ever leaves the chip: the
// cuBLAS gemm + argmin pair wrote and reread 4 k bytes a row (2 x 20 GB at 20M rows, k = 256).
// Ties keep the lowest centre index, as scikit-learn's loop; each product is one fma chain in
// the order of the columns, as a BLAS gemm's.
constexpr int BM = 128, BN = 128, TPB = 256;
template <class T>
struct fused_cfg {
  static constexpr int BK = 16;  // float: 2 x (16 x 132) x 2 tiles = 33 KiB of shared memory
  static constexpr int min_blocks = 2;
};
template <>
struct fused_cfg<double> {
  static constexpr int BK = 8;
  static constexpr int min_blocks = 1;  // 64 double accumulators: let the compiler have the registers
};

// Asynchronous copies global -> shared (cp.async, sm_80+): no registers held while in flight;
// src_size 0 writes zeros (the padding outside the matrix). dst: a shared-state-space address
// (loops add immediate offsets to it).
template <class T>
__device__ __forceinline__ void cp_async_shared(unsigned dst, const T* gmem, bool valid) {
  if constexpr (sizeof(T) == 4)
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 4 : 0));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 8 : 0));
}
template <class T>
__device__ __forceinline__ void cp_async(T* smem, const T* gmem, bool valid) {
  cp_async_shared(static_cast<unsigned>(__cvta_generic_to_shared(smem)), gmem, valid);
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Rows [r0, r0 + BM) x columns [k0, k0 + BK) of A (row stride lda; zero outside rows < nrows and
// columns < d), transposed into S[column][row]: element e = tid + q TPB is (e / BK, e % BK), so BK
// consecutive threads read BK consecutive values of one row.
template <class T, int BK, int W>
__device__ __forceinline__ void issue_slice(T (*S)[W], const T* __restrict__ A, std::int64_t lda, std::int64_t r0,
                                            std::int64_t nrows, int k0, int d) {
  constexpr int rows_per_pass = TPB / BK;
  const int c = threadIdx.x % BK;
  int r = threadIdx.x / BK;
  const T* p = A + (r0 + r) * lda + k0 + c;
  const std::int64_t step = rows_per_pass * lda;
  const bool col_ok = k0 + c < d;
#pragma unroll 1  // a rolled loop: one pointer, not eight, held in registers
  for (int q = 0; q < BM * BK / TPB; ++q, r += rows_per_pass, p += step) {
    const bool valid = col_ok && r0 + r < nrows;
    cp_async(&S[c][r], valid ? p : A, valid);
  }
}
__device__ __forceinline__ void load4(const float* p, float* o) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
}
__device__ __forceinline__ void load4(const double* p, double* o) {
  const double2 v = *reinterpret_cast<const double2*>(p);
  const double2 u = *reinterpret_cast<const double2*>(p + 2);
  o[0] = v.x, o[1] = v.y, o[2] = u.x, o[3] = u.y;
}

// labels[i] <- argmin_j ‖c_j‖² − 2 x_i·c_j for the block's rows; per block, in a fixed order, the
// count of changed labels and (xsq given) Σ w_i (xsq_i + min_j(...)) into changed_part /
// inertia_part[blockIdx.x]. C: k x d row-major in the precision of X; csq: ‖c_j‖² (same).
template <class T>
__global__ void __launch_bounds__(TPB, fused_cfg<T>::min_blocks)
    assign_fused_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t ldx, const T* __restrict__ C,
                        const T* __restrict__ csq, int k, const double* __restrict__ xsq,
                        const double* __restrict__ w, std::int32_t* __restrict__ labels,
                        double* __restrict__ inertia_part, int* __restrict__ changed_part) {
  constexpr int BK = fused_cfg<T>::BK, W = BM + 4;
  __shared__ __align__(16) T As[2][BK][W];
  __shared__ __align__(16) T Bs[2][BK][W];
  __shared__ T best[BM];  // the running minimum of each row, kept by the row's owner (tx == 0)
  __shared__ int arg[BM];
  __shared__ double red_i[TPB / 16];
  __shared__ int red_c[TPB / 16];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * BM;
  if (tx == 0)
#pragma unroll
    for (int i = 0; i < 8; ++i) arg[i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4)] = -1;
  const int slices_d = (d + BK - 1) / BK;
  for (int c0 = 0; c0 < k; c0 += BN) {
    T acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = T(0);
    issue_slice<T, BK, W>(As[0], X, ldx, r0, n, 0, d);
    issue_slice<T, BK, W>(Bs[0], C, d, c0, k, 0, d);
    cp_async_commit();
    for (int s = 0; s < slices_d; ++s) {
      const int cur = s & 1;
      if (s + 1 < slices_d) {  // the next slice flies while this one computes
        issue_slice<T, BK, W>(As[cur ^ 1], X, ldx, r0, n, (s + 1) * BK, d);
        issue_slice<T, BK, W>(Bs[cur ^ 1], C, d, c0, k, (s + 1) * BK, d);
        cp_async_commit();
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        T a[8], b[8];
        load4(&As[cur][kk][ty * 4], a);
        load4(&As[cur][kk][64 + ty * 4], a + 4);
        load4(&Bs[cur][kk][tx * 4], b);
        load4(&Bs[cur][kk][64 + tx * 4], b + 4);
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
      }
      __syncthreads();  // before the next issue overwrites this buffer
    }
    // Epilogue of this centre tile: the thread's 8 centres in increasing order, then the 16
    // threads of the same rows (lanes differing in the low 4 bits), then the earlier tiles.
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      T bv = T(0);
      int ba = -1;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int col = c0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
        if (col < k) {
          const T v = csq[col] - T(2) * acc[i][j];
          if (ba < 0 || v < bv) {
            bv = v;
            ba = col;
          }
        }
      }
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) {
        const T ov = __shfl_xor_sync(0xffffffffu, bv, off);
        const int oa = __shfl_xor_sync(0xffffffffu, ba, off);
        if (oa >= 0 && (ba < 0 || ov < bv || (ov == bv && oa < ba))) {
          bv = ov;
          ba = oa;
        }
      }
      const int lr = i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4);
      if (tx == 0 && ba >= 0 && (arg[lr] < 0 || bv < best[lr])) {  // earlier tiles hold lower indices
        best[lr] = bv;
        arg[lr] = ba;
      }
    }
  }
  double my_inertia = 0.0;
  int my_changed = 0;
  if (tx == 0) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int lr = i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4);
      const std::int64_t row = r0 + lr;
      if (row < n) {
        my_changed += labels[row] != arg[lr];
        labels[row] = arg[lr];
        if (xsq) my_inertia += (w ? w[row] : 1.0) * (xsq[row] + static_cast<double>(best[lr]));
      }
    }
    red_i[ty] = my_inertia;
    red_c[ty] = my_changed;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double si = 0.0;
    int sc = 0;
    for (int q = 0; q < TPB / 16; ++q) {
      si += red_i[q];
      sc += red_c[q];
    }
    inertia_part[blockIdx.x] = si;
    changed_part[blockIdx.x] = sc;
  }
}

// ---- the float32 path on tensor cores: 3xTF32 (see tf32x3.cuh) -------------------------------
// The same distances and first minimum as assign_fused_kernel, with x·c from float32-accurate
// TF32 tensor-core products (~1.6x the SIMT kernel at 20M x 64, k = 256 on an H200).
// Block: 128 rows x 128 centres a tile, 8 warps as 2 (rows) x 4 (centres), 64 x 32 per warp;
// K slices of 32 columns double-buffered with cp.async in [row][column] layout, padded to a row
// stride of 36 floats so that the fragment loads (8 rows x 4 columns a warp) hit 32 banks.
namespace tc {
constexpr int BM = 128, BN = 128, BK = 32, LD = BK + 4, TPB = 256;
constexpr int stage_floats = 2 * (BM + BN) * LD;  // two stages of the X and centre slices
// + each warp column's running minimum of the block's rows (value, index): 77.8 KB, dynamic.
constexpr int smem_bytes = (stage_floats + 2 * 4 * BM) * 4;

using tf32x3::split;
using tf32x3::mma3;
__device__ __forceinline__ void cp_async16(float* smem, const float* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
}

// Rows [r0, r0 + 128) x columns [k0, k0 + 32) of A (row stride lda) into S[row][col] (zero outside
// rows < nrows, columns < d). vec: d, lda and A are multiples of 4 floats (16-byte copies).
__device__ __forceinline__ void issue(float* S, const float* __restrict__ A, std::int64_t lda, std::int64_t r0,
                                      std::int64_t nrows, int k0, int d, bool vec) {
  if (vec) {
#pragma unroll
    for (int q = 0; q < BM * BK / 4 / TPB; ++q) {  // 4 float4 a thread
      const int e = threadIdx.x + q * TPB, r = e / (BK / 4), c = (e % (BK / 4)) * 4;
      const bool valid = r0 + r < nrows && k0 + c < d;
      cp_async16(S + r * LD + c, valid ? A + (r0 + r) * lda + k0 + c : A, valid);
    }
  } else {
#pragma unroll 4
    for (int q = 0; q < BM * BK / TPB; ++q) {  // 16 floats a thread
      const int e = threadIdx.x + q * TPB, r = e / BK, c = e % BK;
      const bool valid = r0 + r < nrows && k0 + c < d;
      cp_async(S + r * LD + c, valid ? A + (r0 + r) * lda + k0 + c : A, valid);
    }
  }
}

__device__ __forceinline__ void zero(float (&acc)[4][4][4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
}

__device__ __forceinline__ bool better(float v, int a, float bv, int ba) {
  return v < bv || (v == bv && a < ba);
}

__global__ void __launch_bounds__(TPB, 2)
    assign_kernel(const float* __restrict__ X, std::int64_t n, int d, std::int64_t ldx, const float* __restrict__ C,
                  const float* __restrict__ csq, int k, const double* __restrict__ xsq, const double* __restrict__ w,
                  std::int32_t* __restrict__ labels, double* __restrict__ inertia_part, int* __restrict__ changed_part,
                  bool vec, unsigned* __restrict__ bound) {
  extern __shared__ __align__(16) float sm[];
  float* As = sm;                // [2][BM][LD]
  float* Bs = sm + 2 * BM * LD;  // [2][BN][LD]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm*64.., centres wn*32..
  const int g = lane >> 2, t = lane & 3;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * BM;
  const int kchunks = (d + BK - 1) / BK, ctiles = (k + BN - 1) / BN, steps = kchunks * ctiles;
  // The running first minimum of each row over the centres seen by each warp column (kept in
  // shared memory, not registers: the accumulators need them), written by the lane t == 0 of
  // the row's quad. The thread's 8 rows are wm*64 + mt*16 + g + 8h (mt = 0..3, h = 0..1).
  float* rv = sm + stage_floats;                          // [4][BM]
  int* ra = reinterpret_cast<int*>(rv + 4 * BM);          // [4][BM]
  for (int e = threadIdx.x; e < 4 * BM; e += TPB) rv[e] = INFINITY, ra[e] = 0x7fffffff;
  float acc[4][4][4];
  zero(acc);
  issue(As, X, ldx, r0, n, 0, d, vec);
  issue(Bs, C, d, 0, k, 0, d, vec);
  cp_async_commit();
  for (int s = 0; s < steps; ++s) {
    const int cur = s & 1, kc = s % kchunks, c0 = (s / kchunks) * BN;
    if (s + 1 < steps) {
      const int nk = (s + 1) % kchunks, nc0 = ((s + 1) / kchunks) * BN;
      issue(As + (cur ^ 1) * BM * LD, X, ldx, r0, n, nk * BK, d, vec);
      issue(Bs + (cur ^ 1) * BN * LD, C, d, nc0, k, nk * BK, d, vec);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (bound != nullptr && s < kchunks) {
      // While the first centre tile walks the columns: the M-step's column bounds max |x| (see
      // absmax_kernel) from the slice already in shared memory, one atomic a column a block, and
      // only where it raises the bound.
      __shared__ float cm[TPB / 32][32];
      const float* A0 = As + cur * BM * LD;
      float m = 0.0f;
      for (int r = warp; r < BM; r += TPB / 32) m = fmaxf(m, fabsf(A0[r * LD + lane]));
      cm[warp][lane] = m;
      __syncthreads();
      if (warp == 0) {
        for (int q = 1; q < TPB / 32; ++q) m = fmaxf(m, cm[q][lane]);
        const int c = kc * BK + lane;
        if (c < d && __float_as_uint(m) > bound[c]) atomicMax(bound + c, __float_as_uint(m));
      }
    }
    const float* A = As + cur * BM * LD + (wm * 64) * LD;
    const float* B = Bs + cur * BN * LD + (wn * 32) * LD;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      unsigned bh[4][2], bl[4][2];
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const float* p = B + (nt * 8 + g) * LD + kk + t;
        split(p[0], bh[nt][0], bl[nt][0]);
        split(p[4], bh[nt][1], bl[nt][1]);
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        const float* p = A + (mt * 16 + g) * LD + kk + t;
        unsigned ah[4], al[4];
        split(p[0], ah[0], al[0]);
        split(p[8 * LD], ah[1], al[1]);
        split(p[4], ah[2], al[2]);
        split(p[8 * LD + 4], ah[3], al[3]);
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma3(acc[mt][nt], ah, al, bh[nt], bl[nt]);
      }
    }
    if (kc == kchunks - 1) {
      // Epilogue of the centre tile: the first minimum of each of the thread's 8 rows over its 8
      // centres, over the quad (t = 0..3), then into the warp column's running minimum. Ties
      // keep the lower index, so the order of the comparisons does not matter.
      float bv[8];
      int ba[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) bv[i] = INFINITY, ba[i] = 0x7fffffff;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = c0 + wn * 32 + nt * 8 + 2 * t + e;
          if (col < k) {
            const float cs = csq[col];
#pragma unroll
            for (int mt = 0; mt < 4; ++mt)
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                const float v = cs - 2.0f * acc[mt][nt][h * 2 + e];
                if (better(v, col, bv[mt * 2 + h], ba[mt * 2 + h])) bv[mt * 2 + h] = v, ba[mt * 2 + h] = col;
              }
          }
        }
#pragma unroll
      for (int i = 0; i < 8; ++i) {
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
          const float ov = __shfl_xor_sync(0xffffffffu, bv[i], off);
          const int oa = __shfl_xor_sync(0xffffffffu, ba[i], off);
          if (better(ov, oa, bv[i], ba[i])) bv[i] = ov, ba[i] = oa;
        }
        const int e = wn * BM + wm * 64 + (i >> 1) * 16 + g + (i & 1) * 8;
        if (t == 0 && better(bv[i], ba[i], rv[e], ra[e])) rv[e] = bv[i], ra[e] = ba[i];
      }
      zero(acc);
    }
    __syncthreads();  // before the next issue overwrites this stage (and before rv/ra are read)
  }
  // The 4 warp columns of each row, in shared memory.
  double my_inertia = 0.0;
  int my_changed = 0;
  if (threadIdx.x < BM) {
    const int lr = threadIdx.x;
    float v = rv[lr];
    int a = ra[lr];
    for (int q = 1; q < 4; ++q)
      if (better(rv[q * BM + lr], ra[q * BM + lr], v, a)) v = rv[q * BM + lr], a = ra[q * BM + lr];
    const std::int64_t row = r0 + lr;
    if (row < n) {
      my_changed = labels[row] != a;
      labels[row] = a;
      if (xsq) my_inertia = (w ? w[row] : 1.0) * (xsq[row] + static_cast<double>(v));
    }
  }
  if (bound != nullptr && w != nullptr) {  // the weight column's bound: max w over the block's rows
    __shared__ float wm_part[BM / 32];
    float wv = threadIdx.x < BM && r0 + threadIdx.x < n ? __double2float_ru(fabs(w[r0 + threadIdx.x])) : 0.0f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) wv = fmaxf(wv, __shfl_xor_sync(0xffffffffu, wv, off));
    if (lane == 0 && warp < BM / 32) wm_part[warp] = wv;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int q = 1; q < BM / 32; ++q) wv = fmaxf(wv, wm_part[q]);
      if (__float_as_uint(wv) > bound[d]) atomicMax(bound + d, __float_as_uint(wv));
    }
  }
  // Block sums in a fixed order: shuffles within the warp, then the 4 warps in order.
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    my_inertia += __shfl_down_sync(0xffffffffu, my_inertia, off);
    my_changed += __shfl_down_sync(0xffffffffu, my_changed, off);
  }
  __shared__ double wi[TPB / 32];
  __shared__ int wc[TPB / 32];
  if (lane == 0) wi[warp] = my_inertia, wc[warp] = my_changed;
  __syncthreads();
  if (threadIdx.x == 0) {
    double si = 0.0;
    int sc = 0;
    for (int q = 0; q < BM / 32; ++q) si += wi[q], sc += wc[q];
    inertia_part[blockIdx.x] = si;
    changed_part[blockIdx.x] = sc;
  }
}
}  // namespace tc

// Whether float32 assignments run on the 3xTF32 tensor-core kernel (tf32x3_enabled()); sets the
// kernel's shared-memory size on the current device (the attribute is per device: a process may
// drive several).
bool use_tensor_cores() {
  if (!tf32x3_enabled()) return false;
  check(cudaFuncSetAttribute(tc::assign_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, tc::smem_bytes),
        "cudaFuncSetAttribute");
  return true;
}

cublasStatus_t gemm_tn(cublasHandle_t h, int m, int n, int kk, const float* A, int lda, const float* B, int ldb,
                       float* C, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  return cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, kk, &one, A, lda, B, ldb, &zero, C, ldc);
}
cublasStatus_t gemm_tn(cublasHandle_t h, int m, int n, int kk, const double* A, int lda, const double* B, int ldb,
                       double* C, int ldc) {
  const double one = 1.0, zero = 0.0;
  return cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, kk, &one, A, lda, B, ldb, &zero, C, ldc);
}

// ---- the M-step sums -------------------------------------------------------------------------
// Tile blockIdx.x (tile_rows rows), columns [c0, c0 + cols) of [x | 1] (column d is the weight):
// thread t owns column c0 + t and adds w_i x_i into acc[label_i][t] row by row (no two threads
// share an address, so no atomics and a fixed order); the tile's k x cols partial goes to
// part[tile][label][c] (k x (d + 1) per tile) in double. The k x cols tile lives in dynamic
// shared memory (up to ~200 KiB: k = 256 x 65 float columns is one block).
template <class T>
__global__ void sums_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                            const double* __restrict__ w, const std::int32_t* __restrict__ labels, int k, int cols,
                            double* __restrict__ part) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* acc = reinterpret_cast<T*>(smem);
  const int t = threadIdx.x;
  const int c = blockIdx.y * cols + t;
  for (int e = t; e < k * cols; e += blockDim.x) acc[e] = T(0);
  __syncthreads();
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * tile_rows;
  const std::int64_t r1 = r0 + tile_rows < n ? r0 + tile_rows : n;
  if (t < cols && c <= d) {
    // Groups of 32 rows: the group's loads are all issued before its shared-memory adds, so a
    // thread waits for memory once a group, not once a row (the adds form a chain: two rows
    // may share a label). Rows past r1 add zero to label 0.
    constexpr int group = 32;
    for (std::int64_t i0 = r0; i0 < r1; i0 += group) {
      int lab[group];
      T v[group];
#pragma unroll
      for (int u = 0; u < group; ++u) {
        const std::int64_t i = i0 + u;
        const bool live = i < r1;
        lab[u] = live ? labels[i] : 0;
        const T wi = live ? (w ? static_cast<T>(w[i]) : T(1)) : T(0);
        v[u] = c < d ? (live ? wi * X[i * stride + c] : T(0)) : wi;
      }
#pragma unroll
      for (int u = 0; u < group; ++u) acc[lab[u] * cols + t] += v[u];
    }
  }
  __syncthreads();
  const std::int64_t width = d + 1;
  double* out = part + static_cast<std::int64_t>(blockIdx.x) * k * width;
  for (int e = t; e < k * cols; e += blockDim.x) {
    const int lab = e / cols, tc = e - lab * cols, col = blockIdx.y * cols + tc;
    if (col <= d) out[lab * width + col] = static_cast<double>(acc[e]);
  }
}

// ---- the M-step sums in fixed point (deterministic with atomics) ------------------------------
// Column c of [w x | w] is summed as integers: q = round(v · scale_c), scale_c a power of two with
// |q| <= 2^32 (scale_c = 2^(32 - e), e the exponent of a bound on the column's |w x|). Integer
// addition is associative, so shared-memory atomics give the same bits in any order, and every
// warp can take whole rows (lanes over columns) instead of one thread walking a column: the float
// tile of sums_kernel was latency-bound (11 ms at 20M x 64, k = 256 on an H200). Each q is kept
// as two 32-bit sums, hi = q >> 16 and lo = q & 0xffff (native 32-bit shared atomics; 64-bit
// ones took 5.8 ms there): over a tile of 2^14 rows |Σ hi| <= 2^30 and Σ lo < 2^30, and
// Σ q = 2^16 Σ hi + Σ lo exactly. A tile's sums go to part[tile] as doubles (exact: < 2^47);
// the tiles are then summed in order as before. Each value is rounded to 2^-31 of its column's
// largest |w x|, far finer than the float32 or float64 rounding of x itself at the centres' scale.
constexpr int fixed_threads = 1024;
static_assert(tile_rows == 1 << 14, "the fixed-point bounds assume 2^14 rows a tile");

// bound[c] >= max over rows of |x_c| (c < d) and of w (c = d; 1 without weights), as the bit
// patterns of non-negative floats rounded up (ordered like the values, so atomicMax is exact).
// The float32 tensor-core assignment kernel produces the same bounds as it goes (tc::assign_kernel). Warps walk
// rows with lanes over 32 columns (group blockIdx.y), keep a running max in a register, and a
// block adds one atomic a column: an atomic per element contended on d + 1 addresses (110 ms at
// 20M x 64).
template <class T>
__global__ void absmax_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                              const double* __restrict__ w, unsigned* __restrict__ bound) {
  __shared__ double red[threads / 32][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int c = blockIdx.y * 32 + lane;
  double m = 0.0;
  // 8 rows a step, their loads all issued before the maxima: a warp keeps 8 loads in flight.
  constexpr int R = 8;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * (threads / 32);
  if (c <= d)
    for (std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * (threads / 32) + warp; i0 < n; i0 += R * step) {
      double v[R];
#pragma unroll
      for (int u = 0; u < R; ++u) {
        const std::int64_t i = i0 + u * step;
        v[u] = i >= n ? 0.0 : (c < d ? fabs(static_cast<double>(X[i * stride + c])) : (w ? fabs(w[i]) : 1.0));
      }
#pragma unroll
      for (int u = 0; u < R; ++u) m = fmax(m, v[u]);
    }
  red[warp][lane] = m;
  __syncthreads();
  if (warp == 0 && c <= d) {
    for (int q = 1; q < threads / 32; ++q) m = fmax(m, red[q][lane]);
    atomicMax(bound + c, __float_as_uint(__double2float_ru(m)));
  }
}

template <class T>
__global__ void __launch_bounds__(fixed_threads, 1) sums_fixed_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                                  const double* __restrict__ w, const std::int32_t* __restrict__ labels, int k,
                                  const unsigned* __restrict__ bound, double* __restrict__ part) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int width = d + 1;
  const std::int64_t count = static_cast<std::int64_t>(k) * width;
  double* scale = reinterpret_cast<double*>(smem);  // [width]
  int* hi = reinterpret_cast<int*>(scale + width);  // [k][width]
  unsigned* lo = reinterpret_cast<unsigned*>(hi + count);
  const double wmax = static_cast<double>(__uint_as_float(bound[d]));
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    const double b = c < d ? static_cast<double>(__uint_as_float(bound[c])) * wmax : wmax;
    int e = 0;
    if (b > 0.0 && isfinite(b)) frexp(b, &e);  // b < 2^e
    scale[c] = ldexp(1.0, 32 - e);
  }
  for (std::int64_t e = threadIdx.x; e < count; e += blockDim.x) hi[e] = 0, lo[e] = 0u;
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * tile_rows;
  const std::int64_t r1 = r0 + tile_rows < n ? r0 + tile_rows : n;
  // A warp takes R rows a step (rows i0 + u warps), lanes over columns, and issues all the step's
  // loads (R rows x up to G groups of 32 columns) before its atomics: the warps wait on memory
  // once a step, not once a row or a column group.
  constexpr int R = 4, G = 4;
  const bool narrow = width <= 32 * G;
  for (std::int64_t i0 = r0 + warp; i0 < r1; i0 += static_cast<std::int64_t>(R) * warps) {
    double wi[R];
    std::int64_t base[R];
    T xv[R][G];
#pragma unroll
    for (int u = 0; u < R; ++u) {
      const std::int64_t i = i0 + static_cast<std::int64_t>(u) * warps;
      const bool live = i < r1;
      wi[u] = live ? (w ? w[i] : 1.0) : 0.0;
      base[u] = live ? static_cast<std::int64_t>(labels[i]) * width : 0;
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const int c = lane + 32 * g;
        xv[u][g] = narrow && live && c < d ? X[i * stride + c] : T(0);
      }
    }
    if (narrow) {
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const int c = lane + 32 * g;
        if (c < width) {
          const double sc = scale[c];
#pragma unroll
          for (int u = 0; u < R; ++u) {
            const double v = c < d ? wi[u] * static_cast<double>(xv[u][g]) : wi[u];
            const long long q = __double2ll_rn(v * sc);
            if (q != 0) {  // rows past r1 (and zeros) add nothing
              atomicAdd(hi + base[u] + c, static_cast<int>(q >> 16));
              atomicAdd(lo + base[u] + c, static_cast<unsigned>(q & 0xffff));
            }
          }
        }
      }
    } else {
      for (int c = lane; c < width; c += 32) {  // wide rows: a column group at a time
        const double sc = scale[c];
        double v[R];
#pragma unroll
        for (int u = 0; u < R; ++u) {
          const std::int64_t i = i0 + static_cast<std::int64_t>(u) * warps;
          v[u] = c < d ? (i < r1 ? wi[u] * static_cast<double>(X[i * stride + c]) : 0.0) : wi[u];
        }
#pragma unroll
        for (int u = 0; u < R; ++u) {
          const long long q = __double2ll_rn(v[u] * sc);
          if (q != 0) {
            atomicAdd(hi + base[u] + c, static_cast<int>(q >> 16));
            atomicAdd(lo + base[u] + c, static_cast<unsigned>(q & 0xffff));
          }
        }
      }
    }
  }
  __syncthreads();
  double* out = part + static_cast<std::int64_t>(blockIdx.x) * count;
  for (std::int64_t e = threadIdx.x; e < count; e += blockDim.x) {
    const int c = static_cast<int>(e % width);
    out[e] = (static_cast<double>(hi[e]) * 65536.0 + static_cast<double>(lo[e])) / scale[c];
  }
}

// Ordered two-stage sum over `parts` rows of `count` doubles: slice y adds its share of the rows
// into mid[y][e]; then the slices are added in order into out[e].
__global__ void sum_parts_slices(const double* __restrict__ parts, int nparts, std::int64_t count,
                                 double* __restrict__ mid) {
  const std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (e >= count) return;
  const int y = blockIdx.y, ny = gridDim.y;
  const int p0 = static_cast<int>(static_cast<std::int64_t>(nparts) * y / ny);
  const int p1 = static_cast<int>(static_cast<std::int64_t>(nparts) * (y + 1) / ny);
  double acc = 0.0;
#pragma unroll 4
  for (int p = p0; p < p1; ++p) acc += parts[p * count + e];
  mid[static_cast<std::int64_t>(y) * count + e] = acc;
}
__global__ void sum_parts_finish(const double* __restrict__ mid, int ny, std::int64_t count, double* __restrict__ out) {
  const std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (e >= count) return;
  double acc = 0.0;
  for (int y = 0; y < ny; ++y) acc += mid[static_cast<std::int64_t>(y) * count + e];
  out[e] = acc;
}

constexpr int smem_counts = 12288;  // 48 KiB of per-block label counts

// ---- exact distances to the own centre ---------------------------------------------------------
// dist_i = ‖x_i − c_label(i)‖² in double (exact differences); with `part`, per block Σ w_i dist_i
// into part[block] (a fixed order: each warp's rows in turn, then the warps in order) and
// counts[label] += 1 (integers: atomics keep it exact). C null: the distance to the origin (‖x‖²).
// A warp takes a row with lanes over columns (coalesced; the lanes' sums are combined by a fixed
// butterfly) and keeps R rows' loads in flight: one thread a row read X uncoalesced (9.8 ms at
// 20M x 64 float on an H200).
template <class T>
__global__ void __launch_bounds__(threads, 4) own_distance_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                                    const double* __restrict__ C, const std::int32_t* __restrict__ labels,
                                    const double* __restrict__ w, double* __restrict__ dist,
                                    double* __restrict__ part, unsigned long long* __restrict__ counts, int k) {
  constexpr int R = 8, warps = threads / 32;
  __shared__ double red[warps];
  // The counts go to a shared-memory histogram first (k <= smem_counts; dynamic shared memory),
  // then one global atomic a label a block: 20M global atomics on 256 addresses took ~5 ms.
  extern __shared__ unsigned block_counts[];
  const bool local = part != nullptr && k <= smem_counts;
  if (local) {
    for (int j = threadIdx.x; j < k; j += blockDim.x) block_counts[j] = 0u;
    __syncthreads();
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const std::int64_t wstep = static_cast<std::int64_t>(gridDim.x) * warps;
  double mine = 0.0;
  for (std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * warps + warp; i0 < n; i0 += R * wstep) {
    double s[R];
    const double* c[R];
#pragma unroll
    for (int u = 0; u < R; ++u) {
      const std::int64_t i = i0 + u * wstep;
      s[u] = 0.0;
      c[u] = C != nullptr && i < n ? C + static_cast<std::int64_t>(labels[i]) * d : nullptr;
    }
    for (int q = lane; q < d; q += 32) {
      double v[R];
#pragma unroll
      for (int u = 0; u < R; ++u) {
        const std::int64_t i = i0 + u * wstep;
        v[u] = i < n ? static_cast<double>(X[i * stride + q]) - (c[u] ? c[u][q] : 0.0) : 0.0;
      }
#pragma unroll
      for (int u = 0; u < R; ++u) s[u] += v[u] * v[u];
    }
#pragma unroll
    for (int u = 0; u < R; ++u) {
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) s[u] += __shfl_xor_sync(0xffffffffu, s[u], off);
      const std::int64_t i = i0 + u * wstep;
      if (lane == 0 && i < n) {
        if (dist) dist[i] = s[u];
        if (part) {
          mine += (w ? w[i] : 1.0) * s[u];
          if (local)
            atomicAdd(block_counts + labels[i], 1u);
          else
            atomicAdd(counts + labels[i], 1ULL);
        }
      }
    }
  }
  if (!part) return;
  if (lane == 0) red[warp] = mine;
  __syncthreads();
  if (local)
    for (int j = threadIdx.x; j < k; j += blockDim.x)
      if (block_counts[j]) atomicAdd(counts + j, static_cast<unsigned long long>(block_counts[j]));
  if (threadIdx.x == 0) {
    double acc = 0.0;
    for (int q = 0; q < warps; ++q) acc += red[q];
    part[blockIdx.x] = acc;
  }
}

// One thread per row of a chunk: d_ij = max(0, ‖x_i‖² + csq_j − 2 G_ji) (G: m x rows,
// column-major), closest_i <- min(closest_i, min_j d_ij) when `update`; per block, in thread
// order, the partial potentials Σ_i w_i min(closest_i, d_ij) into part[block][j] when `pot`.
template <class T>
__global__ void candidate_kernel(const T* __restrict__ X, std::int64_t rows, int d, std::int64_t stride,
                                 const T* __restrict__ G, int m, const double* __restrict__ csq,
                                 const double* __restrict__ w, double* __restrict__ closest,
                                 double* __restrict__ part, bool update) {
  extern __shared__ double red[];  // blockDim.x x m when part
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  double xsq = 0.0, cl = 0.0, wi = 0.0;
  const bool live = i < rows;
  if (live) {
    for (int q = 0; q < d; ++q) {
      const double v = static_cast<double>(X[i * stride + q]);
      xsq += v * v;
    }
    cl = closest[i];
    wi = w ? w[i] : 1.0;
  }
  double best = cl;
  for (int j = 0; j < m; ++j) {
    double dij = 0.0;
    if (live) {
      dij = xsq + csq[j] - 2.0 * static_cast<double>(G[i * m + j]);
      dij = dij > 0.0 ? dij : 0.0;
      best = dij < best ? dij : best;
    }
    if (part) red[threadIdx.x * m + j] = live ? wi * (cl < dij ? cl : dij) : 0.0;
  }
  if (live && update) closest[i] = best;
  if (part) {
    __syncthreads();
    if (threadIdx.x < static_cast<unsigned>(m)) {
      double s = 0.0;
      for (unsigned t = 0; t < blockDim.x; ++t) s += red[t * m + threadIdx.x];
      part[blockIdx.x * static_cast<std::int64_t>(m) + threadIdx.x] = s;
    }
  }
}

unsigned grid_rows(std::int64_t n) {
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min<std::int64_t>((n + threads - 1) / threads, 8LL * multiprocessors())));
}

// The dynamic shared memory a block of the M-step sums kernels may use on the current device (the
// opt-in maximum less 4 KiB), allowed for both kernels there (the attribute is per device: a
// process may drive several, so this runs every call).
template <class T>
int sums_smem_limit() {
  int dev = 0, optin = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
  const int limit = std::max(48 << 10, optin - (4 << 10));
  check(cudaFuncSetAttribute(sums_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, limit), "cudaFuncSetAttribute");
  check(cudaFuncSetAttribute(sums_fixed_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, limit),
        "cudaFuncSetAttribute");
  return limit;
}

// Σ inertia_part and Σ changed_part over the blocks: thread t adds its contiguous share in order,
// then thread 0 adds the shares in order (deterministic; the counts are integers).
constexpr int totals_threads = 1024;
__global__ void block_totals_kernel(const double* __restrict__ ip, const int* __restrict__ cp, std::int64_t nb,
                                    double* __restrict__ out_i, long long* __restrict__ out_c) {
  __shared__ double si[totals_threads];
  __shared__ long long sc[totals_threads];
  const int t = threadIdx.x;
  const std::int64_t a = nb * t / totals_threads, b = nb * (t + 1) / totals_threads;
  double acc = 0.0;
  long long c = 0;
  for (std::int64_t i = a; i < b; ++i) acc += ip[i], c += cp[i];
  si[t] = acc;
  sc[t] = c;
  __syncthreads();
  if (t == 0) {
    acc = 0.0;
    c = 0;
    for (int q = 0; q < totals_threads; ++q) acc += si[q], c += sc[q];
    *out_i = acc;
    *out_c = c;
  }
}

// The tiles' k x (d + 1) partials (part: tiles rows) summed in tile order into r.sums (k x d) and
// r.weights (k); synchronises the stream.
void sum_tiles_into(const double* part, std::int64_t tiles, std::int64_t k, std::int64_t d, cudaStream_t st,
                    lloyd_device_partial& r) {
  const std::int64_t width = d + 1, count = k * width;
  dev_array<double> mid(static_cast<std::size_t>(slices * count), st), out(static_cast<std::size_t>(count), st);
  const unsigned eb = static_cast<unsigned>((count + threads - 1) / threads);
  sum_parts_slices<<<dim3(eb, slices), threads, 0, st>>>(part, static_cast<int>(tiles), count, mid.p);
  check(cudaGetLastError(), "sum kernel launch");
  sum_parts_finish<<<eb, threads, 0, st>>>(mid.p, slices, count, out.p);
  check(cudaGetLastError(), "sum kernel launch");
  std::vector<double> h_out(static_cast<std::size_t>(count));
  check(cudaMemcpyAsync(h_out.data(), out.p, count * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  for (std::int64_t j = 0; j < k; ++j) {
    for (std::int64_t l = 0; l < d; ++l) r.sums[j * d + l] = h_out[j * width + l];
    r.weights[j] = h_out[j * width + d];
  }
}

// The M-step sums by sums_fixed_kernel into r.sums / r.weights (synchronises the stream). Needs
// fixed_smem(k, d) bytes of shared memory a block.
std::int64_t fixed_smem(std::int64_t k, std::int64_t d) { return (d + 1) * 8 + k * (d + 1) * 8; }
template <class T>
void fixed_point_sums(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w,
                      const std::int32_t* labels, std::int64_t k, unsigned* bound, int limit, cudaStream_t st,
                      lloyd_device_partial& r) {
  const std::int64_t width = d + 1, count = k * width, tiles = (n + tile_rows - 1) / tile_rows;
  if (fixed_smem(k, d) > limit)
    throw invalid_argument("KMeans on a GPU: the fixed-point sums need more shared memory than a block has");
  // Column bounds on the GPU (no round trip: the sums kernel turns them into scales itself); the
  // tensor-core assignment kernel has already computed them (bound given).
  dev_array<unsigned> own(bound ? 0 : static_cast<std::size_t>(width), st);
  if (!bound) {
    bound = own.p;
    check(cudaMemsetAsync(bound, 0, width * sizeof(unsigned), st), "cudaMemsetAsync");
    const unsigned row_blocks = static_cast<unsigned>(std::min<std::int64_t>((n + 7) / 8, 8LL * multiprocessors()));
    absmax_kernel<T><<<dim3(row_blocks, static_cast<unsigned>((width + 31) / 32)), threads, 0, st>>>(
        X, n, static_cast<int>(d), stride, w, bound);
    check(cudaGetLastError(), "absmax kernel launch");
  }
  dev_array<double> part(static_cast<std::size_t>(tiles * count), st);
  sums_fixed_kernel<T><<<static_cast<unsigned>(tiles), fixed_threads, fixed_smem(k, d), st>>>(
      X, n, static_cast<int>(d), stride, w, labels, static_cast<int>(k), bound, part.p);
  check(cudaGetLastError(), "fixed-point sums kernel launch");
  sum_tiles_into(part.p, tiles, k, d, st, r);
}

}  // namespace

template <class T>
lloyd_device_partial lloyd_step(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w,
                                const double* xsq, const std::vector<double>& centers, std::int64_t k,
                                std::int32_t* labels, bool update) {
  lloyd_device_partial r;
  if (update) {
    r.sums.assign(static_cast<std::size_t>(k * d), 0.0);
    r.weights.assign(static_cast<std::size_t>(k), 0.0);
  }
  if (n == 0 || k == 0) return r;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  // Centres and their squared norms in the precision of X (as scikit-learn).
  std::vector<T> C(static_cast<std::size_t>(k * d)), csq(static_cast<std::size_t>(k));
  for (std::int64_t j = 0; j < k; ++j) {
    T s = T(0);
    for (std::int64_t l = 0; l < d; ++l) {
      const T v = static_cast<T>(centers[j * d + l]);
      C[j * d + l] = v;
      s += v * v;
    }
    csq[j] = s;
  }
  dev_array<T> dC(C.size(), st), dcsq(csq.size(), st);
  check(cudaMemcpyAsync(dC.p, C.data(), C.size() * sizeof(T), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dcsq.p, csq.data(), csq.size() * sizeof(T), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  // E-step: the fused kernel, one block per 128 rows.
  const std::int64_t blocks = (n + BM - 1) / BM;
  dev_array<double> inertia_part(static_cast<std::size_t>(blocks), st);
  dev_array<int> changed_part(static_cast<std::size_t>(blocks), st);
  const int smem_limit = sums_smem_limit<T>();
  const std::int64_t width = d + 1;
  const bool fixed = update && fixed_smem(k, d) <= smem_limit;
  bool tensor = false;
  if constexpr (std::is_same_v<T, float>) tensor = use_tensor_cores();
  // The fixed-point sums' column bounds: from the tensor-core kernel as it reads X (saves a pass).
  dev_array<unsigned> bound(fixed && tensor ? static_cast<std::size_t>(width) : 0, st);
  if (bound.p) {
    std::vector<float> init(static_cast<std::size_t>(width), 0.0f);
    init[d] = w ? 0.0f : 1.0f;
    check(cudaMemcpyAsync(bound.p, init.data(), width * sizeof(float), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  }
  for (std::int64_t b0 = 0; b0 < blocks; b0 += 1LL << 30) {  // grid.x limit, never reached in practice
    const std::int64_t nb = std::min<std::int64_t>(blocks - b0, 1LL << 30), i0 = b0 * BM;
    const T* Xb = X + i0 * stride;
    if constexpr (std::is_same_v<T, float>) {
      if (tensor) {
        const bool vec = d % 4 == 0 && stride % 4 == 0 && reinterpret_cast<std::uintptr_t>(Xb) % 16 == 0;
        tc::assign_kernel<<<static_cast<unsigned>(nb), tc::TPB, tc::smem_bytes, st>>>(
            Xb, n - i0, static_cast<int>(d), stride, dC.p, dcsq.p, static_cast<int>(k), xsq ? xsq + i0 : nullptr,
            w ? w + i0 : nullptr, labels + i0, inertia_part.p + b0, changed_part.p + b0, vec, bound.p);
        check(cudaGetLastError(), "fused assignment kernel (3xTF32) launch");
        continue;
      }
    }
    assign_fused_kernel<T><<<static_cast<unsigned>(nb), TPB, 0, st>>>(
        Xb, n - i0, static_cast<int>(d), stride, dC.p, dcsq.p, static_cast<int>(k), xsq ? xsq + i0 : nullptr,
        w ? w + i0 : nullptr, labels + i0, inertia_part.p + b0, changed_part.p + b0);
    check(cudaGetLastError(), "fused assignment kernel launch");
  }
  // The blocks' inertia and changed counts summed on the GPU in a fixed order (the host used to
  // take ~2 MB of partials an iteration at 20M rows).
  dev_array<double> total_inertia(1, st);
  dev_array<long long> total_changed(1, st);
  block_totals_kernel<<<1, totals_threads, 0, st>>>(inertia_part.p, changed_part.p, blocks, total_inertia.p,
                                                    total_changed.p);
  check(cudaGetLastError(), "totals kernel launch");
  long long changed = 0;
  check(cudaMemcpyAsync(&r.inertia, total_inertia.p, sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(&changed, total_changed.p, sizeof(long long), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  if (update) {
    if (fixed) {
      fixed_point_sums<T>(X, n, d, stride, w, labels, k, bound.p, smem_limit, st, r);  // synchronises
      r.changed = changed;
      return r;
    }
    const std::int64_t fit = smem_limit / (k * static_cast<std::int64_t>(sizeof(T)));
    if (fit < 1)
      throw invalid_argument("KMeans on a GPU: n_clusters=" + std::to_string(k) +
                             " is too many for the GPU path's shared-memory tiles (at most " +
                             std::to_string(smem_limit / sizeof(T)) + ")");
    const int cols = static_cast<int>(std::min<std::int64_t>({fit, width, 1024}));
    const unsigned col_blocks = static_cast<unsigned>((width + cols - 1) / cols);
    const std::int64_t tiles = (n + tile_rows - 1) / tile_rows, count = k * width;
    dev_array<double> part(static_cast<std::size_t>(tiles * count), st);
    const int block_threads = ((cols + 31) / 32) * 32;
    sums_kernel<T><<<dim3(static_cast<unsigned>(tiles), col_blocks), block_threads, k * cols * sizeof(T), st>>>(
        X, n, static_cast<int>(d), stride, w, labels, static_cast<int>(k), cols, part.p);
    check(cudaGetLastError(), "sums kernel launch");
    sum_tiles_into(part.p, tiles, k, d, st, r);
  }
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  r.changed = changed;
  return r;
}

template <class T>
lloyd_device_partial lloyd_step_rows(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w,
                                     bool with_inertia, const std::vector<double>& centers, std::int64_t k,
                                     std::int32_t* labels, bool update) {
  if (n == 0 || !with_inertia) return lloyd_step<T>(X, n, d, stride, w, nullptr, centers, k, labels, update);
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  // ‖x‖² per row in double (verbose output's per-iteration inertia only).
  dev_array<double> xsq(static_cast<std::size_t>(n), st);
  own_distance_kernel<T><<<grid_rows(n), threads, 0, st>>>(X, n, static_cast<int>(d), stride, nullptr, nullptr, nullptr,
                                                           xsq.p, nullptr, nullptr, 0);
  check(cudaGetLastError(), "row norm launch");
  return lloyd_step<T>(X, n, d, stride, w, xsq.p, centers, k, labels, update);
}

// ---- k-means++ steps: the candidate pass for a few candidates ------------------------------------
// A k-means++ step scores 2 + ln k candidates (7 for k = 256), then moves the closest distances to
// the one it keeps (m = 1). For such skinny products the cuBLAS gemm + candidate_kernel pair read
// X twice (the gemm, then ‖x‖² row by row, uncoalesced), wrote and re-read an m x n block of
// products, and brought one partial a 256-row block to the host (4.4 MB a step at 20M rows): ~19 ms
// a step at 20M x 64, 4.8 s for k = 256 (one H200). Here one pass: a block stages tiles of 256 rows
// in shared memory, 128 bytes of each row at a time, with cp.async (three chunks in flight), and
// the same columns of the candidates; each thread takes one row's ‖x‖² and m dot products in
// double (as the host path, and scikit-learn, which upcasts float32 for these distances). The
// potentials are summed in a fixed order (a thread's rows, a tree over the block, the blocks on the
// host): deterministic for a given GPU. Measured (session 7, H200, 20M x 64 float32, 8 candidates):
// 4.1 ms a pass at 1.3 TB/s, issue-bound: 1.9 G warp instructions, 28% of them IMAD, mostly the
// copy loop's addressing (bench/results/logs/gpu_session7_run6_ncu_kpp_opcodes_h200.txt); that
// loop is now strength-reduced (the k = 256 init 1.69 -> 1.55 s). Four rows a thread, sharing
// the candidates' shared-memory reads, was slower (4.6 ms a pass).
namespace pp {
constexpr int TPB = 256;    // rows of a tile, one a thread
constexpr int STAGES = 3;   // column chunks in flight
template <class T>
constexpr int kc = 128 / static_cast<int>(sizeof(T));  // columns a chunk: 128 bytes of a row

template <class T, int M>
constexpr std::size_t smem_bytes() {
  constexpr std::size_t K = kc<T>;
  return STAGES * (K * M * sizeof(double) + TPB * (K + 1) * sizeof(T));
}

// The block's work is a sequence of (tile, column chunk) items: tiles blockIdx.x, + gridDim.x, ...,
// each in ceil(d / kc) chunks. Item `it` lands in ring slot it % STAGES: rows xs[slot][TPB][kc + 1]
// (+1: thread t reads row t without bank conflicts) and the candidates' same columns
// cs[slot][kc][M] (broadcast reads); zeros outside the matrix.
template <class T, int M>
__device__ __forceinline__ void issue_chunk(T* xs, double* cs, const T* __restrict__ X, std::int64_t n, int d,
                                            std::int64_t stride, const double* __restrict__ C, int m, int nch,
                                            std::int64_t it, int slot) {
  constexpr int K = kc<T>, RS = TPB / K;  // RS rows a pass: element (row rb + s RS, column c)
  const std::int64_t r0 = (blockIdx.x + (it / nch) * static_cast<std::int64_t>(gridDim.x)) * TPB;
  const int c0 = static_cast<int>(it % nch) * K, c = threadIdx.x % K, rb = threadIdx.x / K;
  // Passes s < live read rows inside the matrix. The loop is strength-reduced by hand (one pointer
  // step, immediate shared offsets, a 32-bit test): with the 64-bit row test and index product in
  // every pass it ran ~23 integer instructions a copy, over half the kernel's instructions.
  const std::int64_t left = n - r0 - rb;
  const int live = c0 + c >= d || left <= 0 ? 0 : left >= TPB ? K : static_cast<int>((left + RS - 1) / RS);
  const unsigned dst = static_cast<unsigned>(
      __cvta_generic_to_shared(xs + (static_cast<std::int64_t>(slot) * TPB + rb) * (K + 1) + c));
  const T* src = X + (r0 + rb) * stride + c0 + c;
  const std::int64_t step = RS * stride;
#pragma unroll
  for (int s = 0; s < K; ++s, src += step) cp_async_shared(dst + s * RS * (K + 1) * sizeof(T), s < live ? src : X, s < live);
  for (int e = threadIdx.x; e < K * M; e += TPB) {
    const int q = e / M, j = e % M;
    const bool ok = j < m && c0 + q < d;
    cp_async(cs + (static_cast<std::int64_t>(slot) * K + q) * M + j, ok ? C + j * static_cast<std::int64_t>(d) + c0 + q : C, ok);
  }
}

// acc[j] += v c[j] (c: M doubles in shared memory, 16-byte aligned for even M), xsq += v².
template <int M>
__device__ __forceinline__ void accumulate(double v, const double* c, double (&acc)[M], double& xsq) {
  xsq += v * v;
  if constexpr (M % 2 == 0) {
#pragma unroll
    for (int j = 0; j < M; j += 2) {
      const double2 p = *reinterpret_cast<const double2*>(c + j);
      acc[j] += v * p.x;
      acc[j + 1] += v * p.y;
    }
  } else {
#pragma unroll
    for (int j = 0; j < M; ++j) acc[j] += v * c[j];
  }
}

template <class T, int M>
__global__ void __launch_bounds__(TPB, 2) few_candidates_kernel(const T* __restrict__ X, std::int64_t n, int d,
                                                                std::int64_t stride, const double* __restrict__ C,
                                                                const double* __restrict__ csq, int m,
                                                                const double* __restrict__ w,
                                                                double* __restrict__ closest,
                                                                double* __restrict__ part, bool update) {
  constexpr int K = kc<T>;
  extern __shared__ __align__(16) unsigned char smem[];
  double* cs = reinterpret_cast<double*>(smem);
  T* xs = reinterpret_cast<T*>(smem + STAGES * K * M * sizeof(double));
  __shared__ double red[TPB];
  __shared__ double cq[M];
  const int t = threadIdx.x;
  double pot[M], acc[M], xsq = 0.0;
#pragma unroll
  for (int j = 0; j < M; ++j) pot[j] = 0.0, acc[j] = 0.0;
  if (t < M) cq[t] = t < m ? csq[t] : 0.0;
  const std::int64_t tiles = (n + TPB - 1) / TPB;
  const int nch = (d + K - 1) / K;
  const std::int64_t items = (tiles - blockIdx.x + gridDim.x - 1) / gridDim.x * nch;
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < items) issue_chunk<T, M>(xs, cs, X, n, d, stride, C, m, nch, s, s);
    cp_async_commit();  // empty groups too: the wait below counts groups
  }
  for (std::int64_t it = 0; it < items; ++it) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // item it is in for every thread; slot (it - 1) % STAGES is consumed
    if (it + STAGES - 1 < items)
      issue_chunk<T, M>(xs, cs, X, n, d, stride, C, m, nch, it + STAGES - 1, static_cast<int>((it + STAGES - 1) % STAGES));
    cp_async_commit();
    const int slot = static_cast<int>(it % STAGES), chunk = static_cast<int>(it % nch), c0 = chunk * K;
    const T* xr = xs + (static_cast<std::int64_t>(slot) * TPB + t) * (K + 1);
    const double* cc = cs + static_cast<std::int64_t>(slot) * K * M;
    if (d - c0 >= K) {  // a whole chunk: unrolled
#pragma unroll
      for (int q = 0; q < K; ++q) accumulate<M>(static_cast<double>(xr[q]), cc + q * M, acc, xsq);
    } else {
      for (int q = 0; q < d - c0; ++q) accumulate<M>(static_cast<double>(xr[q]), cc + q * M, acc, xsq);
    }
    if (chunk != nch - 1) continue;
    // The tile's last chunk: the row's distances, potentials and closest distance.
    const std::int64_t i = (blockIdx.x + (it / nch) * static_cast<std::int64_t>(gridDim.x)) * TPB + t;
    if (i < n) {
      const double cl = closest[i], wi = w ? w[i] : 1.0;
      double best = cl;
#pragma unroll
      for (int j = 0; j < M; ++j) {
        if (j >= m) continue;
        double dij = -2.0 * acc[j] + xsq + cq[j];  // the host path's order of additions
        dij = dij > 0.0 ? dij : 0.0;
        best = dij < best ? dij : best;
        pot[j] += wi * (cl < dij ? cl : dij);
      }
      if (update) closest[i] = best;
    }
    xsq = 0.0;
#pragma unroll
    for (int j = 0; j < M; ++j) acc[j] = 0.0;
  }
  cp_async_wait<0>();
  if (!part) return;
#pragma unroll
  for (int j = 0; j < M; ++j) {
    if (j >= m) break;
    __syncthreads();
    red[t] = pot[j];
    __syncthreads();
    for (int s = TPB / 2; s > 0; s >>= 1) {
      if (t < s) red[t] += red[t + s];
      __syncthreads();
    }
    if (t == 0) part[blockIdx.x * static_cast<std::int64_t>(m) + j] = red[0];
  }
}

// The pass for m <= M candidates (C and csq already on the GPU).
template <class T, int M>
void few_candidates(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w, const double* dC,
                    const double* dcsq, std::int64_t m, double* closest, double* pot, bool update, cudaStream_t st) {
  const std::int64_t tiles = (n + TPB - 1) / TPB;
  constexpr std::size_t smem = smem_bytes<T, M>();
  check(cudaFuncSetAttribute(few_candidates_kernel<T, M>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
        "cudaFuncSetAttribute");
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, few_candidates_kernel<T, M>, TPB, smem),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const unsigned grid =
      static_cast<unsigned>(std::max<std::int64_t>(1, std::min<std::int64_t>(tiles, std::max(per_sm, 1) * multiprocessors())));
  dev_array<double> part(pot ? static_cast<std::size_t>(grid * m) : 0, st);
  few_candidates_kernel<T, M><<<grid, TPB, smem, st>>>(X, n, static_cast<int>(d), stride, dC, dcsq, static_cast<int>(m), w,
                                                       closest, pot ? part.p : nullptr, update);
  check(cudaGetLastError(), "candidate kernel launch");
  std::vector<double> hp(pot ? static_cast<std::size_t>(grid * m) : 0);
  if (pot) check(cudaMemcpyAsync(hp.data(), part.p, hp.size() * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (pot)
    for (unsigned b = 0; b < grid; ++b)
      for (std::int64_t j = 0; j < m; ++j) pot[j] += hp[b * m + j];
}
}  // namespace pp

template <class T>
void candidate_pass(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w,
                    const std::vector<double>& candidates, std::int64_t m, double* closest, double* pot,
                    bool update) {
  if (n == 0 || m == 0) return;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  cublasHandle_t h = scope.ctx->blas;
  std::vector<double> csq(static_cast<std::size_t>(m), 0.0);
  for (std::int64_t j = 0; j < m; ++j)
    for (std::int64_t q = 0; q < d; ++q) csq[j] += candidates[j * d + q] * candidates[j * d + q];
  // k-means++ steps (and k-means||'s first): one fused pass, distances in double.
  // SPMDLEARN_KPP_GEMM=1 keeps the gemm pass for them too: benchmarks only (the earlier path).
  static const bool gemm_only = [] {
    const char* e = std::getenv("SPMDLEARN_KPP_GEMM");
    return e && std::strcmp(e, "1") == 0;
  }();
  // Potentials for any m (16 candidates a pass) and updates for m <= 16 take the fused pass; an
  // update for more candidates (k-means|| rounds: ~2k at once) the gemm pass below.
  if (!gemm_only && (pot || m <= 16)) {
    const bool fused_update = update && m <= 16;
    dev_array<double> dC(static_cast<std::size_t>(m * d), st), dcsq(static_cast<std::size_t>(m), st);
    check(cudaMemcpyAsync(dC.p, candidates.data(), m * d * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(dcsq.p, csq.data(), m * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
    for (std::int64_t j0 = 0; j0 < m; j0 += 16) {
      const std::int64_t mm = std::min<std::int64_t>(16, m - j0);
      const double* c = dC.p + j0 * d;
      const double* q = dcsq.p + j0;
      double* pj = pot ? pot + j0 : nullptr;
      if (mm == 1)
        pp::few_candidates<T, 1>(X, n, d, stride, w, c, q, mm, closest, pj, fused_update, st);
      else if (mm <= 4)
        pp::few_candidates<T, 4>(X, n, d, stride, w, c, q, mm, closest, pj, fused_update, st);
      else if (mm <= 8)
        pp::few_candidates<T, 8>(X, n, d, stride, w, c, q, mm, closest, pj, fused_update, st);
      else
        pp::few_candidates<T, 16>(X, n, d, stride, w, c, q, mm, closest, pj, fused_update, st);
    }
    if (!update || fused_update) return;
    pot = nullptr;  // done above; the gemm pass below only updates
  }
  std::vector<T> C(candidates.begin(), candidates.begin() + m * d);
  const std::int64_t chunk = std::max<std::int64_t>(threads, std::min<std::int64_t>(n, (256LL << 20) / (m * sizeof(T))));
  dev_array<T> dC(C.size(), st), G(static_cast<std::size_t>(std::min(chunk, n) * m), st);
  dev_array<double> dcsq(static_cast<std::size_t>(m), st);
  check(cudaMemcpyAsync(dC.p, C.data(), C.size() * sizeof(T), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dcsq.p, csq.data(), m * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  const std::int64_t chunks = (n + chunk - 1) / chunk;
  const std::int64_t blocks_per_chunk = (std::min(chunk, n) + threads - 1) / threads;
  dev_array<double> part(pot ? static_cast<std::size_t>(chunks * blocks_per_chunk * m) : 0, st);
  if (pot) check(cudaMemsetAsync(part.p, 0, chunks * blocks_per_chunk * m * sizeof(double), st), "cudaMemsetAsync");
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t i0 = c * chunk, rows = std::min(chunk, n - i0);
    check_blas(gemm_tn(h, static_cast<int>(m), static_cast<int>(rows), static_cast<int>(d), dC.p, static_cast<int>(d),
                       X + i0 * stride, static_cast<int>(stride), G.p, static_cast<int>(m)),
               "cublas gemm (candidates)");
    const unsigned blocks = static_cast<unsigned>((rows + threads - 1) / threads);
    candidate_kernel<T><<<blocks, threads, pot ? threads * m * sizeof(double) : 0, st>>>(
        X + i0 * stride, rows, static_cast<int>(d), stride, G.p, static_cast<int>(m), dcsq.p, w ? w + i0 : nullptr,
        closest + i0, pot ? part.p + c * blocks_per_chunk * m : nullptr, update);
    check(cudaGetLastError(), "candidate kernel launch");
  }
  std::vector<double> hp(pot ? static_cast<std::size_t>(chunks * blocks_per_chunk * m) : 0);
  if (pot) check(cudaMemcpyAsync(hp.data(), part.p, hp.size() * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (pot)
    for (std::size_t b = 0; b < hp.size() / m; ++b)
      for (std::int64_t j = 0; j < m; ++j) pot[j] += hp[b * m + j];
}

namespace {

// One warp per tile of mass_tile rows: lane l adds rows l, l + 32, ... in order, then a fixed
// shuffle tree; the tile's sum of w_i closest_i into out[tile].
__global__ void mass_tiles_kernel(std::int64_t n, const double* __restrict__ w, const double* __restrict__ closest,
                                  std::int64_t tiles, double* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const std::int64_t tile = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
  if (tile >= tiles) return;  // whole warps leave together
  const std::int64_t r0 = tile * mass_tile, r1 = r0 + mass_tile < n ? r0 + mass_tile : n;
  double s = 0.0;
  for (std::int64_t i = r0 + lane; i < r1; i += 32) s += (w ? w[i] : 1.0) * (closest ? closest[i] : 1.0);
  for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) out[tile] = s;
}

// One thread per value: the running mass from the tile's start, row by row.
__global__ void mass_find_kernel(std::int64_t n, const double* __restrict__ w, const double* __restrict__ closest,
                                 int values, const std::int64_t* __restrict__ tiles, const double* __restrict__ start,
                                 const double* __restrict__ u, bool right, std::int64_t* __restrict__ out) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= values) return;
  const std::int64_t r0 = tiles[j] * mass_tile, r1 = r0 + mass_tile < n ? r0 + mass_tile : n;
  double acc = start[j];
  std::int64_t found = r1 - 1;
  for (std::int64_t i = r0; i < r1; ++i) {
    acc += (w ? w[i] : 1.0) * (closest ? closest[i] : 1.0);
    if (right ? acc > u[j] : acc >= u[j]) {
      found = i;
      break;
    }
  }
  out[j] = found;
}

__global__ void fill_kernel(double* p, std::int64_t n, double v) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

}  // namespace

std::vector<double> mass_tiles(const void* like, std::int64_t n, const double* w, const double* closest) {
  const std::int64_t tiles = (n + mass_tile - 1) / mass_tile;
  std::vector<double> out(static_cast<std::size_t>(tiles));
  if (tiles == 0) return out;
  device_scope scope(like);
  const cudaStream_t st = scope.stream();
  dev_array<double> d(static_cast<std::size_t>(tiles), st);
  const std::int64_t warps_per_block = threads / 32;
  mass_tiles_kernel<<<static_cast<unsigned>((tiles + warps_per_block - 1) / warps_per_block), threads, 0, st>>>(
      n, w, closest, tiles, d.p);
  check(cudaGetLastError(), "mass tiles launch");
  check(cudaMemcpyAsync(out.data(), d.p, tiles * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  return out;
}

std::vector<std::int64_t> mass_find(const void* like, std::int64_t n, const double* w, const double* closest,
                                    const std::vector<std::int64_t>& tiles, const std::vector<double>& start,
                                    const std::vector<double>& u, bool right) {
  const int m = static_cast<int>(u.size());
  std::vector<std::int64_t> out(u.size());
  if (m == 0) return out;
  device_scope scope(like, false);
  const cudaStream_t st = scope.stream();
  dev_array<std::int64_t> dt(u.size(), st), dout(u.size(), st);
  dev_array<double> ds(u.size(), st), du(u.size(), st);
  check(cudaMemcpyAsync(dt.p, tiles.data(), m * sizeof(std::int64_t), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(ds.p, start.data(), m * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(du.p, u.data(), m * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  mass_find_kernel<<<(m + 63) / 64, 64, 0, st>>>(n, w, closest, m, dt.p, ds.p, du.p, right, dout.p);
  check(cudaGetLastError(), "mass find launch");
  check(cudaMemcpyAsync(out.data(), dout.p, m * sizeof(std::int64_t), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  return out;
}

double* filled_doubles(const void* like, std::int64_t n, double fill) {
  device_scope scope(like, false);
  double* p = nullptr;
  const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * sizeof(double);
  check(cudaMalloc(reinterpret_cast<void**>(&p), bytes), "cudaMalloc", bytes);
  fill_kernel<<<grid_rows(n), threads, 0, scope.stream()>>>(p, n, fill);
  const cudaError_t e = cudaGetLastError();
  const cudaError_t e2 = cudaStreamSynchronize(scope.stream());
  if (e != cudaSuccess || e2 != cudaSuccess) {
    cudaFree(p);
    fail(e != cudaSuccess ? e : e2, "fill kernel");
  }
  return p;
}

// ---- the rows farthest from their own centre (empty-cluster relocation) ------------------------
// Distances are >= 0, so the order of their bit patterns as unsigned integers is their order: an
// exact radix select finds the m-th largest key K one byte at a time (8 histogram passes over the
// keys that share the bytes found so far), then one pass gathers the rows above K and those equal
// to K; the host sorts those few by (distance desc, row asc). No sort of all n rows and no copy
// of n distances (the host path's copy and partial sort took ~100 ms at 20M rows).
__global__ void digit_hist_kernel(const double* __restrict__ dist, std::int64_t n, unsigned long long prefix,
                                  unsigned long long mask, int shift, unsigned* __restrict__ hist) {
  __shared__ unsigned h[256];
  for (int b = threadIdx.x; b < 256; b += blockDim.x) h[b] = 0u;
  __syncthreads();
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const auto key = static_cast<unsigned long long>(__double_as_longlong(dist[i]));
    if ((key & mask) == prefix) atomicAdd(&h[(key >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < 256; b += blockDim.x)
    if (h[b]) atomicAdd(&hist[b], h[b]);
}

// Rows with key > K into above[] (row and distance) and rows with key == K into equal[] (at most
// cap; count[1] counts them all), in any order.
__global__ void gather_top_kernel(const double* __restrict__ dist, std::int64_t n, unsigned long long K,
                                  std::int64_t* __restrict__ above, double* __restrict__ above_dist,
                                  std::int64_t* __restrict__ equal, unsigned long long cap,
                                  unsigned long long* __restrict__ count) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const double v = dist[i];
    const auto key = static_cast<unsigned long long>(__double_as_longlong(v));
    if (key > K) {
      const unsigned long long slot = atomicAdd(&count[0], 1ULL);
      above[slot] = i;
      above_dist[slot] = v;
    } else if (key == K) {
      const unsigned long long slot = atomicAdd(&count[1], 1ULL);
      if (slot < cap) equal[slot] = i;
    }
  }
}

template <class T>
std::vector<std::pair<double, std::int64_t>> farthest(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                                                      const std::vector<double>& centers, const std::int32_t* labels,
                                                      std::int64_t m) {
  std::vector<std::pair<double, std::int64_t>> out;
  const std::int64_t keep = std::min(m, n);
  if (keep <= 0) return out;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  dev_array<double> dC(centers.size(), st), dist(static_cast<std::size_t>(n), st);
  check(cudaMemcpyAsync(dC.p, centers.data(), centers.size() * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  own_distance_kernel<T><<<grid_rows(n), threads, 0, st>>>(X, n, static_cast<int>(d), stride, dC.p, labels, nullptr,
                                                           dist.p, nullptr, nullptr, 0);
  check(cudaGetLastError(), "distance kernel launch");
  // The key K of the keep-th largest distance, and how many rows equal to K the top takes.
  dev_array<unsigned> hist(256, st);
  std::vector<unsigned> h(256);
  unsigned long long prefix = 0, mask = 0;
  std::int64_t need = keep;
  for (int shift = 56; shift >= 0; shift -= 8) {
    check(cudaMemsetAsync(hist.p, 0, 256 * sizeof(unsigned), st), "cudaMemsetAsync");
    digit_hist_kernel<<<grid_rows(n), threads, 0, st>>>(dist.p, n, prefix, mask, shift, hist.p);
    check(cudaGetLastError(), "histogram kernel launch");
    check(cudaMemcpyAsync(h.data(), hist.p, 256 * sizeof(unsigned), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
    int digit = 255;
    for (; digit > 0 && static_cast<std::int64_t>(h[digit]) < need; --digit) need -= h[digit];
    prefix |= static_cast<unsigned long long>(digit) << shift;
    mask |= 255ULL << shift;
  }
  const std::int64_t n_above = keep - need;  // rows strictly farther than K: all taken
  double key_value = 0.0;
  std::memcpy(&key_value, &prefix, sizeof(double));
  const std::int64_t cap = std::min<std::int64_t>(n, std::max<std::int64_t>(need, 1 << 20));
  dev_array<std::int64_t> above(static_cast<std::size_t>(n_above), st), equal(static_cast<std::size_t>(cap), st);
  dev_array<double> above_dist(static_cast<std::size_t>(n_above), st);
  dev_array<unsigned long long> count(2, st);
  check(cudaMemsetAsync(count.p, 0, 2 * sizeof(unsigned long long), st), "cudaMemsetAsync");
  gather_top_kernel<<<grid_rows(n), threads, 0, st>>>(dist.p, n, prefix, above.p, above_dist.p, equal.p,
                                                       static_cast<unsigned long long>(cap), count.p);
  check(cudaGetLastError(), "gather kernel launch");
  unsigned long long hc[2] = {0, 0};
  std::vector<std::int64_t> ab(static_cast<std::size_t>(n_above)), eq(static_cast<std::size_t>(cap));
  std::vector<double> abd(static_cast<std::size_t>(n_above));
  check(cudaMemcpyAsync(hc, count.p, sizeof(hc), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  if (n_above) {
    check(cudaMemcpyAsync(ab.data(), above.p, n_above * sizeof(std::int64_t), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(abd.data(), above_dist.p, n_above * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  }
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (static_cast<std::int64_t>(hc[0]) != n_above || static_cast<std::int64_t>(hc[1]) < need)
    throw runtime_error("KMeans relocation: the GPU selection of the farthest rows is inconsistent");
  out.reserve(static_cast<std::size_t>(keep));
  for (std::int64_t j = 0; j < n_above; ++j) out.emplace_back(abd[j], ab[j]);
  if (static_cast<std::int64_t>(hc[1]) <= cap) {
    // The lowest `need` rows of those at exactly K.
    eq.resize(static_cast<std::size_t>(hc[1]));
    if (!eq.empty())
      check(cudaMemcpy(eq.data(), equal.p, eq.size() * sizeof(std::int64_t), cudaMemcpyDeviceToHost), "cudaMemcpy");
    std::sort(eq.begin(), eq.end());
    for (std::int64_t j = 0; j < need; ++j) out.emplace_back(key_value, eq[j]);
  } else {
    // Over cap rows at exactly the boundary distance (heavily duplicated data): find the lowest
    // `need` of them in row order on the host.
    std::vector<double> hd(static_cast<std::size_t>(n));
    check(cudaMemcpy(hd.data(), dist.p, n * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
    for (std::int64_t i = 0, taken = 0; i < n && taken < need; ++i)
      if (hd[i] == key_value) out.emplace_back(key_value, i), ++taken;
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  return out;
}

template <class T>
double own_inertia(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const std::vector<double>& centers,
                   std::int64_t k, const std::int32_t* labels, const double* w, double* counts) {
  if (n == 0) return 0.0;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  const unsigned grid = grid_rows(n);
  dev_array<double> dC(centers.size(), st), part(grid, st);
  dev_array<unsigned long long> dcount(static_cast<std::size_t>(k), st);
  check(cudaMemcpyAsync(dC.p, centers.data(), centers.size() * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemsetAsync(dcount.p, 0, k * sizeof(unsigned long long), st), "cudaMemsetAsync");
  const std::size_t counts_bytes = k <= smem_counts ? static_cast<std::size_t>(k) * sizeof(unsigned) : 0;
  own_distance_kernel<T><<<grid, threads, counts_bytes, st>>>(X, n, static_cast<int>(d), stride, dC.p, labels, w, nullptr,
                                                              part.p, dcount.p, static_cast<int>(k));
  check(cudaGetLastError(), "inertia kernel launch");
  std::vector<double> hp(grid);
  std::vector<unsigned long long> hc(static_cast<std::size_t>(k));
  check(cudaMemcpyAsync(hp.data(), part.p, grid * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(hc.data(), dcount.p, k * sizeof(unsigned long long), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  double total = 0.0;
  for (double v : hp) total += v;
  for (std::int64_t j = 0; j < k; ++j) counts[j] += static_cast<double>(hc[j]);
  return total;
}

std::int32_t* alloc_labels(const void* like, std::int64_t n) {
  device_scope scope(like, false);
  std::int32_t* p = nullptr;
  const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * sizeof(std::int32_t);
  check(cudaMalloc(reinterpret_cast<void**>(&p), bytes), "cudaMalloc", bytes);
  const cudaError_t e = cudaMemset(p, 0xff, bytes);  // every byte 0xff: -1
  if (e != cudaSuccess) {
    cudaFree(p);
    fail(e, "cudaMemset");
  }
  return p;
}

double* upload_doubles(const void* like, const double* h, std::int64_t n) {
  device_scope scope(like, false);
  double* p = nullptr;
  const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * sizeof(double);
  check(cudaMalloc(reinterpret_cast<void**>(&p), bytes), "cudaMalloc", bytes);
  const cudaError_t e = n > 0 ? cudaMemcpy(p, h, n * sizeof(double), cudaMemcpyHostToDevice) : cudaSuccess;
  if (e != cudaSuccess) {
    cudaFree(p);
    fail(e, "cudaMemcpy");
  }
  return p;
}

template <class T>
void copy_row(const T* X, std::int64_t i, std::int64_t d, std::int64_t stride, double* out) {
  std::vector<T> h(static_cast<std::size_t>(d));
  device_scope scope(X, false);
  check(cudaMemcpyAsync(h.data(), X + i * stride, d * sizeof(T), cudaMemcpyDeviceToHost, scope.stream()), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(scope.stream()), "cudaStreamSynchronize");
  for (std::int64_t q = 0; q < d; ++q) out[q] = static_cast<double>(h[q]);
}

template <class T>
T* centred_copy(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const std::vector<double>& mean) {
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  T* out = nullptr;
  const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(n * d, 1)) * sizeof(T);
  check(cudaMalloc(reinterpret_cast<void**>(&out), bytes), "cudaMalloc", bytes);
  if (n > 0 && d > 0) {
    std::vector<T> mt(mean.begin(), mean.end());
    dev_array<T> dm(mt.size(), st);
    check(cudaMemcpyAsync(dm.p, mt.data(), mt.size() * sizeof(T), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
    centre_rows_kernel<T, T, T><<<grid_rows(n * d), threads, 0, st>>>(X, n, static_cast<int>(d), stride, dm.p, out);
    const cudaError_t e = cudaGetLastError();
    const cudaError_t e2 = cudaStreamSynchronize(st);
    if (e != cudaSuccess || e2 != cudaSuccess) {
      cudaFree(out);
      fail(e != cudaSuccess ? e : e2, "centring kernel");
    }
  }
  return out;
}

#define SPMDLEARN_KMEANS_CUDA(T)                                                                            \
  template lloyd_device_partial lloyd_step<T>(const T*, std::int64_t, std::int64_t, std::int64_t, const double*,  \
                                              const double*, const std::vector<double>&, std::int64_t,            \
                                              std::int32_t*, bool);                                               \
  template lloyd_device_partial lloyd_step_rows<T>(const T*, std::int64_t, std::int64_t, std::int64_t,            \
                                                   const double*, bool, const std::vector<double>&,               \
                                                   std::int64_t, std::int32_t*, bool);                            \
  template void candidate_pass<T>(const T*, std::int64_t, std::int64_t, std::int64_t, const double*,          \
                                  const std::vector<double>&, std::int64_t, double*, double*, bool);          \
  template std::vector<std::pair<double, std::int64_t>> farthest<T>(const T*, std::int64_t, std::int64_t,              \
                                                                    std::int64_t, const std::vector<double>&,      \
                                                                    const std::int32_t*, std::int64_t);            \
  template double own_inertia<T>(const T*, std::int64_t, std::int64_t, std::int64_t, const std::vector<double>&, \
                                 std::int64_t, const std::int32_t*, const double*, double*);                  \
  template void copy_row<T>(const T*, std::int64_t, std::int64_t, std::int64_t, double*);                     \
  template T* centred_copy<T>(const T*, std::int64_t, std::int64_t, std::int64_t, const std::vector<double>&);
SPMDLEARN_KMEANS_CUDA(float)
SPMDLEARN_KMEANS_CUDA(double)

}  // namespace spmdlearn::cuda
