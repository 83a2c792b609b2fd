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
}  // namespace spmdlearn::detail
