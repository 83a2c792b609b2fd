// CPU backend of the k-means local work (see ../kmeans_local.hpp): chunked gemm with a fused
// argmin, worker threads over contiguous chunk ranges, thread partials reduced in thread order
// (deterministic for a given thread count).
#include "cluster/kmeans_local.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

#include "backend/cpu/gemm.hpp"
#include "spmdlearn/core/error.hpp"
#ifdef SPMDLEARN_WITH_CUDA
#include "backend/cuda/kmeans_cuda.hpp"
#include "backend/cuda/memory.hpp"
#include "backend/cuda/moments_cuda.hpp"
#endif

// The local functions choose here: a block on a GPU (X.device == cuda, the k-means driver's
// centred device copy) goes to src/backend/cuda/kmeans_cuda.cu, everything else runs below.

namespace spmdlearn::cluster::detail {

namespace {

// Rows per chunk: the chunk's distance block (rows x k) stays around 256 KiB (L2-resident while
// the argmin reads it back; 512 rows of 64 double centres), at least 64 rows, at most 4096.
std::int64_t chunk_rows_for(std::int64_t k, std::size_t elem) {
  const std::int64_t r = (256 << 10) / static_cast<std::int64_t>(elem * std::max<std::int64_t>(k, 1));
  return std::clamp<std::int64_t>(r, 64, 4096);
}

// Runs body(t, lo, hi) for t in [0, threads) over contiguous ranges of whole chunks.
template <class F>
void parallel_chunks(std::int64_t n, std::int64_t chunk, int threads, F&& body) {
  const std::int64_t n_chunks = (n + chunk - 1) / chunk;
  threads = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, n_chunks)));
  auto range = [&](int t) {
    const std::int64_t c0 = n_chunks * t / threads, c1 = n_chunks * (t + 1) / threads;
    return std::pair<std::int64_t, std::int64_t>{std::min(n, c0 * chunk), std::min(n, c1 * chunk)};
  };
  if (threads == 1) {
    body(0, std::int64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (int t = 1; t < threads; ++t) {
    const auto [lo, hi] = range(t);
    pool.emplace_back([&body, t, lo = lo, hi = hi] { body(t, lo, hi); });
  }
  const auto [lo, hi] = range(0);
  body(0, lo, hi);
  for (auto& th : pool) th.join();
}

template <class T>
std::vector<T> cast(std::span<const double> v) {
  return std::vector<T>(v.begin(), v.end());
}

// The argmin of a chunk's distance block, vectorised across rows: D is the column-major rows x k
// block of −2 x·c (one column per centre), so that every centre's column is contiguous. For each
// row the first centre with the smallest ‖c‖² − 2 x·c wins (strict <, as scikit-learn's loop);
// fl(‖c‖² + fl(−2 x·c)) is the value scikit-learn's gemm with beta = 1 produces.
template <class T>
inline __attribute__((always_inline)) void argmin_columns_impl(const T* D, std::int64_t rows,
                                                              std::int64_t k, const T* csq,
                                                              T* best, std::int32_t* label) {
  for (std::int64_t i = 0; i < rows; ++i) {
    best[i] = csq[0] + D[i];
    label[i] = 0;
  }
  for (std::int64_t j = 1; j < k; ++j) {
    const T* col = D + j * rows;
    const T cj = csq[j];
    const std::int32_t jj = static_cast<std::int32_t>(j);
    for (std::int64_t i = 0; i < rows; ++i) {
      const T v = cj + col[i];
      const bool lt = v < best[i];
      best[i] = lt ? v : best[i];
      label[i] = lt ? jj : label[i];
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SPMDLEARN_KMEANS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPMDLEARN_KMEANS_CLONES
#endif
SPMDLEARN_KMEANS_CLONES void argmin_columns(const double* D, std::int64_t rows, std::int64_t k,
                                            const double* csq, double* best, std::int32_t* label) {
  argmin_columns_impl(D, rows, k, csq, best, label);
}
SPMDLEARN_KMEANS_CLONES void argmin_columns(const float* D, std::int64_t rows, std::int64_t k,
                                            const float* csq, float* best, std::int32_t* label) {
  argmin_columns_impl(D, rows, k, csq, best, label);
}

// sums[label_i] += w_i x_i, weights[label_i] += w_i over a chunk (w null: all 1), in double.
template <class T>
inline __attribute__((always_inline)) void accumulate_impl(const T* X, std::int64_t ldx,
                                                          std::int64_t rows, std::int64_t d,
                                                          const std::int32_t* label, const double* w,
                                                          double* sums, double* weights) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const double wi = w ? w[i] : 1.0;
    weights[label[i]] += wi;
    double* s = sums + label[i] * d;
    const T* x = X + i * ldx;
    for (std::int64_t q = 0; q < d; ++q) s[q] += wi * static_cast<double>(x[q]);
  }
}
SPMDLEARN_KMEANS_CLONES void accumulate(const double* X, std::int64_t ldx, std::int64_t rows,
                                        std::int64_t d, const std::int32_t* label, const double* w,
                                        double* sums, double* weights) {
  accumulate_impl(X, ldx, rows, d, label, w, sums, weights);
}
SPMDLEARN_KMEANS_CLONES void accumulate(const float* X, std::int64_t ldx, std::int64_t rows,
                                        std::int64_t d, const std::int32_t* label, const double* w,
                                        double* sums, double* weights) {
  accumulate_impl(X, ldx, rows, d, label, w, sums, weights);
}

}  // namespace

template <class T>
lloyd_partial lloyd_step_local(matrix_view<const T> X, std::span<const double> w,
                               std::span<const double> xsq, std::span<const double> centers,
                               std::int64_t k, std::span<std::int32_t> labels, bool update,
                               int threads) {
  const std::int64_t n = X.rows, d = X.cols;
  lloyd_partial out;
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda) {
    auto r = cuda::lloyd_step_rows<T>(X.data, n, d, X.stride(), w.empty() ? nullptr : w.data(), !xsq.empty(),
                                      std::vector<double>(centers.begin(), centers.end()), k, labels.data(), update);
    out.sums = std::move(r.sums);
    out.weights = std::move(r.weights);
    out.inertia = r.inertia;
    out.changed = r.changed;
    return out;
  }
#endif
  if (update) {
    out.sums.assign(k * d, 0.0);
    out.weights.assign(k, 0.0);
  }
  if (n == 0) return out;
  // Centres and their squared norms in the precision of X, as scikit-learn's row_norms(centers).
  const std::vector<T> C = cast<T>(centers);
  std::vector<T> csq(k);
  for (std::int64_t j = 0; j < k; ++j) {
    T s = 0;
    for (std::int64_t q = 0; q < d; ++q) s += C[j * d + q] * C[j * d + q];
    csq[j] = s;
  }
  const std::int64_t B = chunk_rows_for(k, sizeof(T));
  const int nt = static_cast<int>(std::max<std::int64_t>(
      1, std::min<std::int64_t>(threads, n / std::max<std::int64_t>(4 * B, 1))));
  std::vector<lloyd_partial> parts(nt);
  parallel_chunks(n, B, nt, [&](int t, std::int64_t lo, std::int64_t hi) {
    lloyd_partial& p = parts[t];
    if (update) {
      p.sums.assign(k * d, 0.0);
      p.weights.assign(k, 0.0);
    }
    std::vector<T> D(B * k), best(B);
    std::vector<std::int32_t> lab(B);
    for (std::int64_t i0 = lo; i0 < hi; i0 += B) {
      const std::int64_t rows = std::min(B, hi - i0);
      cpu::gemm_centers_by_rows<T>(rows, k, d, T(-2), X.row(i0), X.stride(), C.data(), D.data());
      argmin_columns(D.data(), rows, k, csq.data(), best.data(), lab.data());
      for (std::int64_t i = 0; i < rows; ++i) {
        const std::int32_t label = lab[i];
        const std::int64_t r = i0 + i;
        if (labels[r] != label) ++p.changed;
        labels[r] = label;
        if (!xsq.empty()) p.inertia += (w.empty() ? 1.0 : w[r]) * (xsq[r] + static_cast<double>(best[i]));
      }
      if (update)
        accumulate(X.row(i0), X.stride(), rows, d, lab.data(), w.empty() ? nullptr : w.data() + i0,
                   p.sums.data(), p.weights.data());
    }
  });
  for (const auto& p : parts) {
    out.changed += p.changed;
    out.inertia += p.inertia;
    if (update) {
      for (std::int64_t j = 0; j < k; ++j) out.weights[j] += p.weights[j];
      for (std::int64_t q = 0; q < k * d; ++q) out.sums[q] += p.sums[q];
    }
  }
  return out;
}

namespace {
// ‖x − c‖² by exact differences, in double (scikit-learn's _euclidean_dense_dense).
template <class T>
double squared_distance(const T* x, const double* c, std::int64_t d) {
  double s = 0.0;
  for (std::int64_t q = 0; q < d; ++q) {
    const double t = static_cast<double>(x[q]) - c[q];
    s += t * t;
  }
  return s;
}
}  // namespace

template <class T>
std::vector<std::pair<double, std::int64_t>> farthest_local(matrix_view<const T> X,
                                                             std::span<const double> centers,
                                                             std::span<const std::int32_t> labels,
                                                             std::int64_t m) {
  const std::int64_t n = X.rows, d = X.cols;
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda)  // on the GPU: only the m pairs come to the host
    return cuda::farthest<T>(X.data, n, d, X.stride(), std::vector<double>(centers.begin(), centers.end()),
                             labels.data(), m);
#endif
  std::vector<std::pair<double, std::int64_t>> all(n);
  for (std::int64_t i = 0; i < n; ++i) {
    const double s = squared_distance(X.row(i), centers.data() + labels[i] * d, d);
    all[i] = {s, i};
  }
  const std::int64_t keep = std::min(m, n);
  auto before = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::partial_sort(all.begin(), all.begin() + keep, all.end(), before);
  all.resize(keep);
  return all;
}

namespace {

// The squared distances of a chunk of rows [i0, i0 + rows) to m candidates, in double, into
// D (rows x m): ‖x‖² + ‖c‖² − 2 x·c clipped at 0.
template <class T>
void candidate_block(matrix_view<const T> X, std::span<const double> xsq, const double* C,
                     const std::vector<double>& csq, std::int64_t m, std::int64_t i0,
                     std::int64_t rows, std::vector<double>& xbuf, std::vector<double>& D) {
  const std::int64_t d = X.cols;
  const double* xs;
  std::int64_t ld;
  if constexpr (std::is_same_v<T, double>) {
    xs = X.row(i0);
    ld = X.stride();
  } else {
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t q = 0; q < d; ++q) xbuf[i * d + q] = static_cast<double>(X(i0 + i, q));
    xs = xbuf.data();
    ld = d;
  }
  cpu::gemm_rows_by_centers<double>(rows, m, d, -2.0, xs, ld, C, 0.0, D.data());
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < m; ++j) {
      const double v = D[i * m + j] + xsq[i0 + i] + csq[j];
      D[i * m + j] = v > 0.0 ? v : 0.0;
    }
}

std::vector<double> squared_norms(std::span<const double> C, std::int64_t m, std::int64_t d) {
  std::vector<double> csq(m, 0.0);
  for (std::int64_t j = 0; j < m; ++j)
    for (std::int64_t q = 0; q < d; ++q) csq[j] += C[j * d + q] * C[j * d + q];
  return csq;
}

// ---- k-means++ steps: a few candidates in one pass, no gemm ----------------------------------------
// A k-means++ step scores 2 + ln k candidates, then moves the closest distances to the one kept
// (m = 1). OpenBLAS runs such skinny products well below the machine's rate, so for m <= 16 the
// rows go through this loop instead: the candidates transposed and zero-padded to M columns
// (Ct: d x M), and for each row, column by column, acc += x_q Ct[q] with acc one vector of M
// doubles (GCC vector types: one or two zmm on AVX-512, ymm pairs on AVX2, SSE2 in the default
// clone), R rows at once so that independent chains hide the FMA latency. Written with plain
// arrays, GCC vectorised it across rows and columns at once and spent the time in shuffles
// (132 ms a pass of 8 candidates over 1M x 32 rows on the 2-core VM). Each dot product is a
// sequential sum over the columns in double, as the GPU pass; ‖x‖² is the driver's (b.xsq); the
// potentials add up row by row in order, as before. Then candidate_block's
// d_ij = max(0, −2 x·c + ‖x‖² + ‖c‖²).
template <int M>
struct dvec {
  typedef double type __attribute__((vector_size(M * sizeof(double)), aligned(sizeof(double))));
};

template <class T, int M, int R>
inline __attribute__((always_inline)) void few_rows(const T* X, std::int64_t ldx, std::int64_t i, std::int64_t d,
                                                    const double* Ct, typename dvec<M>::type (&acc)[R]) {
  using V = typename dvec<M>::type;
  for (int r = 0; r < R; ++r) acc[r] = V{};
  for (std::int64_t q = 0; q < d; ++q) {
    const V c = *reinterpret_cast<const V*>(Ct + q * M);
    for (int r = 0; r < R; ++r) acc[r] += static_cast<double>(X[(i + r) * ldx + q]) * c;
  }
}

template <class T, int M>
inline __attribute__((always_inline)) void few_candidates_impl(const T* X, std::int64_t ldx, std::int64_t rows,
                                                               std::int64_t d, const double* Ct, const double* xsq,
                                                               const double* csq, int m, const double* w,
                                                               double* closest, bool update, double* pot,
                                                               double* keep, std::int64_t ldk) {
  using V = typename dvec<M>::type;
  constexpr int R = 4;
  // The epilogue works on the M lanes at once too (as scalars per candidate it took half the time):
  // the lanes past m get ‖c‖² = +inf, so their distance is +inf and never the minimum; their
  // potentials are never read.
  V cs, potv = V{};
  for (int j = 0; j < M; ++j) cs[j] = j < m ? csq[j] : std::numeric_limits<double>::infinity();
  auto finish = [&](std::int64_t i, const V& acc) {
    V dij = -2.0 * acc + xsq[i] + cs;  // candidate_block's order of additions
    dij = dij > 0.0 ? dij : V{};
    const double cl = closest[i];
    if (pot) potv += (w ? w[i] : 1.0) * (dij < cl ? dij : cl);  // min(closest_i, d_ij), row by row
    if (keep)
      for (int j = 0; j < m; ++j) keep[j * ldk + i] = dij[j];
    if (update) {
      double best = cl;
      for (int j = 0; j < m; ++j) best = std::min(best, static_cast<double>(dij[j]));
      closest[i] = best;
    }
  };
  std::int64_t i = 0;
  for (; i + R <= rows; i += R) {
    V acc[R];
    few_rows<T, M, R>(X, ldx, i, d, Ct, acc);
    for (int r = 0; r < R; ++r) finish(i + r, acc[r]);
  }
  for (; i < rows; ++i) {
    V acc[1];
    few_rows<T, M, 1>(X, ldx, i, d, Ct, acc);
    finish(i, acc[0]);
  }
  if (pot)
    for (int j = 0; j < m; ++j) pot[j] += potv[j];
}

#define SPMDLEARN_FEW_CANDIDATES(T, M)                                                                         \
  SPMDLEARN_KMEANS_CLONES void few_candidates_##M(const T* X, std::int64_t ldx, std::int64_t rows,             \
                                                  std::int64_t d, const double* Ct, const double* xsq,         \
                                                  const double* csq, int m, const double* w, double* closest,  \
                                                  bool update, double* pot, double* keep, std::int64_t ldk) {  \
    few_candidates_impl<T, M>(X, ldx, rows, d, Ct, xsq, csq, m, w, closest, update, pot, keep, ldk);           \
  }
SPMDLEARN_FEW_CANDIDATES(double, 4)
SPMDLEARN_FEW_CANDIDATES(double, 8)
SPMDLEARN_FEW_CANDIDATES(double, 16)
SPMDLEARN_FEW_CANDIDATES(float, 4)
SPMDLEARN_FEW_CANDIDATES(float, 8)
SPMDLEARN_FEW_CANDIDATES(float, 16)
#undef SPMDLEARN_FEW_CANDIDATES

// The vector width (doubles) for m <= 16 candidates: 4, 8 or 16.
int few_width(std::int64_t m) { return m <= 4 ? 4 : m <= 8 ? 8 : 16; }

// Host rows, m <= 16 candidates: pot[j] += Σ_i w_i min(closest_i, d_ij) (pot non-null) and/or
// closest_i <- min(closest_i, min_j d_ij) (update), and d_ij into keep[j n + i] if non-null.
// xsq: ‖x_i‖² of the rows. `threads` workers take contiguous row ranges; their potentials are
// added in thread order (deterministic for a given thread count, as the Lloyd step).
template <class T>
void few_candidates(matrix_view<const T> X, std::span<const double> xsq, std::span<const double> candidates,
                    std::int64_t m, const double* w, double* closest, bool update, double* pot,
                    double* keep, int threads) {
  const std::int64_t n = X.rows, d = X.cols;
  if (static_cast<std::int64_t>(xsq.size()) != n)
    throw invalid_argument("k-means++ candidates: the rows' squared norms are missing");
  const int M = few_width(m);
  std::vector<double> Ct(d * M, 0.0);
  for (std::int64_t j = 0; j < m; ++j)
    for (std::int64_t q = 0; q < d; ++q) Ct[q * M + j] = candidates[j * d + q];
  const std::vector<double> csq = squared_norms(candidates, m, d);
  const int mm = static_cast<int>(m);
  constexpr std::int64_t chunk = 4096;  // rows: whole chunks a thread (and >= 4 chunks a thread below)
  const int nt = static_cast<int>(std::clamp<std::int64_t>(n / (4 * chunk), 1, std::max(threads, 1)));
  using pass = void (*)(const T*, std::int64_t, std::int64_t, std::int64_t, const double*, const double*,
                        const double*, int, const double*, double*, bool, double*, double*, std::int64_t);
  const pass run = M == 4 ? pass(few_candidates_4) : M == 8 ? pass(few_candidates_8) : pass(few_candidates_16);
  std::vector<double> parts(pot ? static_cast<std::size_t>(nt * m) : 0, 0.0);
  parallel_chunks(n, chunk, nt, [&](int t, std::int64_t lo, std::int64_t hi) {
    run(X.data + lo * X.stride(), X.stride(), hi - lo, d, Ct.data(), xsq.data() + lo, csq.data(), mm, w ? w + lo : nullptr,
        closest + lo, update, pot ? parts.data() + t * m : nullptr,
        keep ? keep + lo : nullptr, n);  // keep: candidate-major, column stride n
  });
  if (pot)
    for (int t = 0; t < nt; ++t)
      for (std::int64_t j = 0; j < m; ++j) pot[j] += parts[t * m + j];
}

}  // namespace

// Calls fn(i0, rows, D) for the chunks of X, D (rows x m) holding the chunk's squared distances to
// the m candidates.
template <class T, class F>
void for_candidate_blocks(matrix_view<const T> X, std::span<const double> xsq,
                          std::span<const double> candidates, std::int64_t m, F&& fn) {
  const std::int64_t n = X.rows, d = X.cols;
  const std::vector<double> csq = squared_norms(candidates, m, d);
  const std::int64_t B = chunk_rows_for(m, sizeof(double));
  std::vector<double> xbuf(std::is_same_v<T, double> ? 0 : B * d), D(B * m);
  for (std::int64_t i0 = 0; i0 < n; i0 += B) {
    const std::int64_t rows = std::min(B, n - i0);
    candidate_block(X, xsq, candidates.data(), csq, m, i0, rows, xbuf, D);
    fn(i0, rows, D);
  }
}

template <class T>
std::vector<double> candidate_potentials_local(matrix_view<const T> X, std::span<const double> xsq,
                                               std::span<const double> w,
                                               std::span<const double> candidates, std::int64_t m,
                                               std::span<const double> closest, candidate_distances* keep,
                                               int threads) {
  std::vector<double> pot(m, 0.0);
  if (keep) keep->m = 0;  // the buffer stays: the next step reuses it (no 8·n·m bytes of page faults a step)
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda) {
    cuda::candidate_pass<T>(X.data, X.rows, X.cols, X.stride(), w.empty() ? nullptr : w.data(),
                            std::vector<double>(candidates.begin(), candidates.end()), m,
                            const_cast<double*>(closest.data()), pot.data(), false);  // read only (device)
    return pot;
  }
#endif
  if (m <= 16) {
    const bool kept = keep && m * static_cast<std::int64_t>(sizeof(double)) <= X.cols * static_cast<std::int64_t>(sizeof(T));
    if (kept) {
      keep->d.resize(X.rows * m);
      keep->m = m;
    }
    few_candidates(X, xsq, candidates, m, w.empty() ? nullptr : w.data(), const_cast<double*>(closest.data()), false,
                   pot.data(), kept ? keep->d.data() : nullptr, threads);
    return pot;
  }
  for_candidate_blocks(X, xsq, candidates, m, [&](std::int64_t i0, std::int64_t rows, const std::vector<double>& D) {
    for (std::int64_t i = 0; i < rows; ++i) {
      const double wi = w.empty() ? 1.0 : w[i0 + i];
      for (std::int64_t j = 0; j < m; ++j) pot[j] += wi * std::min(closest[i0 + i], D[i * m + j]);
    }
  });
  return pot;
}

template <class T>
void update_closest_local(matrix_view<const T> X, std::span<const double> xsq,
                          std::span<const double> candidates, std::int64_t m,
                          std::span<double> closest, int threads) {
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda) {
    cuda::candidate_pass<T>(X.data, X.rows, X.cols, X.stride(), nullptr,
                            std::vector<double>(candidates.begin(), candidates.end()), m, closest.data(), nullptr, true);
    return;
  }
#endif
  if (m <= 16) {
    few_candidates(X, xsq, candidates, m, nullptr, closest.data(), true, nullptr, nullptr, threads);
    return;
  }
  for_candidate_blocks(X, xsq, candidates, m, [&](std::int64_t i0, std::int64_t rows, const std::vector<double>& D) {
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < m; ++j) closest[i0 + i] = std::min(closest[i0 + i], D[i * m + j]);
  });
}

template <class T>
double inertia_local(matrix_view<const T> X, std::span<const double> w,
                     std::span<const double> centers, std::span<const std::int32_t> labels,
                     std::span<double> counts) {
  const std::int64_t d = X.cols;
  double total = 0.0;
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda)
    return cuda::own_inertia<T>(X.data, X.rows, d, X.stride(), std::vector<double>(centers.begin(), centers.end()),
                                static_cast<std::int64_t>(counts.size()), labels.data(), w.empty() ? nullptr : w.data(),
                                counts.data());
#endif
  for (std::int64_t i = 0; i < X.rows; ++i) {
    const double s = squared_distance(X.row(i), centers.data() + labels[i] * d, d);
    total += (w.empty() ? 1.0 : w[i]) * s;
    counts[labels[i]] += 1.0;
  }
  return total;
}

template <class T>
std::vector<double> distances_local(matrix_view<const T> X, std::span<const double> centers,
                                    std::int64_t k) {
  const std::int64_t n = X.rows, d = X.cols;
  if (X.device == device_kind::cuda)
    throw spmdlearn::invalid_argument("KMeans.transform: device rows take the Python layer's path (cupy/torch)");
  std::vector<double> out(n * k), xsq(n, 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t q = 0; q < d; ++q) xsq[i] += static_cast<double>(X(i, q)) * static_cast<double>(X(i, q));
  for_candidate_blocks(X, xsq, centers, k, [&](std::int64_t i0, std::int64_t rows, const std::vector<double>& D) {
    for (std::int64_t q = 0; q < rows * k; ++q) out[i0 * k + q] = std::sqrt(D[q]);
  });
  return out;
}

template <class T>
void copy_row(matrix_view<const T> X, std::int64_t i, double* out) {
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda) {
    cuda::copy_row<T>(X.data, i, X.cols, X.stride(), out);
    return;
  }
#endif
  for (std::int64_t q = 0; q < X.cols; ++q) out[q] = static_cast<double>(X(i, q));
}

// ---- row_labels, row_weights --------------------------------------------------------------------
template <class T>
row_labels::row_labels(matrix_view<const T> X) : n_(X.rows) {
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda && n_ > 0) {
    device_ = std::shared_ptr<std::int32_t>(cuda::alloc_labels(X.data, n_), [](std::int32_t* p) { cuda::free_device(p); });
    return;
  }
#endif
  host_.assign(static_cast<std::size_t>(n_), -1);
}

std::vector<std::int32_t> row_labels::host() const {
  if (!device_) return host_;
  std::vector<std::int32_t> h(static_cast<std::size_t>(n_));
#ifdef SPMDLEARN_WITH_CUDA
  cuda::copy_device_to_host(h.data(), device_.get(), h.size() * sizeof(std::int32_t));
#endif
  return h;
}

std::int32_t row_labels::at(std::int64_t i) const {
  if (!device_) return host_[i];
  std::int32_t v = -1;
#ifdef SPMDLEARN_WITH_CUDA
  cuda::copy_device_to_host(&v, device_.get() + i, sizeof(v));
#endif
  return v;
}

template <class T>
row_values::row_values(matrix_view<const T> X, const std::vector<double>& host)
    : n_(static_cast<std::int64_t>(host.size())) {
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda && n_ > 0) {
    device_ = std::shared_ptr<double>(cuda::upload_doubles(X.data, host.data(), n_), [](double* p) { cuda::free_device(p); });
    return;
  }
#endif
  host_ = host;
}

template <class T>
row_values::row_values(matrix_view<const T> X, double fill) : n_(X.rows) {
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda && n_ > 0) {
    device_ = std::shared_ptr<double>(cuda::filled_doubles(X.data, n_, fill), [](double* p) { cuda::free_device(p); });
    return;
  }
#endif
  host_.assign(static_cast<std::size_t>(n_), fill);
}

std::vector<double> row_values::host() const {
  if (!device_) return host_;
  std::vector<double> h(static_cast<std::size_t>(n_));
#ifdef SPMDLEARN_WITH_CUDA
  cuda::copy_device_to_host(h.data(), device_.get(), h.size() * sizeof(double));
#endif
  return h;
}

mass_index::mass_index(std::vector<double> host_cumulative)
    : n_(static_cast<std::int64_t>(host_cumulative.size())),
      total_(host_cumulative.empty() ? 0.0 : host_cumulative.back()),
      cum_(std::move(host_cumulative)) {}

template <class T>
void mass_index::rebuild(matrix_view<const T> X, std::span<const double> w, std::span<const double> closest) {
  n_ = X.rows;
#ifdef SPMDLEARN_WITH_CUDA
  if (X.device == device_kind::cuda) {
    device_ = true;
    like_ = X.data;
    w_ = w.empty() ? nullptr : w.data();
    closest_ = closest.empty() ? nullptr : closest.data();
    if (n_ > 0) cum_ = cuda::mass_tiles(X.data, n_, w_, closest_);
    double s = 0.0;
    for (double& v : cum_) v = (s += v);
    total_ = s;
    return;
  }
#endif
  cum_.resize(static_cast<std::size_t>(n_));
  double s = 0.0;
  for (std::int64_t i = 0; i < n_; ++i)
    cum_[i] = (s += (w.empty() ? 1.0 : w[i]) * (closest.empty() ? 1.0 : closest[i]));
  total_ = s;
}

std::vector<std::int64_t> mass_index::find(const std::vector<double>& u, bool right) const {
  std::vector<std::int64_t> out(u.size(), n_ - 1);
  if (n_ == 0) return out;
  for (std::size_t j = 0; j < u.size(); ++j) {
    auto it = right ? std::upper_bound(cum_.begin(), cum_.end(), u[j]) : std::lower_bound(cum_.begin(), cum_.end(), u[j]);
    out[j] = std::min<std::int64_t>(it - cum_.begin(), static_cast<std::int64_t>(cum_.size()) - 1);
  }
#ifdef SPMDLEARN_WITH_CUDA
  if (device_) {
    // out[j] is the tile; the row inside it comes from a scan on the GPU from the tile's start.
    std::vector<double> start(u.size());
    for (std::size_t j = 0; j < u.size(); ++j) start[j] = out[j] > 0 ? cum_[out[j] - 1] : 0.0;
    return cuda::mass_find(like_, n_, w_, closest_, out, start, u, right);
  }
#endif
  return out;
}

bool take_kept_candidate(const candidate_distances& kept, std::int64_t j, std::span<double> closest) {
  if (kept.m == 0) return false;
  const std::int64_t n = static_cast<std::int64_t>(closest.size());
  const double* col = kept.d.data() + j * n;
  for (std::int64_t i = 0; i < n; ++i) closest[i] = std::min(closest[i], col[i]);
  return true;
}

#define SPMDLEARN_KMEANS_LOCAL(T)                                                                  \
  template lloyd_partial lloyd_step_local<T>(matrix_view<const T>, std::span<const double>,        \
                                             std::span<const double>, std::span<const double>,     \
                                             std::int64_t, std::span<std::int32_t>, bool, int);    \
  template std::vector<std::pair<double, std::int64_t>> farthest_local<T>(                         \
      matrix_view<const T>, std::span<const double>, std::span<const std::int32_t>, std::int64_t); \
  template std::vector<double> candidate_potentials_local<T>(                                      \
      matrix_view<const T>, std::span<const double>, std::span<const double>,                      \
      std::span<const double>, std::int64_t, std::span<const double>, candidate_distances*, int);  \
  template void update_closest_local<T>(matrix_view<const T>, std::span<const double>,             \
                                        std::span<const double>, std::int64_t, std::span<double>,  \
                                        int);                                                      \
  template double inertia_local<T>(matrix_view<const T>, std::span<const double>,                  \
                                   std::span<const double>, std::span<const std::int32_t>,         \
                                   std::span<double>);                                             \
  template std::vector<double> distances_local<T>(matrix_view<const T>, std::span<const double>,   \
                                                  std::int64_t);                                   \
  template void copy_row<T>(matrix_view<const T>, std::int64_t, double*);                          \
  template row_labels::row_labels(matrix_view<const T>);                                           \
  template row_values::row_values(matrix_view<const T>, const std::vector<double>&);                \
  template row_values::row_values(matrix_view<const T>, double);                                   \
  template void mass_index::rebuild(matrix_view<const T>, std::span<const double>, std::span<const double>);
SPMDLEARN_KMEANS_LOCAL(float)
SPMDLEARN_KMEANS_LOCAL(double)
#undef SPMDLEARN_KMEANS_LOCAL

}  // namespace spmdlearn::cluster::detail
