// NCCL collectives for device buffers of an MPI communicator (used by mpi_comm.cpp only).
#pragma once

#include <cstddef>

#include "spmdlearn/core/comm.hpp"

namespace spmdlearn::detail {

// Collective over the MPI communicator at `mpi_comm_address` (an MPI_Comm*): in-place allreduce
// of a buffer in CUDA device memory through NCCL, on the buffer's device.
//
// The NCCL communicator is created on first use (rank 0's ncclGetUniqueId broadcast over MPI)
// and cached as an attribute of the MPI communicator, so it lives as long as that communicator
// and is destroyed with it. Every call first agrees over MPI (one int allreduce) that every rank
// holds a working NCCL communicator, so a rank that lost its own (after an error) never leaves
// the others waiting in a mismatched init. While the collective runs, the host polls the stream
// and ncclCommGetAsyncError; an asynchronous NCCL error or no completion within
// SPMDLEARN_NCCL_TIMEOUT seconds (default 600) aborts the NCCL communicator (ncclCommAbort) and
// throws runtime_error on this rank -- the other ranks, blocked in the same collective, see the
// abort as an error or time out in turn, instead of hanging.
//
// Returns false, having reduced nothing, when NCCL cannot serve this communicator (two ranks
// share one GPU -- checked by comparing device UUIDs before NCCL starts, since NCCL itself hung
// there once -- or its initialisation failed on some rank): decided collectively, so all ranks
// take the caller's fallback (host staging over MPI) together.
// `agree_first = false` skips the MPI agreement (tests only: it lets one rank enter a collective
// the others never join, to exercise the timeout and abort path).
bool nccl_allreduce(const void* mpi_comm_address, void* buf, std::size_t count, comm_type t,
                    reduce_op op, bool agree_first = true);

}  // namespace spmdlearn::detail
