// Distributed k-means: validation, global mean/variance, the initialisations and Lloyd's loop.
// Every decision is taken from replicated numbers (allreduced or allgathered), so all ranks run
// the same sequence of collectives. The rows are touched only through kmeans_local.hpp.
// See include/spmdlearn/cluster.hpp.
#include "spmdlearn/cluster.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <random>
#include <string>

#include <memory>

#include "cluster/kmeans_local.hpp"
#ifdef SPMDLEARN_WITH_CUDA
#include "backend/cuda/kmeans_cuda.hpp"
#include "backend/cuda/memory.hpp"
#include "backend/cuda/moments_cuda.hpp"
#endif
#include "core/merge.hpp"
#include "core/threads.hpp"
#include "core/validate.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"

namespace spmdlearn::cluster {

namespace {

using detail::lloyd_partial;

// The local block, centred on the global mean, with everything the runs share.
template <class T>
struct block {
  std::vector<T> xc;                    // n x d, centred (in the precision of X, as scikit-learn)
  std::shared_ptr<T> xc_device;         // the same on X's GPU when X is there (then xc is empty)
  matrix_view<const T> X;               // view of xc
  std::vector<double> w;                // n weights, empty: all 1
  detail::row_values w_rows;            // the same where the rows are (X's GPU for a device block)
  std::vector<double> xsq;              // ‖x_c‖² per row
  std::vector<std::int64_t> rank_rows;  // rows of every rank
  std::int64_t offset = 0;              // global id of local row 0
  std::int64_t n_total = 0;
  std::int64_t d = 0;
  int threads = 1;
};

double weight_of(const std::vector<double>& w, std::int64_t i) { return w.empty() ? 1.0 : w[i]; }

// Where values fall in the global cumulative sum of per-row masses (each rank holds the cumulative
// sums `cum` of its own rows): side "left" (first row with cumsum >= v, numpy's searchsorted
// default, k-means++) or "right" (first with cumsum > v, numpy's choice). Values beyond the total
// go to the last row of the last rank holding rows. One allgather.
struct located {
  int owner = -1;
  std::int64_t local = -1;  // valid on the owner only
};
std::vector<located> locate(const comm& c, const detail::mass_index& cum, const std::vector<double>& values,
                            bool right, const std::vector<std::int64_t>& rank_rows) {
  const double mine = cum.total();
  const std::vector<double> totals = c.allgather<double>(std::span<const double>(&mine, 1));
  const int p = c.size(), me = c.rank();
  std::vector<double> prefix(p, 0.0);
  for (int r = 1; r < p; ++r) prefix[r] = prefix[r - 1] + totals[r - 1];
  std::vector<located> out(values.size());
  std::vector<std::size_t> mine_at;  // the values this rank owns, searched in one call
  std::vector<double> local_u;
  for (std::size_t j = 0; j < values.size(); ++j) {
    const double v = values[j];
    int owner = -1, last = -1;
    for (int r = 0; r < p; ++r) {
      if (rank_rows[r] == 0) continue;
      last = r;
      const double end = prefix[r] + totals[r];
      if (right ? end > v : end >= v) {
        owner = r;
        break;
      }
    }
    located& o = out[j];
    if (owner < 0) {
      o.owner = last;
      if (me == last) o.local = rank_rows[last] - 1;
      continue;
    }
    o.owner = owner;
    if (me == owner) {
      mine_at.push_back(j);
      local_u.push_back(v - prefix[owner]);
    }
  }
  if (!mine_at.empty()) {
    const std::vector<std::int64_t> rows = cum.find(local_u, right);
    for (std::size_t q = 0; q < mine_at.size(); ++q)
      out[mine_at[q]].local = std::min<std::int64_t>(rows[q], rank_rows[me] - 1);
  }
  return out;
}
std::vector<located> locate(const comm& c, const std::vector<double>& cum, const std::vector<double>& values,
                            bool right, const std::vector<std::int64_t>& rank_rows) {
  return locate(c, detail::mass_index(cum), values, right, rank_rows);
}

// The rows at `at` (m x d, centred, double) and their global ids (-1 where `usable` said no),
// contributed by their owners through one allreduce.
template <class T>
std::vector<double> fetch_rows(const comm& c, const block<T>& b, const std::vector<located>& at,
                               std::vector<std::int64_t>* ids = nullptr,
                               const std::vector<double>* usable = nullptr) {
  const std::int64_t d = b.d, m = static_cast<std::int64_t>(at.size());
  std::vector<double> buf(m * (d + 1), 0.0);
  for (std::int64_t j = 0; j < m; ++j) {
    if (at[j].owner != c.rank()) continue;
    const std::int64_t i = at[j].local;
    detail::copy_row(b.X, i, buf.data() + j * (d + 1));
    if (!usable || (*usable)[i] > 0.0) buf[j * (d + 1) + d] = static_cast<double>(b.offset + i + 1);
  }
  c.allreduce<double>(buf, reduce_op::sum);
  std::vector<double> rows(m * d);
  if (ids) ids->assign(m, -1);
  for (std::int64_t j = 0; j < m; ++j) {
    std::copy_n(buf.begin() + j * (d + 1), d, rows.begin() + j * d);
    if (ids) (*ids)[j] = static_cast<std::int64_t>(buf[j * (d + 1) + d]) - 1;
  }
  return rows;
}

double uniform01(std::mt19937_64& rng) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }

std::vector<double> cumulative(std::int64_t n, const std::vector<double>& mass) {
  std::vector<double> cum(n);
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) cum[i] = (s += mass[i]);
  return cum;
}

// scikit-learn's greedy k-means++ (_kmeans_plusplus) over all ranks' rows, weighted.
template <class T>
std::vector<double> kmeans_plusplus(const comm& c, const block<T>& b, std::int64_t k,
                                    std::mt19937_64& rng) {
  const std::int64_t n = b.X.rows, d = b.d;
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  std::vector<double> centers(k * d);
  std::vector<double> ones;
  const std::vector<double>& w = b.w.empty() ? (ones.assign(n, 1.0), ones) : b.w;
  // First centre: a draw with probabilities w / Σw (numpy's choice: side "right").
  {
    const std::vector<double> cum = cumulative(n, w);
    double local = cum.empty() ? 0.0 : cum.back();
    const double total = c.allreduce_value(local, reduce_op::sum);
    const auto at = locate(c, cum, {uniform01(rng) * total}, true, b.rank_rows);
    const std::vector<double> row = fetch_rows(c, b, at);
    std::copy(row.begin(), row.end(), centers.begin());
  }
  // closest_i and the weights live where the rows are (on the GPU for a device block), so a
  // step moves only the candidates and their potentials.
  detail::row_values closest(b.X, std::numeric_limits<double>::infinity());
  detail::update_closest_local(b.X, b.xsq, std::span<const double>(centers.data(), d), 1, closest.span(), b.threads);
  detail::mass_index masses(b.X, b.w_rows.span(), closest.span());
  double pot = c.allreduce_value(masses.total(), reduce_op::sum);
  detail::candidate_distances kept;  // host rows: the last pass's distances (no second pass over X)
  for (std::int64_t cc = 1; cc < k; ++cc) {
    std::vector<double> values(trials);
    for (auto& v : values) v = uniform01(rng) * pot;
    if (cc > 1) masses.rebuild(b.X, b.w_rows.span(), closest.span());
    const auto at = locate(c, masses, values, false, b.rank_rows);
    const std::vector<double> cand = fetch_rows(c, b, at);
    std::vector<double> pots =
        detail::candidate_potentials_local(b.X, b.xsq, b.w_rows.span(), cand, trials, closest.span(), &kept, b.threads);
    c.allreduce<double>(pots, reduce_op::sum);
    const std::int64_t best = std::min_element(pots.begin(), pots.end()) - pots.begin();
    pot = pots[best];
    const std::span<const double> chosen(cand.data() + best * d, d);
    if (!detail::take_kept_candidate(kept, best, closest.span()))
      detail::update_closest_local(b.X, b.xsq, chosen, 1, closest.span(), b.threads);
    std::copy(chosen.begin(), chosen.end(), centers.begin() + cc * d);
  }
  return centers;
}

// k distinct rows, probabilities proportional to w, without replacement (numpy's
// choice(replace=False, p=w/Σw): draw the missing number at once, keep first occurrences of rows
// not yet taken, repeat).
template <class T>
std::vector<double> random_rows(const comm& c, const block<T>& b, std::int64_t k, std::mt19937_64& rng) {
  const std::int64_t n = b.X.rows, d = b.d;
  std::vector<double> p = b.w.empty() ? std::vector<double>(n, 1.0) : b.w;
  double positive = 0.0;
  for (double v : p) positive += v > 0.0 ? 1.0 : 0.0;
  if (c.allreduce_value(positive, reduce_op::sum) < static_cast<double>(k))
    throw invalid_argument("KMeans(init='random'): fewer rows with a non-zero sample_weight than n_clusters=" +
                           std::to_string(k) + " (Fewer non-zero entries in p than size)");
  std::vector<double> centers;
  std::vector<std::int64_t> taken;
  for (int round = 0; static_cast<std::int64_t>(taken.size()) < k; ++round) {
    if (round > 10000) throw runtime_error("KMeans(init='random'): could not draw distinct rows");
    std::vector<double> values(k - taken.size());
    for (auto& v : values) v = uniform01(rng);
    const std::vector<double> cum = cumulative(n, p);
    double local = cum.empty() ? 0.0 : cum.back();
    const double total = c.allreduce_value(local, reduce_op::sum);
    for (auto& v : values) v *= total;
    const auto at = locate(c, cum, values, true, b.rank_rows);
    std::vector<std::int64_t> ids;
    const std::vector<double> rows = fetch_rows(c, b, at, &ids, &p);
    for (std::size_t j = 0; j < at.size(); ++j) {
      if (ids[j] < 0 || std::find(taken.begin(), taken.end(), ids[j]) != taken.end()) continue;
      taken.push_back(ids[j]);
      centers.insert(centers.end(), rows.begin() + j * d, rows.begin() + (j + 1) * d);
      if (at[j].owner == c.rank()) p[at[j].local] = 0.0;
    }
  }
  return centers;
}

// A uniform number in [0, 1) from (key, global row id): the same for a row whatever rank holds it.
double hashed_uniform(std::uint64_t key, std::uint64_t id) {
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return static_cast<double>(mix(key ^ mix(id)) >> 11) * 0x1.0p-53;
}

// k-means|| (Bahmani, Moseley, Vattani, Kumar, Vassilvitskii 2012): oversampling l = 2k, 5 rounds,
// then weighted greedy k-means++ on the candidates (replicated on every rank).
template <class T>
std::vector<double> kmeans_parallel(const comm& c, const block<T>& b, std::int64_t k, std::mt19937_64& rng) {
  const std::int64_t n = b.X.rows, d = b.d;
  const double l = 2.0 * static_cast<double>(k);
  std::vector<double> ones;
  const std::vector<double>& w = b.w.empty() ? (ones.assign(n, 1.0), ones) : b.w;
  std::vector<double> cand;
  {
    const std::vector<double> cum = cumulative(n, w);
    double local = cum.empty() ? 0.0 : cum.back();
    const double total = c.allreduce_value(local, reduce_op::sum);
    cand = fetch_rows(c, b, locate(c, cum, {uniform01(rng) * total}, true, b.rank_rows));
  }
  detail::row_values closest_rows(b.X, std::numeric_limits<double>::infinity());
  detail::update_closest_local(b.X, b.xsq, cand, 1, closest_rows.span(), b.threads);
  for (int round = 0; round < 5; ++round) {
    const std::vector<double> closest = closest_rows.host();  // the draws below read every row
    double psi = 0.0;
    for (std::int64_t i = 0; i < n; ++i) psi += w[i] * closest[i];
    psi = c.allreduce_value(psi, reduce_op::sum);
    const std::uint64_t key = rng();
    if (!(psi > 0.0)) break;
    std::vector<double> mine;
    for (std::int64_t i = 0; i < n; ++i)
      if (hashed_uniform(key, static_cast<std::uint64_t>(b.offset + i)) * psi < l * w[i] * closest[i]) {
        mine.resize(mine.size() + d);
        detail::copy_row(b.X, i, mine.data() + mine.size() - d);
      }
    const std::int64_t count = static_cast<std::int64_t>(mine.size()) / std::max<std::int64_t>(d, 1);
    const std::vector<std::int64_t> counts = c.allgather<std::int64_t>(std::span<const std::int64_t>(&count, 1));
    const std::int64_t most = *std::max_element(counts.begin(), counts.end());
    if (most == 0) continue;
    mine.resize(most * d, 0.0);
    const std::vector<double> all = c.allgather<double>(mine);
    std::vector<double> fresh;
    for (int r = 0; r < c.size(); ++r)
      fresh.insert(fresh.end(), all.begin() + r * most * d, all.begin() + (r * most + counts[r]) * d);
    const std::int64_t m = static_cast<std::int64_t>(fresh.size()) / d;
    detail::update_closest_local(b.X, b.xsq, fresh, m, closest_rows.span());
    cand.insert(cand.end(), fresh.begin(), fresh.end());
  }
  // Weight of each candidate: the weight of the rows nearest to it.
  const std::int64_t m = static_cast<std::int64_t>(cand.size()) / d;
  detail::row_labels labels(b.X);
  lloyd_partial part = detail::lloyd_step_local(b.X, b.w_rows.span(), {}, cand, m, labels.span(), true, b.threads);
  c.allreduce<double>(part.weights, reduce_op::sum);
  // Weighted greedy k-means++ on the candidates, the same on every rank.
  block<double> cb;
  cb.xc = cand;
  cb.X = matrix_view<const double>(cb.xc.data(), m, d);
  cb.w = part.weights;
  cb.w_rows = detail::row_values(cb.X, cb.w);
  cb.xsq.assign(m, 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t q = 0; q < d; ++q) cb.xsq[i] += cand[i * d + q] * cand[i * d + q];
  cb.rank_rows = {m};
  cb.n_total = m;
  cb.d = d;
  return kmeans_plusplus(*make_self_comm(), cb, k, rng);
}

// scikit-learn's _relocate_empty_clusters_dense over all ranks: the clusters with zero weight,
// in increasing order, take the rows farthest from their own (old) centre, farthest first.
template <class T>
void relocate_empty(const comm& c, const block<T>& b, const std::vector<double>& old_centers,
                    const detail::row_labels& labels, std::vector<double>& sums,
                    std::vector<double>& weights, std::int64_t k) {
  const std::int64_t d = b.d;
  std::vector<std::int64_t> empty;
  for (std::int64_t j = 0; j < k; ++j)
    if (weights[j] == 0.0) empty.push_back(j);
  const std::int64_t m = static_cast<std::int64_t>(empty.size());
  if (m == 0) return;
  const auto far = detail::farthest_local(b.X, old_centers, labels.span(), m);
  std::vector<double> dist(m, -1.0);
  std::vector<std::int64_t> ids(m, -1);
  for (std::size_t j = 0; j < far.size(); ++j) {
    dist[j] = far[j].first;
    ids[j] = b.offset + far[j].second;
  }
  const std::vector<double> all_dist = c.allgather<double>(dist);
  const std::vector<std::int64_t> all_ids = c.allgather<std::int64_t>(ids);
  std::vector<std::pair<double, std::int64_t>> pool;
  for (std::size_t j = 0; j < all_ids.size(); ++j)
    if (all_ids[j] >= 0) pool.emplace_back(all_dist[j], all_ids[j]);
  std::sort(pool.begin(), pool.end(), [](const auto& a, const auto& z) {
    return a.first > z.first || (a.first == z.first && a.second < z.second);
  });
  if (pool.empty() || pool[0].first == 0.0) return;  // more clusters than distinct rows
  pool.resize(std::min<std::size_t>(pool.size(), m));
  // The chosen rows, their weights and labels, from their owners (one allreduce).
  const std::int64_t width = d + 2;
  std::vector<double> buf(m * width, 0.0);
  for (std::size_t j = 0; j < pool.size(); ++j) {
    const std::int64_t i = pool[j].second - b.offset;
    if (i < 0 || i >= b.X.rows) continue;
    detail::copy_row(b.X, i, buf.data() + j * width);
    buf[j * width + d] = weight_of(b.w, i);
    buf[j * width + d + 1] = static_cast<double>(labels.at(i));
  }
  c.allreduce<double>(buf, reduce_op::sum);
  for (std::size_t j = 0; j < pool.size(); ++j) {
    const std::int64_t to = empty[j];
    const double* x = buf.data() + j * width;
    const double wt = x[d];
    const std::int64_t from = static_cast<std::int64_t>(x[d + 1]);
    for (std::int64_t q = 0; q < d; ++q) {
      sums[from * d + q] -= x[q] * wt;
      sums[to * d + q] = x[q] * wt;
    }
    weights[to] = wt;
    weights[from] -= wt;
  }
}

// scikit-learn's _average_centers, in place on the sums: an empty cluster takes the row of the
// heaviest cluster as it is at that moment of the loop (already averaged when it comes earlier).
void average_centers(std::vector<double>& sums, const std::vector<double>& weights, std::int64_t k, std::int64_t d) {
  const std::int64_t heaviest = std::max_element(weights.begin(), weights.end()) - weights.begin();
  for (std::int64_t j = 0; j < k; ++j) {
    if (weights[j] > 0.0) {
      const double alpha = 1.0 / weights[j];
      for (std::int64_t q = 0; q < d; ++q) sums[j * d + q] *= alpha;
    } else {
      for (std::int64_t q = 0; q < d; ++q) sums[j * d + q] = sums[heaviest * d + q];
    }
  }
}

struct run_result {
  std::vector<double> centers;
  detail::row_labels labels;  // where the rows are
  double inertia = 0.0;
  std::int64_t n_iter = 0;
  std::int64_t n_distinct = 0;
};

// scikit-learn's _kmeans_single_lloyd over all ranks.
template <class T>
run_result lloyd(const comm& c, const block<T>& b, std::vector<double> centers, std::int64_t k,
                 const kmeans_params& prm, double tol) {
  const std::int64_t d = b.d;
  const bool talk = prm.verbose > 0 && c.rank() == 0;
  run_result out;
  out.labels = detail::row_labels(b.X);
  bool strict = false;
  int it = 0;
  bool stopped = false;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<double> buf(k * d + k + 2);
  for (it = 0; it < prm.max_iter; ++it) {
    lloyd_partial part = detail::lloyd_step_local(b.X, b.w_rows.span(),
                                                  prm.verbose > 0 ? std::span<const double>(b.xsq) : std::span<const double>(),
                                                  centers, k, out.labels.span(), true, b.threads);
    // The one allreduce of the iteration.
    std::copy(part.sums.begin(), part.sums.end(), buf.begin());
    std::copy(part.weights.begin(), part.weights.end(), buf.begin() + k * d);
    buf[k * d + k] = static_cast<double>(part.changed);
    buf[k * d + k + 1] = part.inertia;
    c.allreduce<double>(buf, reduce_op::sum);
    std::vector<double> sums(buf.begin(), buf.begin() + k * d);
    std::vector<double> weights(buf.begin() + k * d, buf.begin() + k * d + k);
    const double changed = buf[k * d + k], inertia = buf[k * d + k + 1];
    relocate_empty(c, b, centers, out.labels, sums, weights, k);
    average_centers(sums, weights, k, d);
    double shift_tot = 0.0;
    for (std::int64_t j = 0; j < k; ++j) {
      double s = 0.0;
      for (std::int64_t q = 0; q < d; ++q) {
        const double t = sums[j * d + q] - centers[j * d + q];
        s += t * t;
      }
      const double shift = std::sqrt(s);
      shift_tot += shift * shift;
    }
    centers.swap(sums);
    if (talk) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("Iteration %d, inertia %.10g, center shift %.6g, %.3f s\n", it, inertia, shift_tot, secs);
    }
    if (changed == 0.0) {
      if (talk) std::printf("Converged at iteration %d: strict convergence.\n", it);
      strict = stopped = true;
      break;
    }
    if (shift_tot <= tol) {
      if (talk) std::printf("Converged at iteration %d: center shift %g within tolerance %g.\n", it, shift_tot, tol);
      stopped = true;
      break;
    }
  }
  if (talk) std::fflush(stdout);
  if (!strict) detail::lloyd_step_local(b.X, b.w_rows.span(), {}, centers, k, out.labels.span(), false, b.threads);
  std::vector<double> tail(k + 1, 0.0);
  tail[0] = detail::inertia_local(b.X, b.w_rows.span(), centers, out.labels.span(), std::span<double>(tail.data() + 1, k));
  c.allreduce<double>(tail, reduce_op::sum);
  out.inertia = tail[0];
  for (std::int64_t j = 0; j < k; ++j) out.n_distinct += tail[j + 1] > 0.0 ? 1 : 0;
  out.centers = std::move(centers);
  out.n_iter = stopped ? it + 1 : prm.max_iter;
  return out;
}

// scikit-learn's _is_same_clustering over all ranks: one mapping label -> label must explain
// every row of every rank.
bool same_clustering(const comm& c, const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b,
                     std::int64_t k) {
  std::vector<std::int64_t> map(k + 1, -1);
  map[k] = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::int64_t& m = map[a[i]];
    if (m == -1) m = b[i];
    else if (m != b[i]) map[k] = 1;
  }
  const std::vector<std::int64_t> all = c.allgather<std::int64_t>(map);
  const int p = c.size();
  for (int r = 0; r < p; ++r)
    if (all[r * (k + 1) + k] != 0) return false;
  for (std::int64_t j = 0; j < k; ++j) {
    std::int64_t v = -1;
    for (int r = 0; r < p; ++r) {
      const std::int64_t m = all[r * (k + 1) + j];
      if (m == -1) continue;
      if (v == -1) v = m;
      else if (v != m) return false;
    }
  }
  return true;
}

// The checks of one rank's block, shared by fit and score; throws for this rank only.
template <class T>
void check_block(const char* what, matrix_view<const T> X, const std::optional<vector_view<const T>>& w) {
  if (X.device == device_kind::cuda) {
    // NaN/inf of device rows: found by the moments pass (kmeans_fit) or the first kernel.
    spmdlearn::detail::check_device_matrix(what, X);
    if (w && w->device != device_kind::cuda)
      throw invalid_argument(std::string(what) + ": X is on a GPU, so sample_weight must be too");
    if (w && w->size != X.rows)
      throw invalid_argument(std::string(what) + ": sample_weight has " + std::to_string(w->size) +
                             " values for " + std::to_string(X.rows) + " rows");
    return;
  }
  spmdlearn::detail::check_host_matrix(what, X);
  spmdlearn::detail::throw_if_nonfinite("X", X, 0, X.rows);
  spmdlearn::detail::check_sample_weight(what, X.rows, w);
}

// Host copy of sample weights (device weights come from the GPU once per fit).
template <class T>
std::vector<double> host_weights(const std::optional<vector_view<const T>>& w) {
  if (!w) return {};
  if (w->device == device_kind::cuda) {
#ifdef SPMDLEARN_WITH_CUDA
    std::vector<T> h(static_cast<std::size_t>(w->size));
    if (w->size > 0) cuda::copy_device_to_host(h.data(), w->data, h.size() * sizeof(T));
    for (T v : h)
      if (!(v >= T(0)) || !std::isfinite(static_cast<double>(v)))
        throw invalid_argument("sample_weight contains a negative value, NaN or infinity");
    return std::vector<double>(h.begin(), h.end());
#endif
  }
  return std::vector<double>(w->data, w->data + w->size);
}

}  // namespace

template <class T>
kmeans_model kmeans_fit(const comm& c, matrix_view<const T> X, std::optional<vector_view<const T>> w,
                        const kmeans_params& prm, std::span<const double> init_centers) {
  spmdlearn::detail::configure_blas_threads(c);
  const std::int64_t k = prm.n_clusters;
  std::exception_ptr err;
  std::vector<double> dev_mean, dev_m2;  // device rows: their column means and centred sums of squares
  std::vector<double> host_w;
  try {
    check_block("KMeans", X, w);
    host_w = host_weights(w);
#ifdef SPMDLEARN_WITH_CUDA
    if (X.device == device_kind::cuda && X.rows > 0 && X.cols > 0) {
      const auto mo = cuda::column_moments_exact<T>(X.data, X.rows, X.cols, X.stride(), nullptr);  // throws on NaN
      dev_mean = mo.mean;
      dev_m2 = mo.m2;
    }
#endif
    if (k < 1) throw invalid_parameter("KMeans: n_clusters must be >= 1, got " + std::to_string(k));
    if (prm.n_init < 1) throw invalid_parameter("KMeans: n_init must be >= 1, got " + std::to_string(prm.n_init));
    if (prm.max_iter < 1) throw invalid_parameter("KMeans: max_iter must be >= 1, got " + std::to_string(prm.max_iter));
    if (!(prm.tol >= 0.0)) throw invalid_parameter("KMeans: tol must be >= 0");
  } catch (...) {
    err = std::current_exception();
  }
  const auto agreed = agree(c, err,
                            {{"n_features", spmdlearn::detail::declared_features(X)},
                             {"dtype", static_cast<std::int64_t>(dtype_of<T>()), dtype_labels},
                             {"n_clusters", k},
                             {"n_init", prm.n_init},
                             {"max_iter", prm.max_iter},
                             {"init", static_cast<std::int64_t>(prm.init)},
                             {"the size of the initial centres", static_cast<std::int64_t>(init_centers.size())},
                             {"seed", static_cast<std::int64_t>(prm.seed & 0x3fffffffffffffffULL)}});
  const std::int64_t d = agreed[0] > 0 ? agreed[0] : 0;
  block<T> b;
  b.d = d;
  b.threads = spmdlearn::detail::threads_per_rank(c);
  const std::int64_t n = X.rows;
  b.rank_rows = c.allgather<std::int64_t>(std::span<const std::int64_t>(&n, 1));
  for (int r = 0; r < c.size(); ++r) {
    if (r < c.rank()) b.offset += b.rank_rows[r];
    b.n_total += b.rank_rows[r];
  }
  // Everything below throws only on conditions every rank sees alike.
  if (b.n_total < k)
    throw invalid_argument("n_samples=" + std::to_string(b.n_total) + " should be >= n_clusters=" + std::to_string(k) +
                           " (rows of all ranks)");
  if (prm.init == kmeans_init::given &&
      static_cast<std::int64_t>(init_centers.size()) != static_cast<std::int64_t>(prm.n_init) * k * d)
    throw invalid_argument("KMeans: the initial centres hold " + std::to_string(init_centers.size()) +
                           " values; expected n_init x n_clusters x n_features = " + std::to_string(prm.n_init) + " x " +
                           std::to_string(k) + " x " + std::to_string(d));
  // Global mean (unweighted, Chan-merged in rank order) and variance: tol as scikit-learn's
  // _tolerance, mean(var(X, axis=0)) * tol.
  std::vector<double> local_mean(d, 0.0), m2(d, 0.0);
  // A rank without rows keeps an empty host block (there is no device pointer to work from).
  const bool on_device = X.device == device_kind::cuda && n > 0;
  if (on_device) {
    if ( static_cast<std::int64_t>(dev_mean.size()) == d) {
      local_mean = dev_mean;
      m2 = dev_m2;
    }
  } else {
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t q = 0; q < d; ++q) local_mean[q] += static_cast<double>(X(i, q));
    if (n > 0)
      for (auto& v : local_mean) v /= static_cast<double>(n);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t q = 0; q < d; ++q) {
        const double t = static_cast<double>(X(i, q)) - local_mean[q];
        m2[q] += t * t;
      }
  }
  const spmdlearn::detail::global_mean g =
      spmdlearn::detail::merge_means_across(c, static_cast<double>(n), n, local_mean);
  for (std::int64_t q = 0; q < d; ++q) m2[q] += static_cast<double>(n) * g.local_delta[q] * g.local_delta[q];
  c.allreduce<double>(m2, reduce_op::sum);
  double tol = 0.0;
  if (prm.tol != 0.0 && d > 0) {
    for (double v : m2) tol += v / static_cast<double>(b.n_total);
    tol = tol / static_cast<double>(d) * prm.tol;
  }
  // Centre the rows on the mean (in the precision of X, as scikit-learn's X -= X.mean(axis=0)).
  std::vector<T> mean_t(d);
  for (std::int64_t q = 0; q < d; ++q) mean_t[q] = static_cast<T>(g.mean[q]);
  // The centred copy; agreed on every rank (host or device) so that out of GPU memory on one
  // rank raises everywhere and ranks may mix host and device blocks.
  std::exception_ptr copy_err;
  if (on_device) {
#ifdef SPMDLEARN_WITH_CUDA
    // It stays on the GPU; the device local functions compute ‖x‖² themselves (b.xsq only
    // signals "with inertia" to the verbose Lloyd step).
    std::vector<double> mean_d(mean_t.begin(), mean_t.end());
    try {
      b.xc_device = std::shared_ptr<T>(cuda::centred_copy<T>(X.data, n, d, X.stride(), mean_d),
                                       [](T* p) { cuda::free_device(p); });
      b.X = matrix_view<const T>(b.xc_device.get(), n, d, -1, device_kind::cuda);
    } catch (...) {
      copy_err = std::current_exception();
    }
    if (prm.verbose > 0) b.xsq.assign(n, 0.0);
#endif
  } else {
    b.xc.resize(n * d);
    b.xsq.assign(n, 0.0);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t q = 0; q < d; ++q) {
        const T v = X(i, q) - mean_t[q];
        b.xc[i * d + q] = v;
        b.xsq[i] += static_cast<double>(v) * static_cast<double>(v);
      }
    b.X = matrix_view<const T>(b.xc.data(), n, d);
  }
  agree(c, copy_err);
  b.w = std::move(host_w);
  {
    std::exception_ptr w_err;
    try {
      b.w_rows = detail::row_values(b.X, b.w);
    } catch (...) {
      w_err = std::current_exception();
    }
    agree(c, w_err);
  }
  {
    // Collective on every rank (a rank without rows has no weights either).
    double total = b.w.empty() ? static_cast<double>(n) : 0.0;
    for (double v : b.w) total += v;
    if (c.allreduce_value(total, reduce_op::sum) <= 0.0)
      throw invalid_argument("KMeans: sample_weight must contain at least one non-zero weight "
                             "(the weights of all ranks sum to zero)");
  }

  std::mt19937_64 rng(prm.seed);
  run_result best;
  bool have = false;
  for (int run = 0; run < prm.n_init; ++run) {
    std::vector<double> init;
    switch (prm.init) {
      case kmeans_init::kmeans_plusplus: init = kmeans_plusplus(c, b, k, rng); break;
      case kmeans_init::random: init = random_rows(c, b, k, rng); break;
      case kmeans_init::kmeans_parallel: init = kmeans_parallel(c, b, k, rng); break;
      case kmeans_init::given:
        init.resize(k * d);
        for (std::int64_t q = 0; q < k * d; ++q)
          init[q] = static_cast<double>(static_cast<T>(init_centers[run * k * d + q]) - mean_t[q % d]);
        break;
    }
    if (prm.verbose > 0 && c.rank() == 0) {
      std::printf("Initialization complete\n");
      std::fflush(stdout);
    }
    run_result r = lloyd(c, b, std::move(init), k, prm, tol);
    if (!have || (r.inertia < best.inertia && !same_clustering(c, r.labels.host(), best.labels.host(), k))) {
      best = std::move(r);
      have = true;
    }
  }
  kmeans_model m;
  m.n_features = d;
  m.n_samples = b.n_total;
  m.centers = std::move(best.centers);
  for (std::int64_t q = 0; q < k * d; ++q) m.centers[q] += static_cast<double>(mean_t[q % d]);
  m.labels = best.labels.host();
  m.inertia = best.inertia;
  m.n_iter = best.n_iter;
  m.n_distinct = best.n_distinct;
  return m;
}

template <class T>
std::vector<std::int32_t> kmeans_predict(matrix_view<const T> X, std::span<const double> centers) {
  check_block<T>("KMeans.predict", X, std::nullopt);
  if (X.rows == 0) return {};
  if (X.cols == 0 || centers.size() % X.cols != 0)
    throw invalid_argument("KMeans.predict: X has " + std::to_string(X.cols) + " features, the centres do not");
  detail::row_labels labels(X);
  detail::lloyd_step_local(X, {}, {}, centers, static_cast<std::int64_t>(centers.size()) / X.cols, labels.span(), false, 1);
  return labels.host();
}

template <class T>
std::vector<double> kmeans_transform(matrix_view<const T> X, std::span<const double> centers) {
  spmdlearn::detail::check_host_matrix("KMeans.transform", X);
  spmdlearn::detail::throw_if_nonfinite("X", X, 0, X.rows);
  if (X.rows == 0) return {};
  if (X.cols == 0 || centers.size() % X.cols != 0)
    throw invalid_argument("KMeans.transform: X has " + std::to_string(X.cols) + " features, the centres do not");
  return detail::distances_local(X, centers, static_cast<std::int64_t>(centers.size()) / X.cols);
}

template <class T>
double kmeans_inertia(const comm& c, matrix_view<const T> X, std::optional<vector_view<const T>> w,
                      std::span<const double> centers) {
  std::exception_ptr err;
  std::vector<double> tail;
  std::int64_t k = 0;
  try {
    check_block("KMeans.score", X, w);
    if (X.rows > 0) {
      if (centers.size() % X.cols != 0)
        throw invalid_argument("KMeans.score: X has " + std::to_string(X.cols) + " features, the centres do not");
      k = static_cast<std::int64_t>(centers.size()) / X.cols;
      detail::row_labels labels(X);
      detail::lloyd_step_local(X, {}, {}, centers, k, labels.span(), false, spmdlearn::detail::threads_per_rank(c));
      const detail::row_values wv(X, host_weights(w));
      std::vector<double> counts(k, 0.0);
      tail.push_back(detail::inertia_local(X, wv.span(), centers, labels.span(), counts));
    }
  } catch (...) {
    err = std::current_exception();
  }
  spmdlearn::detail::agree_on_block(c, err, X);
  return c.allreduce_value(tail.empty() ? 0.0 : tail[0], reduce_op::sum);
}

#define SPMDLEARN_KMEANS(T)                                                                             \
  template kmeans_model kmeans_fit<T>(const comm&, matrix_view<const T>,                               \
                                      std::optional<vector_view<const T>>, const kmeans_params&,       \
                                      std::span<const double>);                                        \
  template std::vector<std::int32_t> kmeans_predict<T>(matrix_view<const T>, std::span<const double>); \
  template std::vector<double> kmeans_transform<T>(matrix_view<const T>, std::span<const double>);     \
  template double kmeans_inertia<T>(const comm&, matrix_view<const T>,                                 \
                                    std::optional<vector_view<const T>>, std::span<const double>);
SPMDLEARN_KMEANS(float)
SPMDLEARN_KMEANS(double)
#undef SPMDLEARN_KMEANS

}  // namespace spmdlearn::cluster
