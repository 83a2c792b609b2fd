#include "core/watchdog.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "spmdlearn/core/comm.hpp"

namespace spmdlearn {
namespace detail {
namespace {

using clock = std::chrono::steady_clock;

struct wait_record {
  const char* what;
  std::int64_t count;
  int rank, size;
  const char* comm_name;
  double extra;
  clock::time_point start;
  std::string call;
};

// Never destroyed: the watchdog thread may still be waiting on it while static destructors run.
struct registry {
  std::mutex m;
  std::condition_variable cv;
  std::map<std::uint64_t, wait_record> waits;
  std::uint64_t next = 1;
  bool started = false;
};
registry& reg() {
  static registry* r = new registry;
  return *r;
}

double initial_timeout() {
  const char* v = std::getenv("SPMDLEARN_TIMEOUT");
  if (!v || !*v) return 300.0;
  char* end = nullptr;
  const double t = std::strtod(v, &end);
  if (end == v) {
    std::fprintf(stderr, "spmdlearn: SPMDLEARN_TIMEOUT=%s is not a number; using 300 s\n", v);
    return 300.0;
  }
  return t;
}

// Read twice per collective: an atomic, not a mutex.
std::atomic<double>& timeout_value() {
  static std::atomic<double> t{initial_timeout()};
  return t;
}

std::string describe(const wait_record& w, double waited) {
  std::ostringstream s;
  s << "rank " << w.rank << " of " << w.size << " has waited " << static_cast<long long>(waited)
    << " s in " << w.what;
  if (w.count >= 0) s << " (" << w.count << " elements)";
  s << " on the " << w.comm_name << " communicator";
  if (!w.call.empty()) s << " during " << w.call;
  s << ": at least one rank has not reached this collective (it raised outside spmdlearn, "
       "skipped a collective call, exited or is stuck). Aborting the job after SPMDLEARN_TIMEOUT="
    << collective_timeout()
    << " s. (Run scripts as `python -m mpi4py script.py` so that an uncaught exception on one rank "
       "ends the job at once; raise SPMDLEARN_TIMEOUT if a rank legitimately works this long "
       "alone.)";
  return s.str();
}

void watchdog_loop() {
  registry& r = reg();
  std::unique_lock<std::mutex> lock(r.m);
  for (;;) {
    r.cv.wait_for(lock, std::chrono::milliseconds(500));
    const double limit = collective_timeout();
    if (limit <= 0) continue;
    const auto now = clock::now();
    for (const auto& [id, w] : r.waits) {
      const double waited = std::chrono::duration<double>(now - w.start).count();
      if (waited > limit + w.extra) {
        const std::string msg = describe(w, waited);
        lock.unlock();
        abort_job(msg);
      }
    }
  }
}

// A plain array, not a std::string: a trivially destructible thread_local needs no per-thread
// destructor registration in this dlopen'ed module.
constexpr std::size_t call_capacity = 128;
thread_local char tls_call[call_capacity] = {};

}  // namespace

double collective_timeout() { return timeout_value().load(std::memory_order_relaxed); }

void set_current_call(const std::string& call) {
  const std::size_t n = std::min(call.size(), call_capacity - 1);
  std::memcpy(tls_call, call.data(), n);
  tls_call[n] = '\0';
}
std::string current_call() { return tls_call; }

watch_scope::watch_scope(const char* what, std::int64_t count, int rank, int size,
                         const char* comm_name, double extra_seconds) {
  if (collective_timeout() <= 0) return;
  registry& r = reg();
  std::lock_guard<std::mutex> g(r.m);
  if (!r.started) {
    std::thread(watchdog_loop).detach();
    r.started = true;
  }
  id_ = r.next++;
  r.waits.emplace(id_, wait_record{what, count, rank, size, comm_name, extra_seconds, clock::now(), tls_call});
}

watch_scope::~watch_scope() {
  if (!id_) return;
  registry& r = reg();
  std::lock_guard<std::mutex> g(r.m);
  r.waits.erase(id_);
}

}  // namespace detail

void set_collective_timeout(double seconds) {
  detail::timeout_value().store(seconds, std::memory_order_relaxed);
}

double collective_timeout() { return detail::collective_timeout(); }

}  // namespace spmdlearn
