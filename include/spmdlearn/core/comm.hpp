// The communicator interface every distributed algorithm talks to.
//
// Algorithms never call MPI (or NCCL) directly: they call a `comm`. Three implementations ship:
//   make_self_comm()            one process, no communication;
//   make_mpi_comm(&mpi_comm)    wraps any MPI_Comm (MPI_COMM_WORLD, a Split result, mpi4py's);
//   run_threads(n, fn)          n threads in one process, for fast in-process distributed tests.
//
// Every collective must be called by all ranks of the communicator in the same order.
// `allreduce` gives a result that is bitwise identical on every rank (floating-point sums are
// reduced once and broadcast), which is what makes fitted models identical on every rank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace spmdlearn {

enum class reduce_op : int { sum = 0, min = 1, max = 2 };
enum class comm_type : int { int8 = 0, int32 = 1, int64 = 2, float32 = 3, float64 = 4 };

template <class T>
constexpr comm_type comm_type_of();
template <> constexpr comm_type comm_type_of<char>() { return comm_type::int8; }
template <> constexpr comm_type comm_type_of<std::int32_t>() { return comm_type::int32; }
template <> constexpr comm_type comm_type_of<std::int64_t>() { return comm_type::int64; }
template <> constexpr comm_type comm_type_of<float>() { return comm_type::float32; }
template <> constexpr comm_type comm_type_of<double>() { return comm_type::float64; }

class comm {
 public:
  virtual ~comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks of this communicator that share this rank's node (for BLAS thread counts).
  virtual int local_size() const = 0;

  // In place; identical result on every rank.
  virtual void allreduce(void* buf, std::size_t count, comm_type t, reduce_op op) const = 0;
  // recv holds size() * count elements; rank r's block lands at r * count.
  virtual void allgather(const void* send, void* recv, std::size_t count, comm_type t) const = 0;
  virtual void bcast(void* buf, std::size_t count, comm_type t, int root) const = 0;
  virtual void barrier() const = 0;
  // In place, on a buffer in CUDA device memory; identical result on every rank. MPI
  // communicators use NCCL (one NCCL communicator per MPI communicator and device, created on
  // first use by broadcasting NCCL's id over MPI, cached with the MPI communicator, aborted with
  // an error on every rank instead of hanging); the others, and MPI where NCCL cannot be set up
  // (e.g. two ranks on one GPU), stage through host memory. Throws not_implemented without CUDA.
  virtual void device_allreduce(void* device_buf, std::size_t count, comm_type t, reduce_op op) const;
  // Collective. Ranks with the same color form a new communicator, ordered by (key, old rank).
  virtual std::unique_ptr<comm> split(int color, int key) const = 0;
  // Ends every process of the communicator (the last resort when a rank cannot continue).
  [[noreturn]] virtual void abort(int code) const = 0;
  virtual std::string name() const = 0;

  // The collective guard's exchange (see core/guard.hpp): every rank's record of `count` int64,
  // gathered into `all` (size() * count, rank r's record at r * count) on every rank. `what` names
  // the call for the timeout message. The default is allgather. MPI gathers the records to rank 0
  // by point-to-point messages on a private duplicate of the communicator and broadcasts them
  // back, polling against the collective timeout: a rank that never arrives is *named* ("rank 2
  // has not reached Ridge.fit") and the job aborted, instead of every rank waiting forever.
  virtual void guard_exchange(const std::int64_t* mine, std::int64_t* all, std::size_t count,
                              const std::string& what) const;

  // Typed helpers.
  template <class T>
  void allreduce(std::span<T> buf, reduce_op op) const {
    allreduce(buf.data(), buf.size(), comm_type_of<T>(), op);
  }
  template <class T>
  T allreduce_value(T v, reduce_op op) const {
    allreduce(&v, 1, comm_type_of<T>(), op);
    return v;
  }
  template <class T>
  std::vector<T> allgather(std::span<const T> send) const {
    std::vector<T> out(send.size() * static_cast<std::size_t>(size()));
    allgather(send.data(), out.data(), send.size(), comm_type_of<T>());
    return out;
  }
  template <class T>
  void bcast(std::span<T> buf, int root) const {
    bcast(buf.data(), buf.size(), comm_type_of<T>(), root);
  }
};

// The collective watchdog (see src/core/watchdog.hpp): a rank that waits longer than this many
// seconds in one spmdlearn collective prints which collective and which ranks are missing, then
// aborts the job. Default: the environment variable SPMDLEARN_TIMEOUT, else 300 s; <= 0 disables.
void set_collective_timeout(double seconds);
double collective_timeout();

// One process; every collective is the identity.
std::unique_ptr<comm> make_self_comm();

// Wraps an MPI communicator handle. `mpi_comm_address` is the address of an MPI_Comm variable
// (what mpi4py's MPI._addressof(comm) returns); this keeps mpi.h out of the public headers.
// The handle is borrowed, not duplicated: it must outlive the returned object.
std::unique_ptr<comm> make_mpi_comm(const void* mpi_comm_address);
// MPI_COMM_WORLD; initialises MPI (thread level FUNNELED) if nobody has yet.
std::unique_ptr<comm> make_world_comm();

// Runs fn(comm) on n threads that form one communicator, and joins them. An exception on a
// thread is re-thrown here after all threads finished (the first by rank).
void run_threads(int n, const std::function<void(const comm&)>& fn);

}  // namespace spmdlearn
