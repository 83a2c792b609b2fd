// MPI implementation of spmdlearn::comm. The only file that includes mpi.h.
// The C API only: keep the deprecated C++ bindings (and their link dependency) out.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/comm_detail.hpp"
#include "core/nccl_comm.hpp"
#include "core/watchdog.hpp"
#include "spmdlearn/core/error.hpp"

namespace spmdlearn {
namespace {

MPI_Datatype mpi_type(comm_type t) {
  switch (t) {
    case comm_type::int8: return MPI_SIGNED_CHAR;  // MPI_CHAR is not allowed in reductions
    case comm_type::int32: return MPI_INT32_T;
    case comm_type::int64: return MPI_INT64_T;
    case comm_type::float32: return MPI_FLOAT;
    default: return MPI_DOUBLE;
  }
}

MPI_Op mpi_op(reduce_op op) {
  switch (op) {
    case reduce_op::sum: return MPI_SUM;
    case reduce_op::min: return MPI_MIN;
    default: return MPI_MAX;
  }
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw runtime_error(std::string(what) + " failed: " + std::string(msg, len));
  }
}

// MPI counts are int: long buffers go in pieces.
constexpr std::size_t max_chunk = std::size_t(1) << 30;

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : 0;
}

// --- the guard's private state, cached on the user's communicator ------------------------------
//
// The guard exchange runs on a duplicate of the user's communicator, so that its point-to-point
// messages can never be matched by the user's own receives (MPI_ANY_TAG / MPI_ANY_SOURCE). It
// lives in an MPI attribute of the user's communicator: created on the first guarded call, freed
// with it.
struct guard_state {
  MPI_Comm dup = MPI_COMM_NULL;
};

int delete_guard_state(MPI_Comm, int, void* attr, void*) {
  auto* g = static_cast<guard_state*>(attr);
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin && g->dup != MPI_COMM_NULL) MPI_Comm_free(&g->dup);
  delete g;
  return MPI_SUCCESS;
}

int guard_keyval() {
  static const int kv = [] {
    int k = MPI_KEYVAL_INVALID;
    check(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, delete_guard_state, &k, nullptr),
          "MPI_Comm_create_keyval");
    return k;
  }();
  return kv;
}

constexpr int guard_tag = 7311;  // on the private duplicate only

using steady = std::chrono::steady_clock;

// Polls `reqs` until all complete or `seconds` pass (<= 0: no limit). Spins first (a guard
// normally completes in microseconds), then sleeps with a growing pause so that a rank waiting
// for a slow peer does not burn its core. `done[i]` tells which requests completed.
bool poll_requests(std::vector<MPI_Request>& reqs, std::vector<char>& done, double seconds) {
  done.assign(reqs.size(), 0);
  std::size_t left = reqs.size();
  const auto start = steady::now();
  long pause_us = 0;
  std::vector<int> idx(reqs.size());
  for (long spin = 0; left > 0; ++spin) {
    int outcount = 0;
    check(MPI_Testsome(static_cast<int>(reqs.size()), reqs.data(), &outcount, idx.data(),
                       MPI_STATUSES_IGNORE),
          "MPI_Testsome");
    if (outcount == MPI_UNDEFINED) break;  // every request was already inactive
    for (int i = 0; i < outcount; ++i) done[idx[i]] = 1;
    left -= static_cast<std::size_t>(outcount);
    if (left == 0) break;
    if (spin > 2000) {
      if (seconds > 0 && std::chrono::duration<double>(steady::now() - start).count() > seconds)
        return false;
      pause_us = std::min<long>(pause_us + 10, 1000);
      std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
    }
  }
  return true;
}

class mpi_comm final : public comm {
 public:
  explicit mpi_comm(MPI_Comm c) : c_(c) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) throw runtime_error("MPI is not initialised (or already finalised)");
    if (c_ == MPI_COMM_NULL) throw invalid_argument("the MPI communicator is MPI_COMM_NULL");
    int inter = 0;
    check(MPI_Comm_test_inter(c_, &inter), "MPI_Comm_test_inter");
    if (inter)
      throw invalid_argument(
          "the MPI communicator is an intercommunicator; spmdlearn needs an intracommunicator "
          "(merge the two groups first, e.g. with mpi4py's intercomm.Merge())");
    check(MPI_Comm_rank(c_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(c_, &size_), "MPI_Comm_size");
  }
  ~mpi_comm() override {
    if (owned_ && c_ != MPI_COMM_NULL) {
      int fin = 0;
      MPI_Finalized(&fin);
      if (!fin) MPI_Comm_free(&c_);
    }
  }
  mpi_comm(MPI_Comm c, bool owned) : mpi_comm(c) { owned_ = owned; }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override {
    // Read from the launcher's environment: no collective, so it can never hang.
    for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MPI_LOCAL_NRANKS",
                          "MV2_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"}) {
      int n = env_int(v);
      if (n > 0) return std::min(n, size_);
    }
    return 1;
  }

  void allreduce(void* buf, std::size_t count, comm_type t, reduce_op op) const override {
    const std::size_t es = element_size(t);
    for (std::size_t off = 0; off < count; off += max_chunk) {
      const int n = static_cast<int>(std::min(max_chunk, count - off));
      char* p = static_cast<char*>(buf) + off * es;
      const bool floating = t == comm_type::float32 || t == comm_type::float64;
      if (floating && op == reduce_op::sum && size_ > 1) {
        // A floating-point sum may round differently on different ranks inside MPI_Allreduce;
        // reduce once on rank 0 and broadcast so every rank holds the same bits.
        detail::watch_scope w("allreduce (sum: MPI_Reduce + MPI_Bcast)", n, rank_, size_, "MPI");
        if (rank_ == 0)
          check(MPI_Reduce(MPI_IN_PLACE, p, n, mpi_type(t), MPI_SUM, 0, c_), "MPI_Reduce");
        else
          check(MPI_Reduce(p, nullptr, n, mpi_type(t), MPI_SUM, 0, c_), "MPI_Reduce");
        check(MPI_Bcast(p, n, mpi_type(t), 0, c_), "MPI_Bcast");
      } else {
        detail::watch_scope w("allreduce (MPI_Allreduce)", n, rank_, size_, "MPI");
        check(MPI_Allreduce(MPI_IN_PLACE, p, n, mpi_type(t), mpi_op(op), c_), "MPI_Allreduce");
      }
    }
  }
  void allgather(const void* send, void* recv, std::size_t count, comm_type t) const override {
    if (count > max_chunk) throw not_implemented("allgather of more than 2^30 elements per rank");
    const int n = static_cast<int>(count);
    detail::watch_scope w("allgather (MPI_Allgather)", n, rank_, size_, "MPI");
    check(MPI_Allgather(send, n, mpi_type(t), recv, n, mpi_type(t), c_), "MPI_Allgather");
  }
  void bcast(void* buf, std::size_t count, comm_type t, int root) const override {
    const std::size_t es = element_size(t);
    for (std::size_t off = 0; off < count; off += max_chunk) {
      const int n = static_cast<int>(std::min(max_chunk, count - off));
      detail::watch_scope w("broadcast (MPI_Bcast)", n, rank_, size_, "MPI");
      check(MPI_Bcast(static_cast<char*>(buf) + off * es, n, mpi_type(t), root, c_), "MPI_Bcast");
    }
  }
  void barrier() const override {
    detail::watch_scope w("barrier (MPI_Barrier)", -1, rank_, size_, "MPI");
    check(MPI_Barrier(c_), "MPI_Barrier");
  }
  void device_allreduce(void* buf, std::size_t count, comm_type t, reduce_op op) const override {
    if (count == 0 || size_ == 1) return;
#ifdef SPMDLEARN_WITH_NCCL
    if (detail::nccl_allreduce(&c_, buf, count, t, op)) return;
#endif
    comm::device_allreduce(buf, count, t, op);
  }
  std::unique_ptr<comm> split(int color, int key) const override {
    MPI_Comm out = MPI_COMM_NULL;
    detail::watch_scope w("split (MPI_Comm_split)", -1, rank_, size_, "MPI");
    check(MPI_Comm_split(c_, color, key, &out), "MPI_Comm_split");
    return std::make_unique<mpi_comm>(out, true);
  }
  [[noreturn]] void abort(int code) const override {
    MPI_Abort(c_, code);
    std::abort();
  }
  std::string name() const override { return "mpi"; }

  void guard_exchange(const std::int64_t* mine, std::int64_t* all, std::size_t k,
                      const std::string& what) const override {
    std::copy(mine, mine + k, all + static_cast<std::size_t>(rank_) * k);
    if (size_ == 1) return;
    guard_state& g = state(what);
    const double limit = detail::collective_timeout();
    const int n = static_cast<int>(k);
    std::vector<char> done;
    if (rank_ == 0) {
      // Rank 0 collects one record per rank: it knows exactly who has arrived.
      std::vector<MPI_Request> reqs(static_cast<std::size_t>(size_ - 1), MPI_REQUEST_NULL);
      for (int r = 1; r < size_; ++r)
        check(MPI_Irecv(all + static_cast<std::size_t>(r) * k, n, MPI_INT64_T, r, guard_tag, g.dup,
                        &reqs[r - 1]),
              "MPI_Irecv");
      detail::watch_scope backstop("the guard's gather", n, rank_, size_, "MPI", 30.0);
      if (!poll_requests(reqs, done, limit)) {
        std::string missing;
        int count = 0;
        for (int r = 1; r < size_; ++r)
          if (!done[r - 1]) missing += (count++ ? ", " : "") + std::to_string(r);
        detail::abort_job(
            "rank 0 of " + std::to_string(size_) + " has waited " +
            std::to_string(static_cast<long long>(limit)) + " s at the start of " + what +
            ": rank" + (count > 1 ? "s " : " ") + missing + (count > 1 ? " have" : " has") +
            " not reached it (raised outside spmdlearn, skipped this collective call, exited or is "
            "stuck). Aborting the job after SPMDLEARN_TIMEOUT=" +
            std::to_string(static_cast<long long>(limit)) +
            " s. (Run scripts as `python -m mpi4py script.py` so that an uncaught exception on one "
            "rank ends the job at once.)");
      }
    } else {
      std::vector<MPI_Request> reqs(1, MPI_REQUEST_NULL);
      check(MPI_Isend(mine, n, MPI_INT64_T, 0, guard_tag, g.dup, &reqs[0]), "MPI_Isend");
      // Rank 0 names the missing ranks when it times out; wait a little longer so that its
      // message is the one the job ends with.
      detail::watch_scope backstop("the guard's send", n, rank_, size_, "MPI", 30.0);
      if (!poll_requests(reqs, done, limit > 0 ? limit + 5.0 : 0.0))
        abort_guard_wait(what, limit);
    }
    std::vector<MPI_Request> reqs(1, MPI_REQUEST_NULL);
    check(MPI_Ibcast(all, n * size_, MPI_INT64_T, 0, g.dup, &reqs[0]), "MPI_Ibcast");
    detail::watch_scope backstop("the guard's broadcast", n, rank_, size_, "MPI", 30.0);
    if (!poll_requests(reqs, done, rank_ == 0 ? limit : (limit > 0 ? limit + 5.0 : 0.0)))
      abort_guard_wait(what, limit);
  }


 private:
  [[noreturn]] void abort_guard_wait(const std::string& what, double limit) const {
    detail::abort_job("rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                      " has waited " + std::to_string(static_cast<long long>(limit)) +
                      " s at the start of " + what +
                      " for rank 0, which collects every rank's arrival: some rank has not reached "
                      "this call (rank 0 names it when it times out; if it does not, rank 0 is the "
                      "one missing). Aborting the job after SPMDLEARN_TIMEOUT=" +
                      std::to_string(static_cast<long long>(limit)) + " s.");
  }

  // The guard state cached on the communicator; the first call duplicates it (collective, like
  // the guard that asks for it; polled so that a missing rank cannot hang it either).
  guard_state& state(const std::string& what = "a spmdlearn call") const {
    static std::mutex create;
    std::lock_guard<std::mutex> lock(create);
    void* attr = nullptr;
    int found = 0;
    check(MPI_Comm_get_attr(c_, guard_keyval(), &attr, &found), "MPI_Comm_get_attr");
    if (found) return *static_cast<guard_state*>(attr);
    auto* g = new guard_state;
    std::vector<MPI_Request> reqs(1, MPI_REQUEST_NULL);
    check(MPI_Comm_idup(c_, &g->dup, &reqs[0]), "MPI_Comm_idup");
    std::vector<char> done;
    const double limit = detail::collective_timeout();
    detail::watch_scope backstop("MPI_Comm_idup (first spmdlearn call on this communicator)", -1,
                                 rank_, size_, "MPI", 30.0);
    if (!poll_requests(reqs, done, limit))
      detail::abort_job("rank " + std::to_string(rank_) + " of " + std::to_string(size_) + " has waited " +
                        std::to_string(static_cast<long long>(limit)) + " s at the start of " + what +
                        ", the first spmdlearn call on this communicator (which duplicates it, "
                        "collectively): some rank has not reached it (raised outside spmdlearn, "
                        "skipped this collective call, exited or is stuck; the first call cannot "
                        "tell which -- later calls name the missing ranks). Aborting the job after "
                        "SPMDLEARN_TIMEOUT=" + std::to_string(static_cast<long long>(limit)) + " s.");
    check(MPI_Comm_set_attr(c_, guard_keyval(), g), "MPI_Comm_set_attr");
    return *g;
  }

  MPI_Comm c_;
  int rank_ = 0, size_ = 1;
  bool owned_ = false;
};

}  // namespace

namespace detail {
[[noreturn]] void abort_job(const std::string& message) {
  std::fprintf(stderr, "spmdlearn: %s\n", message.c_str());
  std::fflush(stderr);
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, 70);
  std::_Exit(70);
}
}  // namespace detail

std::unique_ptr<comm> make_mpi_comm(const void* mpi_comm_address) {
  if (!mpi_comm_address) throw invalid_argument("make_mpi_comm: null communicator address");
  return std::make_unique<mpi_comm>(*static_cast<const MPI_Comm*>(mpi_comm_address));
}

std::unique_ptr<comm> make_world_comm() {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    std::atexit([] {
      int fin = 0;
      MPI_Finalized(&fin);
      if (!fin) MPI_Finalize();
    });
  }
  MPI_Comm world = MPI_COMM_WORLD;
  return std::make_unique<mpi_comm>(world);
}

}  // namespace spmdlearn
