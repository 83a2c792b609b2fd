// NCCL communicators cached on MPI communicators; see nccl_comm.hpp.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_common.hpp"
#include "core/nccl_comm.hpp"

namespace spmdlearn::detail {
namespace {

enum state_code : int { unusable = 0, absent = 1, ready = 2 };

struct entry {
  ncclComm_t comm = nullptr;
  bool broken = false;  // NCCL could not be initialised for this communicator on some rank
};
using cache = std::map<int, entry>;  // by CUDA device

int delete_cache(MPI_Comm, int, void* value, void*) {
  auto* c = static_cast<cache*>(value);
  for (auto& kv : *c)
    if (kv.second.comm) ncclCommDestroy(kv.second.comm);
  delete c;
  return MPI_SUCCESS;
}

int keyval() {
  static int key = [] {
    int k = MPI_KEYVAL_INVALID;
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, delete_cache, &k, nullptr);
    return k;
  }();
  return key;
}

cache& cache_of(MPI_Comm c) {
  void* value = nullptr;
  int found = 0;
  MPI_Comm_get_attr(c, keyval(), &value, &found);
  if (found) return *static_cast<cache*>(value);
  auto* fresh = new cache();
  MPI_Comm_set_attr(c, keyval(), fresh);
  return *fresh;
}

ncclDataType_t nccl_type(comm_type t) {
  switch (t) {
    case comm_type::int8: return ncclInt8;
    case comm_type::int32: return ncclInt32;
    case comm_type::int64: return ncclInt64;
    case comm_type::float32: return ncclFloat32;
    default: return ncclFloat64;
  }
}
ncclRedOp_t nccl_op(reduce_op op) {
  switch (op) {
    case reduce_op::sum: return ncclSum;
    case reduce_op::min: return ncclMin;
    default: return ncclMax;
  }
}

double timeout_seconds() {
  const char* v = std::getenv("SPMDLEARN_NCCL_TIMEOUT");
  const double t = v ? std::atof(v) : 0.0;
  return t > 0.0 ? t : 600.0;
}

void drop(cache& c, int device) {
  auto it = c.find(device);
  if (it == c.end()) return;
  if (it->second.comm) ncclCommAbort(it->second.comm);
  c.erase(it);
}

[[noreturn]] void nccl_fail(cache& c, int device, int rank, const std::string& what) {
  drop(c, device);
  throw runtime_error("NCCL " + what + " on rank " + std::to_string(rank) +
                      " (CUDA device " + std::to_string(device) +
                      "); the NCCL communicator was aborted");
}

// Whether two ranks of mc drive the same GPU (more ranks than GPUs on a host). NCCL needs one
// rank a GPU: ncclCommInitRank should then fail, but with 3 ranks on 2 H200s (session 6) the
// first allreduce hung instead. The devices' UUIDs, gathered over MPI, decide before NCCL runs;
// the caller then stages through the host (MPI).
bool shares_a_device(MPI_Comm mc, int device) {
  cudaDeviceProp prop{};
  cuda::check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  int size = 1;
  MPI_Comm_size(mc, &size);
  constexpr int bytes = sizeof(prop.uuid.bytes);
  std::vector<char> all(static_cast<std::size_t>(size) * bytes);
  MPI_Allgather(prop.uuid.bytes, bytes, MPI_BYTE, all.data(), bytes, MPI_BYTE, mc);
  std::set<std::string> seen;
  for (int r = 0; r < size; ++r)
    if (!seen.insert(std::string(all.data() + static_cast<std::size_t>(r) * bytes, bytes)).second) return true;
  return false;
}

}  // namespace

bool nccl_allreduce(const void* mpi_comm_address, void* buf, std::size_t count, comm_type t,
                    reduce_op op, bool agree_first) {
  MPI_Comm mc = *static_cast<const MPI_Comm*>(mpi_comm_address);
  int rank = 0;
  MPI_Comm_rank(mc, &rank);
  int device = -1;
  {
    cudaPointerAttributes a{};
    cuda::check(cudaPointerGetAttributes(&a, buf), "cudaPointerGetAttributes");
    if (a.type != cudaMemoryTypeDevice)
      throw invalid_argument("device_allreduce: the buffer is not in CUDA device memory");
    device = a.device;
  }
  int previous = -1;
  cuda::check(cudaGetDevice(&previous), "cudaGetDevice");
  struct restore {
    int dev;
    ~restore() { cudaSetDevice(dev); }
  } restore_device{previous};
  cuda::check(cudaSetDevice(device), "cudaSetDevice");
  cuda::context& ctx = cuda::context_for(device);

  cache& c = cache_of(mc);
  auto it = c.find(device);
  int code = it == c.end() ? absent : (it->second.broken ? unusable : ready);
  if (agree_first) MPI_Allreduce(MPI_IN_PLACE, &code, 1, MPI_INT, MPI_MIN, mc);
  if (code == unusable) {
    c[device].broken = true;
    return false;
  }
  if (code == absent) {
    // (Re)create on every rank together.
    drop(c, device);
    if (shares_a_device(mc, device)) {
      c[device].broken = true;  // every rank sees the same answer: all fall back together
      return false;
    }
    ncclUniqueId id{};
    int ok = 1;
    if (rank == 0 && ncclGetUniqueId(&id) != ncclSuccess) ok = 0;
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mc);
    MPI_Bcast(&ok, 1, MPI_INT, 0, mc);
    int size = 1;
    MPI_Comm_size(mc, &size);
    ncclComm_t nc = nullptr;
    if (ok && ncclCommInitRank(&nc, size, id, rank) != ncclSuccess) ok = 0;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, mc);
    entry& e = c[device];
    if (!ok) {
      if (nc) ncclCommAbort(nc);
      e.broken = true;
      return false;
    }
    e.comm = nc;
  }
  ncclComm_t nc = c[device].comm;
  cuda::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // the buffer is complete
  const ncclResult_t r = ncclAllReduce(buf, buf, count, nccl_type(t), nccl_op(op), nc, ctx.stream);
  if (r != ncclSuccess && r != ncclInProgress)
    nccl_fail(c, device, rank, std::string("allreduce failed to start: ") + ncclGetErrorString(r));
  const double limit = timeout_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (int polls = 0;; ++polls) {
    const cudaError_t q = cudaStreamQuery(ctx.stream);
    if (q == cudaSuccess) break;
    if (q != cudaErrorNotReady) {
      cudaGetLastError();
      nccl_fail(c, device, rank, std::string("allreduce failed: ") + cudaGetErrorString(q));
    }
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(nc, &async);
    if (async != ncclSuccess && async != ncclInProgress)
      nccl_fail(c, device, rank, std::string("asynchronous error: ") + ncclGetErrorString(async));
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (waited > limit)
      nccl_fail(c, device, rank,
                "allreduce did not complete within " + std::to_string(static_cast<int>(limit)) +
                    " s (SPMDLEARN_NCCL_TIMEOUT); another rank may have failed or left");
    if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

}  // namespace spmdlearn::detail
