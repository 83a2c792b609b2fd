// MPI implementation of spmdlearn::comm. The only file that includes mpi.h.
// The C API only: keep the deprecated C++ bindings (and their link dependency) out.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>

#include "core/comm_detail.hpp"
#include "core/nccl_comm.hpp"
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

class mpi_comm final : public comm {
 public:
  explicit mpi_comm(MPI_Comm c) : c_(c) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) throw runtime_error("MPI is not initialised (or already finalised)");
    if (c_ == MPI_COMM_NULL) throw invalid_argument("the MPI communicator is MPI_COMM_NULL");
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
        if (rank_ == 0)
          check(MPI_Reduce(MPI_IN_PLACE, p, n, mpi_type(t), MPI_SUM, 0, c_), "MPI_Reduce");
        else
          check(MPI_Reduce(p, nullptr, n, mpi_type(t), MPI_SUM, 0, c_), "MPI_Reduce");
        check(MPI_Bcast(p, n, mpi_type(t), 0, c_), "MPI_Bcast");
      } else {
        check(MPI_Allreduce(MPI_IN_PLACE, p, n, mpi_type(t), mpi_op(op), c_), "MPI_Allreduce");
      }
    }
  }
  void allgather(const void* send, void* recv, std::size_t count, comm_type t) const override {
    if (count > max_chunk) throw not_implemented("allgather of more than 2^30 elements per rank");
    const int n = static_cast<int>(count);
    check(MPI_Allgather(send, n, mpi_type(t), recv, n, mpi_type(t), c_), "MPI_Allgather");
  }
  void bcast(void* buf, std::size_t count, comm_type t, int root) const override {
    const std::size_t es = element_size(t);
    for (std::size_t off = 0; off < count; off += max_chunk) {
      const int n = static_cast<int>(std::min(max_chunk, count - off));
      check(MPI_Bcast(static_cast<char*>(buf) + off * es, n, mpi_type(t), root, c_), "MPI_Bcast");
    }
  }
  void barrier() const override { check(MPI_Barrier(c_), "MPI_Barrier"); }
  void device_allreduce(void* buf, std::size_t count, comm_type t, reduce_op op) const override {
    if (count == 0 || size_ == 1) return;
#ifdef SPMDLEARN_WITH_NCCL
    if (detail::nccl_allreduce(&c_, buf, count, t, op)) return;
#endif
    comm::device_allreduce(buf, count, t, op);
  }
  std::unique_ptr<comm> split(int color, int key) const override {
    MPI_Comm out = MPI_COMM_NULL;
    check(MPI_Comm_split(c_, color, key, &out), "MPI_Comm_split");
    return std::make_unique<mpi_comm>(out, true);
  }
  [[noreturn]] void abort(int code) const override {
    MPI_Abort(c_, code);
    std::abort();
  }
  std::string name() const override { return "mpi"; }

 private:
  MPI_Comm c_;
  int rank_ = 0, size_ = 1;
  bool owned_ = false;
};

}  // namespace

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
