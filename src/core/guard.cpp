#include "spmdlearn/core/guard.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>

#include "core/watchdog.hpp"
#include "spmdlearn/core/error.hpp"

namespace spmdlearn {

namespace {
std::string label(const shared_value& v, std::int64_t x) {
  if (v.labels && x >= 0) return v.labels[x];
  return std::to_string(x);
}

// The record every rank contributes: [kind, call name (call_words words), names digest,
// params digest, state digest, shared values...]. (No sequence number: the k-th exchange of one
// rank always meets the k-th of the others, so a count would always agree; a skipped call shows
// as a different call name, or as a missing rank.)
constexpr std::size_t call_words = 12;
constexpr std::size_t i_kind = 0, i_call = 1, i_names = i_call + call_words,
                      i_params = i_names + 1, i_state = i_params + 1, i_shared = i_state + 1;

// FNV-1a, 63 bits (non-negative: -1 means "no opinion").
struct digest {
  std::uint64_t h = 1469598103934665603ull;
  void add(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  void add(std::int64_t v) { add(&v, sizeof v); }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }
  std::int64_t value() const { return static_cast<std::int64_t>(h & 0x7fffffffffffffffull); }
};

using items = std::vector<std::pair<std::string, std::int64_t>>;

std::int64_t items_digest(const items& v) {
  digest d;
  d.add(static_cast<std::int64_t>(v.size()));
  for (const auto& [name, x] : v) d.add(x);
  return d.value();
}

std::string call_of(const std::vector<std::int64_t>& all, std::size_t k, int r) {
  char text[call_words * 8 + 1] = {};
  std::memcpy(text, all.data() + static_cast<std::size_t>(r) * k + i_call, call_words * 8);
  return text;
}

// The value most ranks hold at field i (ties: the lowest rank's), and the rank that holds it first,
// so that an error names the rank that is out of line -- not rank 1 when rank 0 is the odd one.
std::pair<std::int64_t, int> majority(const std::vector<std::int64_t>& all, std::size_t k, int p,
                                      std::size_t i) {
  std::map<std::int64_t, int> count;
  for (int r = 0; r < p; ++r)
    if (all[r * k + i] >= 0) ++count[all[r * k + i]];
  std::int64_t best = -1;
  int ref = -1;
  for (int r = 0; r < p; ++r) {
    const std::int64_t v = all[r * k + i];
    if (v >= 0 && (ref < 0 || count[v] > count[best])) {
      best = v;
      ref = r;
    }
  }
  return {best, ref};
}

// Which items differ between ranks, named (failure path only: every rank takes it, since every
// rank saw the same combined digests). The item lists may differ in length (a state fitted on some
// ranks only): their lengths are exchanged first.
[[noreturn]] void throw_item_mismatch(const comm& c, const items& mine, const char* what,
                                      const char* advice) {
  const int p = c.size();
  const std::int64_t my_n = static_cast<std::int64_t>(mine.size());
  std::vector<std::int64_t> counts(static_cast<std::size_t>(p));
  c.allgather(&my_n, counts.data(), 1, comm_type::int64);
  const auto [n_ref, n_ref_rank] = majority(counts, 1, p, 0);
  for (int r = 0; r < p; ++r)
    if (counts[r] != n_ref)
      throw invalid_argument("rank " + std::to_string(r) + ": the estimator's " + what + " differs from rank " +
                                 std::to_string(n_ref_rank) + "'s (" + std::to_string(counts[r]) + " against " +
                                 std::to_string(n_ref) + " items); " + advice,
                             r);
  const std::size_t n = mine.size();
  std::vector<std::int64_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = mine[i].second;
  std::vector<std::int64_t> all(n * static_cast<std::size_t>(p));
  if (n) c.allgather(v.data(), all.data(), n, comm_type::int64);
  std::string names;
  int bad_rank = -1, ref_rank = -1, listed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto [ref, ref_r] = majority(all, n, p, i);
    for (int r = 0; r < p; ++r)
      if (all[r * n + i] >= 0 && all[r * n + i] != ref) {
        if (bad_rank < 0) {
          bad_rank = r;
          ref_rank = ref_r;
        }
        if (r == bad_rank && listed < 6) names += (listed++ ? ", " : "") + mine[i].first;
        break;
      }
  }
  if (bad_rank < 0)  // the items agree but the combined digests did not: should not happen
    throw invalid_argument(std::string("the ranks disagree on the estimator's ") + what + "; " + advice, -1);
  throw invalid_argument("rank " + std::to_string(bad_rank) + ": the estimator's " + what + " " +
                             names + (listed > 1 ? " differ" : " differs") + " from rank " +
                             std::to_string(ref_rank) + "'s; " + advice,
                         bad_rank);
}
}  // namespace

std::vector<std::int64_t> agree(const comm& c, std::exception_ptr local_error,
                                std::initializer_list<shared_value> shared) {
  return agree(c, local_error, std::vector<shared_value>(shared));
}

std::vector<std::int64_t> agree(const comm& c, std::exception_ptr local_error,
                                const std::vector<shared_value>& shared, const call_identity* call) {
  const std::size_t k = i_shared + shared.size();
  std::string message;
  std::vector<std::int64_t> mine(k, -1);
  mine[i_kind] = local_error ? static_cast<std::int64_t>(classify(local_error, message)) : 0;
  if (call) detail::set_current_call(call->call);
  std::fill(mine.begin() + i_call, mine.begin() + i_call + call_words, 0);
  if (call) {
    std::memcpy(mine.data() + i_call, call->call.data(), std::min(call->call.size(), call_words * 8 - 1));
    digest names;  // the parameters' names (the state's may differ: fitted on some ranks only)
    for (const auto& [name, x] : call->params) names.add(name);
    mine[i_names] = names.value();
    mine[i_params] = items_digest(call->params);
    mine[i_state] = items_digest(call->state);
  }
  for (std::size_t i = 0; i < shared.size(); ++i) mine[i_shared + i] = shared[i].value;

  // The one collective of the success path.
  const int p = c.size();
  std::vector<std::int64_t> all(k * static_cast<std::size_t>(p));
  std::string what = call ? call->call : detail::current_call();
  if (what.empty()) what = "a spmdlearn call";
  c.guard_exchange(mine.data(), all.data(), k, what);

  int first = -1;
  std::vector<int> failed;
  for (int r = 0; r < p; ++r)
    if (all[r * k + i_kind] != 0) {
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

  // Are the ranks in the same call? (An empty name is an internal step of a call.)
  for (int r = 1; r < p; ++r)
    if (call_of(all, k, r) != call_of(all, k, 0)) {
      const std::string a = call_of(all, k, 0), b = call_of(all, k, r);
      auto show = [](const std::string& s) { return s.empty() ? std::string("an internal step of a call") : s; };
      throw invalid_argument("rank " + std::to_string(r) + ": in " + show(b) + " while rank 0 is in " +
                                 show(a) +
                                 ": the ranks are not in the same collective call; every rank must "
                                 "make the same collective calls (fit, partial_fit, score, ...) in "
                                 "the same order (a rank that skipped a call meets the others' next one)",
                             r);
    }
  if (call) {
    const auto [names, names_r] = majority(all, k, p, i_names);
    for (int r = 0; r < p; ++r)
      if (all[r * k + i_names] != names)
        throw invalid_argument("rank " + std::to_string(r) + ": " + call->call +
                                   " has different parameter names than on rank " +
                                   std::to_string(names_r) +
                                   " (different estimator classes or spmdlearn versions?)",
                               r);
    auto differs = [&](std::size_t i) {
      for (int r = 1; r < p; ++r)
        if (all[r * k + i] != all[i]) return true;
      return false;
    };
    if (differs(i_params))
      throw_item_mismatch(c, call->params, "parameter",
                          "every rank must construct the estimator with the same parameters "
                          "(compared by exact value: arrays by dtype, shape and content)");
    if (differs(i_state))
      throw_item_mismatch(c, call->state, "state",
                          "this call reads the fitted state, which must be the same on every rank "
                          "(was the estimator fitted, restored or modified on some ranks only?)");
  }

  std::vector<std::int64_t> agreed(shared.size(), -1);
  for (std::size_t i = 0; i < shared.size(); ++i) {
    const std::size_t f = i_shared + i;
    const auto [ref_value, ref] = majority(all, k, p, f);
    agreed[i] = ref_value;
    for (int r = 0; r < p; ++r) {
      const std::int64_t v = all[r * k + f];
      if (v >= 0 && v != ref_value)
        throw invalid_argument("rank " + std::to_string(r) + ": " + shared[i].name + " is " +
                                   label(shared[i], v) + " but rank " + std::to_string(ref) +
                                   " has " + label(shared[i], ref_value) +
                                   "; it must be the same on every rank",
                               r);
    }
  }
  return agreed;
}

}  // namespace spmdlearn
