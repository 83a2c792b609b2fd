#include "core/threads.hpp"

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

namespace spmdlearn::detail {

namespace {
int cores_available() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// Looked up at run time so that any BLAS (OpenBLAS, MKL, BLIS) works and none is required; once
// per process: dlsym(RTLD_DEFAULT) of an absent name walks every loaded library (~5 us each in a
// Python process), and blas_serial_scope toggles the count twice per small solve.
struct blas_thread_api {
  using setter = void (*)(int);
  using getter = int (*)();
  std::vector<setter> set;
  getter get = nullptr;
  blas_thread_api() {
    for (const char* sym : {"openblas_set_num_threads", "MKL_Set_Num_Threads", "bli_thread_set_num_threads"})
      if (auto f = reinterpret_cast<setter>(dlsym(RTLD_DEFAULT, sym))) set.push_back(f);
    for (const char* sym : {"openblas_get_num_threads", "MKL_Get_Max_Threads", "bli_thread_get_num_threads"})
      if (auto f = reinterpret_cast<getter>(dlsym(RTLD_DEFAULT, sym))) {
        get = f;
        break;
      }
  }
};
const blas_thread_api& blas_api() {
  static const blas_thread_api api;
  return api;
}
void set_blas_threads(int n) {
  for (auto f : blas_api().set) f(n);
}
int get_blas_threads() { return blas_api().get ? blas_api().get() : 0; }
}  // namespace

blas_serial_scope::blas_serial_scope(long long n) : previous_(n <= serial_max ? get_blas_threads() : 0) {
  if (previous_ > 1) set_blas_threads(1);
}
blas_serial_scope::~blas_serial_scope() {
  if (previous_ > 1) set_blas_threads(previous_);
}

void configure_blas_threads(const comm& c) {
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  for (const char* v : {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"})
    if (std::getenv(v)) return;
  const int local = std::max(1, c.local_size());
  set_blas_threads(std::max(1, cores_available() / local));
}

int threads_per_rank(const comm& c) {
  for (const char* v : {"SPMDLEARN_NUM_THREADS", "OMP_NUM_THREADS"})
    if (const char* s = std::getenv(v)) {
      const int n = std::atoi(s);
      if (n > 0) return n;
    }
  return std::max(1, cores_available() / std::max(1, c.local_size()));
}

}  // namespace spmdlearn::detail
