#include "spmdlearn/core/guard.hpp"

#include <map>
#include <string>

#include "spmdlearn/core/error.hpp"

namespace spmdlearn {

namespace {
std::string label(const shared_value& v, std::int64_t x) {
  if (v.labels && x >= 0) return v.labels[x];
  return std::to_string(x);
}
}  // namespace

std::vector<std::int64_t> agree(const comm& c, std::exception_ptr local_error,
                                std::initializer_list<shared_value> shared) {
  return agree(c, local_error, std::vector<shared_value>(shared));
}

std::vector<std::int64_t> agree(const comm& c, std::exception_ptr local_error,
                                const std::vector<shared_value>& shared) {
  const std::size_t k = shared.size() + 1;
  std::string message;
  std::vector<std::int64_t> mine(k);
  mine[0] = local_error ? static_cast<std::int64_t>(classify(local_error, message)) : 0;
  for (std::size_t i = 0; i < shared.size(); ++i) mine[i + 1] = shared[i].value;

  // The one collective of the success path.
  const int p = c.size();
  std::vector<std::int64_t> all = c.allgather<std::int64_t>(mine);

  int first = -1;
  std::vector<int> failed;
  for (int r = 0; r < p; ++r)
    if (all[r * k] != 0) {
      if (first < 0) first = r;
      failed.push_back(r);
    }
  if (first >= 0) {
    // Only on failure: the first failing rank broadcasts its message.
    std::int64_t len = static_cast<std::int64_t>(message.size());
    c.bcast(std::span<std::int64_t>(&len, 1), first);
    std::string text(static_cast<std::size_t>(len), '\0');
    if (c.rank() == first) text = message;
    c.bcast(std::span<char>(text.data(), text.size()), first);
    std::string full = "rank " + std::to_string(first) + ": " + text;
    if (failed.size() > 1) {
      full += " (rank";
      full += failed.size() > 2 ? "s " : " ";
      for (std::size_t i = 1; i < failed.size(); ++i)
        full += (i > 1 ? ", " : "") + std::to_string(failed[i]);
      full += " failed too)";
    }
    throw_error(static_cast<error_kind>(all[first * k]), full, first);
  }

  std::vector<std::int64_t> agreed(shared.size(), -1);
  for (std::size_t i = 0; i < shared.size(); ++i) {
    int ref = -1;
    bool mismatch = false;
    for (int r = 0; r < p; ++r) {
      const std::int64_t v = all[r * k + i + 1];
      if (v < 0) continue;
      if (ref < 0) {
        ref = r;
        agreed[i] = v;
      } else if (v != agreed[i]) {
        mismatch = true;
      }
    }
    if (!mismatch) continue;
    // Failure path only: take the value most ranks hold as the reference (ties: the lowest rank's)
    // so that the error names the rank that is out of line -- not rank 1 when rank 0 is the odd one.
    std::map<std::int64_t, int> count;
    for (int r = 0; r < p; ++r)
      if (all[r * k + i + 1] >= 0) ++count[all[r * k + i + 1]];
    for (int r = 0; r < p; ++r) {
      const std::int64_t v = all[r * k + i + 1];
      if (v >= 0 && count[v] > count[agreed[i]]) {
        ref = r;
        agreed[i] = v;
      }
    }
    for (int r = 0; r < p; ++r) {
      const std::int64_t v = all[r * k + i + 1];
      if (v >= 0 && v != agreed[i])
        throw invalid_argument("rank " + std::to_string(r) + ": " + shared[i].name + " is " +
                                   label(shared[i], v) + " but rank " + std::to_string(ref) +
                                   " has " + label(shared[i], agreed[i]) +
                                   "; it must be the same on every rank",
                               r);
    }
  }
  return agreed;
}

}  // namespace spmdlearn
