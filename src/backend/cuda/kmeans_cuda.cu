// CUDA k-means E/M step. See kmeans_cuda.hpp (status: compiled, not yet run on a GPU).
#include <algorithm>
#include <string>

#include "backend/cuda/centre_rows.cuh"
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kmeans_cuda.hpp"

namespace spmdlearn::cuda {
namespace {

constexpr int threads = 256;
constexpr int tile_rows = 16384;  // rows of one partial-sum tile
constexpr int slices = 32;        // ordered slices of the tile reduction

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

// One warp per row i of the chunk: label = argmin_j csq_j − 2 G_ji (G: k x rows, column-major;
// the first minimum wins), the row's distance xsq_i + min, and per block the sums of w·distance
// and of changed labels (fixed order: warps in index order).
template <class T>
__global__ void assign_kernel(const T* __restrict__ G, std::int64_t rows, int k, const T* __restrict__ csq,
                              const T* __restrict__ xsq, const T* __restrict__ w, std::int32_t* __restrict__ labels,
                              double* __restrict__ inertia_part, int* __restrict__ changed_part) {
  constexpr int warps = threads / 32;
  __shared__ double wi_dist[warps];
  __shared__ int wi_changed[warps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double my_inertia = 0.0;
  int my_changed = 0;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * warps + warp; i < rows;
       i += static_cast<std::int64_t>(gridDim.x) * warps) {
    T best = T(0);
    int arg = -1;
    const T* g = G + i * k;
    for (int j = lane; j < k; j += 32) {
      const T v = csq[j] - T(2) * g[j];
      if (arg < 0 || v < best) {  // j grows: a tie keeps the earlier j
        best = v;
        arg = j;
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const T ob = __shfl_down_sync(0xffffffffu, best, off);
      const int oa = __shfl_down_sync(0xffffffffu, arg, off);
      if (oa >= 0 && (arg < 0 || ob < best || (ob == best && oa < arg))) {
        best = ob;
        arg = oa;
      }
    }
    if (lane == 0) {
      my_changed += labels[i] != arg;
      labels[i] = arg;
      if (xsq) my_inertia += (w ? static_cast<double>(w[i]) : 1.0) * (static_cast<double>(xsq[i]) + static_cast<double>(best));
    }
  }
  if (lane == 0) {
    wi_dist[warp] = my_inertia;
    wi_changed[warp] = my_changed;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    int c = 0;
    for (int q = 0; q < warps; ++q) {
      s += wi_dist[q];
      c += wi_changed[q];
    }
    inertia_part[blockIdx.x] = s;
    changed_part[blockIdx.x] = c;
  }
}

// Tile blockIdx.x (tile_rows rows), columns [c0, c0 + cols) of [x | 1] (column d is the weight):
// thread t owns column c0 + t and adds w_i x_i into acc[label_i][t] row by row (no two threads
// share an address, so no atomics and a fixed order); the tile's k x cols partial goes to
// part[tile][label][c] (k x (d + 1) per tile) in double.
template <class T>
__global__ void sums_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                            const T* __restrict__ w, const std::int32_t* __restrict__ labels, int k, int cols,
                            double* __restrict__ part) {
  extern __shared__ unsigned char smem[];
  T* acc = reinterpret_cast<T*>(smem);
  const int t = threadIdx.x;
  const int c = blockIdx.y * cols + t;
  for (int e = t; e < k * cols; e += blockDim.x) acc[e] = T(0);
  __syncthreads();
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * tile_rows;
  const std::int64_t r1 = r0 + tile_rows < n ? r0 + tile_rows : n;
  if (t < cols && c <= d) {
#pragma unroll 4
    for (std::int64_t i = r0; i < r1; ++i) {
      const T wi = w ? w[i] : T(1);
      const T v = c < d ? wi * X[i * stride + c] : wi;
      acc[labels[i] * cols + t] += v;
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

}  // namespace

template <class T>
lloyd_device_partial lloyd_step(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const T* w,
                                const T* xsq, const std::vector<double>& centers, std::int64_t k,
                                std::int32_t* labels, bool update) {
  lloyd_device_partial r;
  r.sums.assign(static_cast<std::size_t>(k * d), 0.0);
  r.weights.assign(static_cast<std::size_t>(k), 0.0);
  if (n == 0 || k == 0) return r;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  cublasHandle_t h = scope.ctx->blas;
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
  // E-step by chunks of ~256 MiB of distances.
  const std::int64_t chunk = std::max<std::int64_t>(1024, std::min<std::int64_t>(n, (256LL << 20) / (k * sizeof(T))));
  const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>(8LL * multiprocessors(), (chunk + 7) / 8));
  const std::int64_t chunks = (n + chunk - 1) / chunk;
  dev_array<T> G(static_cast<std::size_t>(std::min(chunk, n) * k), st);
  dev_array<double> inertia_part(static_cast<std::size_t>(blocks * chunks), st);
  dev_array<int> changed_part(static_cast<std::size_t>(blocks * chunks), st);
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t i0 = c * chunk, rows = std::min(chunk, n - i0);
    // Column-major: C is d x k (ld d), the chunk d x rows (ld stride); G = Cᵀ X_chunk (k x rows).
    check_blas(gemm_tn(h, static_cast<int>(k), static_cast<int>(rows), static_cast<int>(d), dC.p, static_cast<int>(d),
                       X + i0 * stride, static_cast<int>(stride), G.p, static_cast<int>(k)),
               "cublas gemm (distances)");
    assign_kernel<T><<<blocks, threads, 0, st>>>(G.p, rows, static_cast<int>(k), dcsq.p, xsq ? xsq + i0 : nullptr,
                                                 w ? w + i0 : nullptr, labels + i0, inertia_part.p + c * blocks,
                                                 changed_part.p + c * blocks);
    check(cudaGetLastError(), "assign kernel launch");
  }
  std::vector<double> ip(static_cast<std::size_t>(blocks * chunks));
  std::vector<int> cp(static_cast<std::size_t>(blocks * chunks));
  check(cudaMemcpyAsync(ip.data(), inertia_part.p, ip.size() * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(cp.data(), changed_part.p, cp.size() * sizeof(int), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  if (update) {
    // Columns per block so that a k x cols tile of T fits 48 KiB of shared memory.
    const std::int64_t width = d + 1;
    const std::int64_t fit = (48LL << 10) / (k * static_cast<std::int64_t>(sizeof(T)));
    if (fit < 1)
      throw invalid_argument("KMeans on a GPU: n_clusters=" + std::to_string(k) +
                             " is too many for the GPU path's shared-memory tiles (at most " +
                             std::to_string((48LL << 10) / sizeof(T)) + ")");
    const int cols = static_cast<int>(std::min<std::int64_t>({fit, width, 1024}));
    const unsigned col_blocks = static_cast<unsigned>((width + cols - 1) / cols);
    const std::int64_t tiles = (n + tile_rows - 1) / tile_rows, count = k * width;
    dev_array<double> part(static_cast<std::size_t>(tiles * count), st), mid(static_cast<std::size_t>(slices * count), st),
        out(static_cast<std::size_t>(count), st);
    const int block_threads = ((cols + 31) / 32) * 32;
    sums_kernel<T><<<dim3(static_cast<unsigned>(tiles), col_blocks), block_threads, k * cols * sizeof(T), st>>>(
        X, n, static_cast<int>(d), stride, w, labels, static_cast<int>(k), cols, part.p);
    check(cudaGetLastError(), "sums kernel launch");
    const unsigned eb = static_cast<unsigned>((count + threads - 1) / threads);
    sum_parts_slices<<<dim3(eb, slices), threads, 0, st>>>(part.p, static_cast<int>(tiles), count, mid.p);
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
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  for (double v : ip) r.inertia += v;
  for (int v : cp) r.changed += v;
  return r;
}

namespace {

// out[i] = ‖x_i − c_label(i)‖² in double (exact differences), one thread per row.
template <class T>
__global__ void own_distance_kernel(const T* __restrict__ X, std::int64_t n, int d, std::int64_t stride,
                                    const double* __restrict__ C, const std::int32_t* __restrict__ labels,
                                    double* __restrict__ out) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const double* c = C + static_cast<std::int64_t>(labels[i]) * d;
    double s = 0.0;
    for (int q = 0; q < d; ++q) {
      const double t = static_cast<double>(X[i * stride + q]) - c[q];
      s += t * t;
    }
    out[i] = s;
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

}  // namespace

template <class T>
lloyd_device_partial lloyd_step_host(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                                     const double* w, bool with_inertia, const std::vector<double>& centers,
                                     std::int64_t k, std::int32_t* labels, bool update) {
  if (n == 0) return lloyd_step<T>(X, 0, d, stride, nullptr, nullptr, centers, k, nullptr, update);
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  dev_array<std::int32_t> dl(static_cast<std::size_t>(n), st);
  dev_array<T> dw(w ? static_cast<std::size_t>(n) : 0, st), dsq(with_inertia ? static_cast<std::size_t>(n) : 0, st);
  check(cudaMemcpyAsync(dl.p, labels, n * sizeof(std::int32_t), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  if (w) {
    std::vector<T> wt(w, w + n);
    check(cudaMemcpyAsync(dw.p, wt.data(), n * sizeof(T), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");  // wt goes out of scope
  }
  if (with_inertia) {
    // ‖x‖² per row in the precision of X (only for verbose output's per-iteration inertia).
    std::vector<double> zero(static_cast<std::size_t>(d * 0 + 1), 0.0);
    dev_array<double> dist(static_cast<std::size_t>(n), st), origin(static_cast<std::size_t>(d), st);
    dev_array<std::int32_t> zl(static_cast<std::size_t>(n), st);
    check(cudaMemsetAsync(origin.p, 0, d * sizeof(double), st), "cudaMemsetAsync");
    check(cudaMemsetAsync(zl.p, 0, n * sizeof(std::int32_t), st), "cudaMemsetAsync");
    own_distance_kernel<T><<<grid_rows(n), threads, 0, st>>>(X, n, static_cast<int>(d), stride, origin.p, zl.p, dist.p);
    check(cudaGetLastError(), "row norm launch");
    std::vector<double> h(static_cast<std::size_t>(n));
    check(cudaMemcpyAsync(h.data(), dist.p, n * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
    std::vector<T> ht(h.begin(), h.end());
    check(cudaMemcpyAsync(dsq.p, ht.data(), n * sizeof(T), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  }
  lloyd_device_partial r = lloyd_step<T>(X, n, d, stride, w ? dw.p : nullptr, with_inertia ? dsq.p : nullptr,
                                         centers, k, dl.p, update);
  check(cudaMemcpyAsync(labels, dl.p, n * sizeof(std::int32_t), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  return r;
}

template <class T>
void candidate_pass(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const double* w,
                    const std::vector<double>& candidates, std::int64_t m, double* closest, double* pot,
                    bool update) {
  if (n == 0 || m == 0) return;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  cublasHandle_t h = scope.ctx->blas;
  std::vector<T> C(candidates.begin(), candidates.begin() + m * d);
  std::vector<double> csq(static_cast<std::size_t>(m), 0.0);
  for (std::int64_t j = 0; j < m; ++j)
    for (std::int64_t q = 0; q < d; ++q) csq[j] += candidates[j * d + q] * candidates[j * d + q];
  const std::int64_t chunk = std::max<std::int64_t>(threads, std::min<std::int64_t>(n, (256LL << 20) / (m * sizeof(T))));
  dev_array<T> dC(C.size(), st), G(static_cast<std::size_t>(std::min(chunk, n) * m), st);
  dev_array<double> dcsq(static_cast<std::size_t>(m), st), dcl(static_cast<std::size_t>(n), st),
      dw(w ? static_cast<std::size_t>(n) : 0, st);
  check(cudaMemcpyAsync(dC.p, C.data(), C.size() * sizeof(T), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dcsq.p, csq.data(), m * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dcl.p, closest, n * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  if (w) check(cudaMemcpyAsync(dw.p, w, n * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
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
        X + i0 * stride, rows, static_cast<int>(d), stride, G.p, static_cast<int>(m), dcsq.p, w ? dw.p + i0 : nullptr,
        dcl.p + i0, pot ? part.p + c * blocks_per_chunk * m : nullptr, update);
    check(cudaGetLastError(), "candidate kernel launch");
  }
  if (update)
    check(cudaMemcpyAsync(closest, dcl.p, n * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  std::vector<double> hp(pot ? static_cast<std::size_t>(chunks * blocks_per_chunk * m) : 0);
  if (pot) check(cudaMemcpyAsync(hp.data(), part.p, hp.size() * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  if (pot)
    for (std::size_t b = 0; b < hp.size() / m; ++b)
      for (std::int64_t j = 0; j < m; ++j) pot[j] += hp[b * m + j];
}

template <class T>
std::vector<double> own_distances(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                                  const std::vector<double>& centers, const std::int32_t* labels) {
  std::vector<double> out(static_cast<std::size_t>(n));
  if (n == 0) return out;
  device_scope scope(X);
  const cudaStream_t st = scope.stream();
  dev_array<double> dC(centers.size(), st), dist(static_cast<std::size_t>(n), st);
  dev_array<std::int32_t> dl(static_cast<std::size_t>(n), st);
  check(cudaMemcpyAsync(dC.p, centers.data(), centers.size() * sizeof(double), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dl.p, labels, n * sizeof(std::int32_t), cudaMemcpyHostToDevice, st), "cudaMemcpyAsync");
  own_distance_kernel<T><<<grid_rows(n), threads, 0, st>>>(X, n, static_cast<int>(d), stride, dC.p, dl.p, dist.p);
  check(cudaGetLastError(), "distance kernel launch");
  check(cudaMemcpyAsync(out.data(), dist.p, n * sizeof(double), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  return out;
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
  template lloyd_device_partial lloyd_step_host<T>(const T*, std::int64_t, std::int64_t, std::int64_t,        \
                                                   const double*, bool, const std::vector<double>&,           \
                                                   std::int64_t, std::int32_t*, bool);                        \
  template void candidate_pass<T>(const T*, std::int64_t, std::int64_t, std::int64_t, const double*,          \
                                  const std::vector<double>&, std::int64_t, double*, double*, bool);          \
  template std::vector<double> own_distances<T>(const T*, std::int64_t, std::int64_t, std::int64_t,           \
                                                const std::vector<double>&, const std::int32_t*);             \
  template void copy_row<T>(const T*, std::int64_t, std::int64_t, std::int64_t, double*);                     \
  template T* centred_copy<T>(const T*, std::int64_t, std::int64_t, std::int64_t, const std::vector<double>&);
SPMDLEARN_KMEANS_CUDA(float)
SPMDLEARN_KMEANS_CUDA(double)

template lloyd_device_partial lloyd_step<float>(const float*, std::int64_t, std::int64_t, std::int64_t, const float*,
                                                const float*, const std::vector<double>&, std::int64_t, std::int32_t*,
                                                bool);
template lloyd_device_partial lloyd_step<double>(const double*, std::int64_t, std::int64_t, std::int64_t,
                                                 const double*, const double*, const std::vector<double>&,
                                                 std::int64_t, std::int32_t*, bool);

}  // namespace spmdlearn::cuda
