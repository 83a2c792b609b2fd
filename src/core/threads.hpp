#pragma once
#include "spmdlearn/core/comm.hpp"

namespace spmdlearn::detail {
// Sets the BLAS thread count of this process to (cores available) / (ranks on this node), once,
// unless the user chose one with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS.
// So `mpirun -n 2` on 2 cores runs one BLAS thread per rank instead of oversubscribing.
void configure_blas_threads(const comm& c);

// Threads this rank may use for its own loops: SPMDLEARN_NUM_THREADS, else OMP_NUM_THREADS, else
// (cores available to this process) / (ranks on this node); at least 1.
int threads_per_rank(const comm& c);

// BLAS single-threaded for the scope, restored after: for the small d x d factorisations of a fit
// (Cholesky, eigh, SVD of d ~ 100), where a BLAS's threads cost more to wake than the work, and
// wait for cores when other thread pools (PyTorch's OpenMP, a second library) hold them: a GPU
// LinearRegression fit took 60-200 ms instead of 3 ms on a 64-core host with OpenBLAS at 64
// threads. OpenBLAS, MKL and BLIS are looked up at run time; without them this does nothing.
// Only for n <= serial_max (the matrix order): larger factorisations keep the BLAS's threads.
class blas_serial_scope {
 public:
  static constexpr long long serial_max = 512;
  explicit blas_serial_scope(long long n);
  ~blas_serial_scope();
  blas_serial_scope(const blas_serial_scope&) = delete;
  blas_serial_scope& operator=(const blas_serial_scope&) = delete;

 private:
  int previous_ = 0;  // 0: unknown, nothing to restore
};
}  // namespace spmdlearn::detail
