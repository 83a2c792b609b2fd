// Threads as ranks: a communicator for fast, in-process distributed tests. Every collective
// publishes a pointer per rank, meets at a barrier, reads the others in rank order, and meets again
// before anyone may reuse its buffer.
#include <algorithm>
#include <barrier>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "core/comm_detail.hpp"

namespace spmdlearn {
namespace {

struct group {
  explicit group(int n) : size(n), bar(n), ptr(n), aux(n), sub(n) {}
  int size;
  std::barrier<> bar;
  std::vector<const void*> ptr;
  std::vector<std::int64_t> aux;
  std::vector<std::shared_ptr<group>> sub;
};

class thread_comm final : public comm {
 public:
  thread_comm(std::shared_ptr<group> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->size; }
  int local_size() const override { return g_->size; }

  void allreduce(void* buf, std::size_t count, comm_type t, reduce_op op) const override {
    const std::size_t bytes = count * element_size(t);
    std::vector<char> acc(bytes);
    publish(buf);
    copy_elements(g_->ptr[0], acc.data(), count, t);
    for (int r = 1; r < g_->size; ++r) reduce_into(acc.data(), g_->ptr[r], count, t, op);
    g_->bar.arrive_and_wait();
    copy_elements(acc.data(), buf, count, t);
  }
  void allgather(const void* send, void* recv, std::size_t count, comm_type t) const override {
    const std::size_t bytes = count * element_size(t);
    std::vector<char> own(static_cast<const char*>(send), static_cast<const char*>(send) + bytes);
    publish(own.data());
    for (int r = 0; r < g_->size; ++r)
      copy_elements(g_->ptr[r], static_cast<char*>(recv) + r * bytes, count, t);
    g_->bar.arrive_and_wait();
  }
  void bcast(void* buf, std::size_t count, comm_type t, int root) const override {
    const std::size_t bytes = count * element_size(t);
    std::vector<char> tmp(bytes);
    publish(buf);
    copy_elements(g_->ptr[root], tmp.data(), count, t);
    g_->bar.arrive_and_wait();
    copy_elements(tmp.data(), buf, count, t);
  }
  void barrier() const override { g_->bar.arrive_and_wait(); }

  std::unique_ptr<comm> split(int color, int key) const override {
    const int n = g_->size;
    std::vector<std::int64_t> mine{color, key}, all(2 * n);
    allgather(mine.data(), all.data(), 2, comm_type::int64);
    // Members of my color ordered by (key, old rank); the first one creates the group.
    std::vector<std::pair<std::int64_t, int>> members;
    for (int r = 0; r < n; ++r)
      if (all[2 * r] == color) members.push_back({all[2 * r + 1], r});
    std::sort(members.begin(), members.end());
    const int leader = members.front().second;
    if (leader == rank_) g_->sub[rank_] = std::make_shared<group>(int(members.size()));
    g_->bar.arrive_and_wait();
    std::shared_ptr<group> sub = g_->sub[leader];
    int new_rank = 0;
    while (members[new_rank].second != rank_) ++new_rank;
    g_->bar.arrive_and_wait();
    if (leader == rank_) g_->sub[rank_].reset();
    return std::make_unique<thread_comm>(sub, new_rank);
  }
  [[noreturn]] void abort(int) const override { std::abort(); }
  std::string name() const override { return "threads"; }

 private:
  void publish(const void* p) const {
    g_->ptr[rank_] = p;
    g_->bar.arrive_and_wait();
  }
  std::shared_ptr<group> g_;
  int rank_;
};

}  // namespace

void run_threads(int n, const std::function<void(const comm&)>& fn) {
  auto g = std::make_shared<group>(n);
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      thread_comm c(g, r);
      try {
        fn(c);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace spmdlearn
