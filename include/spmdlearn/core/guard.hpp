// The collective error guard (oneDAL's "coworker error" pattern).
//
// Every public collective entry point first does its local work (validation, the local partial
// pass) with exceptions captured, then calls `agree`: one small allgather tells every rank whether
// any rank failed and whether the values every rank must share (n_features, dtype, parameters)
// match. If anything is wrong, *every* rank throws the same spmdlearn::error naming the failing
// rank and its message, before any collective that could block. The success path costs one
// allgather of a few integers.
//
//   std::exception_ptr err;
//   try { local = partial(X); } catch (...) { err = std::current_exception(); }
//   spmdlearn::agree(comm, err, {{"n_features", X.cols}, {"dtype", int(dtype), dtype_labels}});
#pragma once

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "spmdlearn/core/comm.hpp"

namespace spmdlearn {

struct shared_value {
  const char* name;        // what it is, for the message ("n_features")
  std::int64_t value;      // -1: this rank has no opinion (e.g. an empty block of shape (0, 0))
  const char* const* labels = nullptr;  // optional names of values (dtype codes -> "float32")
};

inline constexpr const char* dtype_labels[] = {"float32", "float64"};

// What a public call must agree on beyond success (the Python layer fills it for every public
// collective method): the call's name ("IncrementalRidge.partial_fit"), and digests (>= 0; -1: no
// opinion) of the estimator's parameters and of the state that enters the computation, item by
// item. The one exchange carries the name (first 95 bytes) and one combined digest per list; only
// when a combined digest differs are the items exchanged, to name the ones that differ.
struct call_identity {
  std::string call;
  std::vector<std::pair<std::string, std::int64_t>> params, state;
};

// Returns the agreed shared values (for a value some ranks left at -1: the others' value; -1 when
// no rank had an opinion). Besides success and the shared values, every rank agrees on the
// communicator's guard sequence number (a rank that skipped or added a collective call is out of
// step) and, when given, on `call`. Every mismatch throws invalid_argument on every rank naming
// the ranks that differ.
std::vector<std::int64_t> agree(const comm& c, std::exception_ptr local_error,
                                std::initializer_list<shared_value> shared = {});
std::vector<std::int64_t> agree(const comm& c, std::exception_ptr local_error,
                                const std::vector<shared_value>& shared,
                                const call_identity* call = nullptr);

// Runs fn() and agrees on its success.
template <class F>
void guarded(const comm& c, F&& fn) {
  std::exception_ptr e;
  try {
    fn();
  } catch (...) {
    e = std::current_exception();
  }
  agree(c, e);
}

}  // namespace spmdlearn
