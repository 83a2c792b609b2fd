// The collective watchdog: no spmdlearn collective waits forever.
//
// Every blocking MPI collective spmdlearn makes runs inside a `watch_scope`. One background thread
// per process (started on first use) wakes once a second; when a scope has been open longer than
// the timeout it prints which collective the rank waits in, on which communicator and during which
// public call, then aborts the whole job (MPI_Abort on MPI_COMM_WORLD). The guard's exchange
// (mpi_comm::guard_exchange) polls its own requests against the same deadline so that it can also
// name the ranks that never arrived; the watchdog is its backstop.
//
// Why a thread and not non-blocking collectives everywhere: the blocking collectives keep their
// tuned algorithms and cost nothing extra (two mutex operations per call), and a wait that cannot
// name the missing ranks anyway gains nothing from polling. The guard, which *can* name them (it
// receives one message per rank), polls.
//
// The timeout is SPMDLEARN_TIMEOUT seconds (default 300; 0 or negative disables the watchdog),
// read once, or set by set_collective_timeout (Python: spmdlearn.set_timeout).
#pragma once

#include <cstdint>
#include <string>

namespace spmdlearn::detail {

// Seconds a rank may wait in one collective before the job is aborted; <= 0: never.
double collective_timeout();

// The public call this thread is in ("Ridge.fit"), for the watchdog's message; set by the guard.
void set_current_call(const std::string& call);
std::string current_call();

// Prints `message` (prefixed "spmdlearn: ") to stderr and ends every process of the job.
[[noreturn]] void abort_job(const std::string& message);

// Registers a blocking wait; the watchdog aborts the job when it lasts longer than the timeout
// (plus `extra_seconds`). `what` must outlive the scope (a string literal).
class watch_scope {
 public:
  watch_scope(const char* what, std::int64_t count, int rank, int size, const char* comm_name,
              double extra_seconds = 0.0);
  ~watch_scope();
  watch_scope(const watch_scope&) = delete;
  watch_scope& operator=(const watch_scope&) = delete;

 private:
  std::uint64_t id_ = 0;
};

}  // namespace spmdlearn::detail
