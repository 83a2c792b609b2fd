// Communicators (self, threads, MPI) and the collective error guard.
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace sl = spmdlearn;
using tu::caught;

namespace {

// The value rank r contributes at position i: distinct per rank, exactly representable in float.
template <class T>
T contribution(int r, std::size_t i) {
  const int sign = (r + static_cast<int>(i)) % 2 ? -1 : 1;
  return static_cast<T>(sign * (3 * r + 1) * (static_cast<int>(i) + 1)) / static_cast<T>(2);
}

template <class T>
void check_allreduce(int p) {
  constexpr std::size_t n = 5;
  struct out {
    std::vector<T> sum, min, max, value_sum;
  };
  auto res = tu::on_threads<out>(p, [&](const sl::comm& c) {
    out o;
    for (auto* v : {&o.sum, &o.min, &o.max}) {
      v->resize(n);
      for (std::size_t i = 0; i < n; ++i) (*v)[i] = contribution<T>(c.rank(), i);
    }
    c.allreduce<T>(o.sum, sl::reduce_op::sum);
    c.allreduce<T>(o.min, sl::reduce_op::min);
    c.allreduce<T>(o.max, sl::reduce_op::max);
    o.value_sum = {c.allreduce_value<T>(static_cast<T>(c.rank() + 1), sl::reduce_op::sum)};
    return o;
  });
  for (std::size_t i = 0; i < n; ++i) {
    long double s = 0;
    T mn = contribution<T>(0, i), mx = mn;
    for (int r = 0; r < p; ++r) {
      s += contribution<T>(r, i);
      mn = std::min(mn, contribution<T>(r, i));
      mx = std::max(mx, contribution<T>(r, i));
    }
    for (int r = 0; r < p; ++r) {
      EXPECT_EQ(res[r].sum[i], static_cast<T>(s)) << "rank " << r << " i " << i;
      EXPECT_EQ(res[r].min[i], mn) << "rank " << r << " i " << i;
      EXPECT_EQ(res[r].max[i], mx) << "rank " << r << " i " << i;
    }
  }
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(res[r].value_sum[0], static_cast<T>(p * (p + 1) / 2));
    EXPECT_EQ(res[r].sum, res[0].sum);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Self communicator.

TEST(SelfComm, IsOneRankAndCollectivesAreIdentity) {
  auto c = sl::make_self_comm();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->local_size(), 1);
  EXPECT_EQ(c->name(), "self");

  std::vector<double> v{1.5, -2.0, 3.25};
  const auto orig = v;
  for (auto op : {sl::reduce_op::sum, sl::reduce_op::min, sl::reduce_op::max}) {
    c->allreduce<double>(v, op);
    EXPECT_EQ(v, orig);
  }
  std::vector<std::int64_t> iv{7, -9};
  c->allreduce<std::int64_t>(iv, sl::reduce_op::sum);
  EXPECT_EQ(iv, (std::vector<std::int64_t>{7, -9}));
  EXPECT_EQ(c->allreduce_value<std::int32_t>(41, sl::reduce_op::max), 41);

  const std::vector<float> send{1.f, 2.f, 3.f};
  EXPECT_EQ(c->allgather<float>(send), send);

  c->bcast<double>(v, 0);
  EXPECT_EQ(v, orig);
  c->barrier();

  auto sub = c->split(3, 0);
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(sub->rank(), 0);
  EXPECT_EQ(sub->size(), 1);
}

// ---------------------------------------------------------------------------------------------
// Thread communicator.

class ThreadComm : public ::testing::TestWithParam<int> {};

TEST_P(ThreadComm, RankAndSize) {
  const int p = GetParam();
  auto ids = tu::on_threads<std::vector<int>>(p, [](const sl::comm& c) {
    return std::vector<int>{c.rank(), c.size(), c.local_size()};
  });
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(ids[r][0], r);
    EXPECT_EQ(ids[r][1], p);
    EXPECT_EQ(ids[r][2], p);
  }
}

TEST_P(ThreadComm, AllreduceInt32) { check_allreduce<std::int32_t>(GetParam()); }
TEST_P(ThreadComm, AllreduceInt64) { check_allreduce<std::int64_t>(GetParam()); }
TEST_P(ThreadComm, AllreduceFloat) { check_allreduce<float>(GetParam()); }
TEST_P(ThreadComm, AllreduceDouble) { check_allreduce<double>(GetParam()); }

TEST_P(ThreadComm, AllreduceDoubleSumIsBitwiseIdentical) {
  // Values whose sum rounds: every rank must still hold the same bits.
  const int p = GetParam();
  auto res = tu::on_threads<std::vector<double>>(p, [](const sl::comm& c) {
    std::vector<double> v(64);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.1 * (c.rank() + 1) + 1e-17 * i + 1.0 / (3 + i);
    c.allreduce<double>(v, sl::reduce_op::sum);
    return v;
  });
  for (int r = 1; r < p; ++r) EXPECT_TRUE(tu::bitwise_equal(res[r], res[0])) << "rank " << r;
  for (std::size_t i = 0; i < res[0].size(); ++i) {
    long double s = 0;
    for (int r = 0; r < p; ++r) s += 0.1 * (r + 1) + 1e-17 * i + 1.0 / (3 + i);
    EXPECT_NEAR(res[0][i], static_cast<double>(s), 1e-14);
  }
}

TEST_P(ThreadComm, Allgather) {
  const int p = GetParam();
  auto res = tu::on_threads<std::vector<std::int64_t>>(p, [](const sl::comm& c) {
    const std::vector<std::int64_t> mine{c.rank(), 10 * c.rank() + 1, -c.rank()};
    return c.allgather<std::int64_t>(mine);
  });
  std::vector<std::int64_t> want;
  for (int r = 0; r < p; ++r) want.insert(want.end(), {r, 10 * r + 1, -r});
  for (int r = 0; r < p; ++r) EXPECT_EQ(res[r], want) << "rank " << r;

  // Doubles and the untyped entry point too.
  auto resd = tu::on_threads<std::vector<double>>(p, [](const sl::comm& c) {
    const double mine[2] = {c.rank() + 0.25, -1.0 / (c.rank() + 1)};
    std::vector<double> out(2 * c.size());
    c.allgather(mine, out.data(), 2, sl::comm_type::float64);
    return out;
  });
  for (int r = 0; r < p; ++r)
    for (int q = 0; q < p; ++q) {
      EXPECT_EQ(resd[r][2 * q], q + 0.25);
      EXPECT_EQ(resd[r][2 * q + 1], -1.0 / (q + 1));
    }
}

TEST_P(ThreadComm, BcastFromEveryRoot) {
  const int p = GetParam();
  for (int root = 0; root < p; ++root) {
    auto res = tu::on_threads<std::vector<double>>(p, [&](const sl::comm& c) {
      std::vector<double> v{c.rank() * 1.5, c.rank() - 7.0, 100.0 + c.rank()};
      c.bcast<double>(v, root);
      std::vector<char> text(5, static_cast<char>('a' + c.rank()));
      c.bcast<char>(text, root);
      for (char ch : text) v.push_back(ch);
      return v;
    });
    const std::vector<double> want{root * 1.5, root - 7.0, 100.0 + root, double('a' + root),
                                   double('a' + root), double('a' + root), double('a' + root),
                                   double('a' + root)};
    for (int r = 0; r < p; ++r) EXPECT_EQ(res[r], want) << "root " << root << " rank " << r;
  }
}

TEST_P(ThreadComm, SplitIntoTwoColors) {
  const int p = GetParam();
  // color = rank % 2; key = -rank reverses the order inside each color.
  auto res = tu::on_threads<std::vector<std::int64_t>>(p, [](const sl::comm& c) {
    auto sub = c.split(c.rank() % 2, -c.rank());
    const std::int64_t sum_old = sub->allreduce_value<std::int64_t>(c.rank(), sl::reduce_op::sum);
    const double mx = sub->allreduce_value<double>(c.rank() * 0.5, sl::reduce_op::max);
    const std::vector<std::int32_t> mine{c.rank()};
    auto members = sub->allgather<std::int32_t>(mine);
    std::vector<std::int64_t> o{sub->rank(), sub->size(), sum_old, static_cast<std::int64_t>(mx * 2)};
    o.insert(o.end(), members.begin(), members.end());
    // The parent still works after the split.
    o.push_back(c.allreduce_value<std::int64_t>(1, sl::reduce_op::sum));
    return o;
  });
  for (int r = 0; r < p; ++r) {
    const int color = r % 2;
    std::vector<std::int64_t> same;  // old ranks of my color, by key = -rank: descending
    for (int q = p - 1; q >= 0; --q)
      if (q % 2 == color) same.push_back(q);
    std::int64_t want_rank = 0, sum = 0, mx = 0;
    for (std::size_t k = 0; k < same.size(); ++k) {
      if (same[k] == r) want_rank = static_cast<std::int64_t>(k);
      sum += same[k];
      mx = std::max(mx, same[k]);
    }
    ASSERT_GE(res[r].size(), 4u + same.size() + 1);
    EXPECT_EQ(res[r][0], want_rank) << "rank " << r;
    EXPECT_EQ(res[r][1], static_cast<std::int64_t>(same.size())) << "rank " << r;
    EXPECT_EQ(res[r][2], sum) << "rank " << r;
    EXPECT_EQ(res[r][3], mx) << "rank " << r;
    for (std::size_t k = 0; k < same.size(); ++k) EXPECT_EQ(res[r][4 + k], same[k]);
    EXPECT_EQ(res[r].back(), p);
  }
}

TEST_P(ThreadComm, RunThreadsRethrowsLowestRankException) {
  const int p = GetParam();
  try {
    sl::run_threads(p, [](const sl::comm& c) {
      if (c.rank() == c.size() - 1 || c.rank() == 0)
        throw std::runtime_error("thread " + std::to_string(c.rank()));
    });
    FAIL() << "run_threads did not rethrow";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "thread 0");
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, ThreadComm, ::testing::Values(1, 2, 3, 4));

// ---------------------------------------------------------------------------------------------
// Collective error guard (core/guard.hpp).

class Guard : public ::testing::TestWithParam<int> {};

TEST_P(Guard, SuccessReturnsNormallyAndAgreesOnValues) {
  const int p = GetParam();
  auto res = tu::on_threads<std::vector<std::int64_t>>(p, [](const sl::comm& c) {
    sl::guarded(c, [] {});
    return sl::agree(c, nullptr, {{"n_features", 7}, {"dtype", 1, sl::dtype_labels}});
  });
  for (int r = 0; r < p; ++r) EXPECT_EQ(res[r], (std::vector<std::int64_t>{7, 1}));
}

TEST_P(Guard, InvalidArgumentOnOneRankIsRaisedEverywhere) {
  const int p = GetParam();
  for (int bad = 0; bad < p; ++bad) {
    auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
      sl::guarded(c, [&] {
        if (c.rank() == bad) throw sl::invalid_argument("X is not to my liking");
      });
    });
    EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, bad, "X is not to my liking"))
        << "bad rank " << bad << " of " << p;
    for (const caught& c : got) EXPECT_EQ(c.what.find("failed too"), std::string::npos) << c.what;
  }
}

TEST_P(Guard, ErrorKindsAreMapped) {
  const int p = GetParam();
  const int bad = p - 1;
  struct kase {
    std::function<void()> raise;
    sl::error_kind kind;
    std::string text;
  };
  const std::vector<kase> cases{
      {[] { throw std::bad_alloc(); }, sl::error_kind::out_of_memory, "out of memory"},
      {[] { throw sl::out_of_memory("device full"); }, sl::error_kind::out_of_memory, "device full"},
      {[] { throw sl::not_implemented("no such path"); }, sl::error_kind::not_implemented, "no such path"},
      {[] { throw sl::type_error("wrong type"); }, sl::error_kind::type_error, "wrong type"},
      {[] { throw std::invalid_argument("std bad arg"); }, sl::error_kind::invalid_argument, "std bad arg"},
      {[] { throw std::runtime_error("boom"); }, sl::error_kind::runtime, "boom"},
      {[] { throw 42; }, sl::error_kind::runtime, "unknown"},
  };
  for (const kase& k : cases) {
    auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
      sl::guarded(c, [&] {
        if (c.rank() == bad) k.raise();
      });
    });
    EXPECT_TRUE(tu::all_threw(got, k.kind, bad, k.text)) << k.text;
  }
  // The typed exceptions are catchable as their own class on every rank.
  auto got = tu::on_threads<int>(p, [&](const sl::comm& c) {
    try {
      sl::guarded(c, [&] {
        if (c.rank() == bad) throw std::bad_alloc();
      });
    } catch (const sl::out_of_memory&) {
      return 1;
    } catch (...) {
      return 2;
    }
    return 0;
  });
  for (int r = 0; r < p; ++r) EXPECT_EQ(got[r], 1) << "rank " << r;
}

TEST_P(Guard, SeveralFailingRanksNameTheFirstAndListTheOthers) {
  const int p = GetParam();
  if (p < 3) GTEST_SKIP() << "needs 3 ranks";
  auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
    sl::guarded(c, [&] {
      if (c.rank() >= 1) throw sl::invalid_argument("bad block on rank " + std::to_string(c.rank()));
    });
  });
  EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, 1, "bad block on rank 1"));
  EXPECT_NE(got[0].what.find("failed too"), std::string::npos) << got[0].what;
  EXPECT_NE(got[0].what.find(std::to_string(p - 1)), std::string::npos) << got[0].what;
}

TEST_P(Guard, MismatchedSharedValueNamesTheOddRank) {
  const int p = GetParam();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  for (int bad = 0; bad < p; ++bad) {
    auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
      sl::agree(c, nullptr, {{"n_features", c.rank() == bad ? 8 : 7}});
    });
    // With two ranks neither is the odd one out; the message still names both.
    const int named = (p == 2 && bad == 0) ? -1 : bad;
    EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, named, "n_features"))
        << "bad " << bad << " of " << p;
    EXPECT_NE(got[0].what.find("rank " + std::to_string(bad)), std::string::npos) << got[0].what;
    EXPECT_NE(got[0].what.find('8'), std::string::npos) << got[0].what;
    EXPECT_NE(got[0].what.find('7'), std::string::npos) << got[0].what;
  }
}

TEST_P(Guard, MismatchedLabelledValueUsesLabels) {
  const int p = GetParam();
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  const int bad = p - 1;
  auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
    sl::agree(c, nullptr, {{"n_features", 3}, {"dtype", c.rank() == bad ? 0 : 1, sl::dtype_labels}});
  });
  EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, p == 2 ? -1 : bad, "dtype"));
  EXPECT_NE(got[0].what.find("float32"), std::string::npos) << got[0].what;
  EXPECT_NE(got[0].what.find("float64"), std::string::npos) << got[0].what;
}

TEST_P(Guard, MinusOneMeansNoOpinion) {
  const int p = GetParam();
  for (int quiet = 0; quiet < p; ++quiet) {
    auto res = tu::on_threads<std::vector<std::int64_t>>(p, [&](const sl::comm& c) {
      return sl::agree(c, nullptr, {{"n_features", c.rank() == quiet ? -1 : 5}, {"other", -1}});
    });
    const std::int64_t want = p == 1 ? -1 : 5;  // alone, the quiet rank leaves it undecided
    for (int r = 0; r < p; ++r) EXPECT_EQ(res[r], (std::vector<std::int64_t>{want, -1})) << r;
  }
}

TEST_P(Guard, LocalErrorWinsOverMismatch) {
  // A rank that failed may not have computed its shared values: the error is what gets reported.
  const int p = GetParam();
  const int bad = p - 1;
  auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
    std::exception_ptr e;
    if (c.rank() == bad) e = std::make_exception_ptr(sl::invalid_argument("the real cause"));
    sl::agree(c, e, {{"n_features", c.rank() == bad ? 99 : 4}});
  });
  EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, bad, "the real cause"));
}

TEST_P(Guard, CallIdentityMismatchesNameTheCallParameterOrState) {
  const int p = GetParam();
  if (p < 2) GTEST_SKIP() << "needs two ranks";
  const int bad = p - 1;
  auto ident = [&](const sl::comm& c, const char* method, std::int64_t alpha, std::int64_t state_items) {
    sl::call_identity id{method, {{"alpha", alpha}, {"fit_intercept", 1}}, {}};
    for (std::int64_t i = 0; i < state_items; ++i) id.state.push_back({"coef_", 40 + i + (c.rank() == bad && i == 1)});
    return id;
  };
  // a different call
  auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
    const auto id = ident(c, c.rank() == bad ? "Ridge.score" : "Ridge.fit", 5, 0);
    sl::agree(c, nullptr, {}, &id);
  });
  EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, bad, "in Ridge.score while rank 0 is in Ridge.fit"));
  EXPECT_NE(got[0].what.find("Ridge.fit"), std::string::npos) << got[0].what;
  // a parameter that differs is named
  got = tu::catch_on_threads(p, [&](const sl::comm& c) {
    const auto id = ident(c, "Ridge.fit", c.rank() == bad ? 6 : 5, 0);
    sl::agree(c, nullptr, {}, &id);
  });
  EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, bad, "parameter alpha differs"));
  // state items that differ are named; state lists of different lengths are reported too
  got = tu::catch_on_threads(p, [&](const sl::comm& c) {
    const auto id = ident(c, "Ridge.partial_fit", 5, 3);
    sl::agree(c, nullptr, {}, &id);
  });
  EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, bad, "state coef_ differs"));
  got = tu::catch_on_threads(p, [&](const sl::comm& c) {
    const auto id = ident(c, "Ridge.partial_fit", 5, c.rank() == bad ? 1 : 3);
    sl::agree(c, nullptr, {}, &id);
  });
  EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, bad, "(1 against 3 items)"));
  // equal identities pass and the shared values are still agreed
  auto res = tu::on_threads<std::vector<std::int64_t>>(p, [&](const sl::comm& c) {
    const sl::call_identity id{"Ridge.fit", {{"alpha", 5}}, {{"coef_", 9}}};
    return sl::agree(c, nullptr, {{"n_features", 4}}, &id);
  });
  for (int r = 0; r < p; ++r) EXPECT_EQ(res[r], (std::vector<std::int64_t>{4}));
}

INSTANTIATE_TEST_SUITE_P(Ranks, Guard, ::testing::Values(1, 2, 3, 4));

// ---------------------------------------------------------------------------------------------
// MPI (run under mpirun -n 1..4 with --gtest_filter=Mpi*).

TEST(MpiComm, Collectives) {
  auto c = sl::make_world_comm();
  const int p = c->size(), me = c->rank();
  EXPECT_EQ(c->name(), "mpi");
  EXPECT_GE(me, 0);
  EXPECT_LT(me, p);

  std::vector<double> v{contribution<double>(me, 0), contribution<double>(me, 1)};
  auto mn = v, mx = v;
  c->allreduce<double>(v, sl::reduce_op::sum);
  c->allreduce<double>(mn, sl::reduce_op::min);
  c->allreduce<double>(mx, sl::reduce_op::max);
  for (std::size_t i = 0; i < 2; ++i) {
    double s = 0, lo = contribution<double>(0, i), hi = lo;
    for (int r = 0; r < p; ++r) {
      s += contribution<double>(r, i);
      lo = std::min(lo, contribution<double>(r, i));
      hi = std::max(hi, contribution<double>(r, i));
    }
    EXPECT_EQ(v[i], s);
    EXPECT_EQ(mn[i], lo);
    EXPECT_EQ(mx[i], hi);
  }
  EXPECT_EQ(c->allreduce_value<std::int64_t>(me + 1, sl::reduce_op::sum),
            static_cast<std::int64_t>(p) * (p + 1) / 2);
  EXPECT_EQ(c->allreduce_value<std::int32_t>(me, sl::reduce_op::max), p - 1);
  EXPECT_EQ(c->allreduce_value<float>(me + 0.5f, sl::reduce_op::min), 0.5f);

  const std::vector<std::int64_t> mine{me, -me};
  auto all = c->allgather<std::int64_t>(mine);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(2 * p));
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(all[2 * r], r);
    EXPECT_EQ(all[2 * r + 1], -r);
  }
  for (int root = 0; root < p; ++root) {
    std::vector<double> b{me * 2.5, 1.0 + me};
    c->bcast<double>(b, root);
    EXPECT_EQ(b, (std::vector<double>{root * 2.5, 1.0 + root}));
  }
  auto sub = c->split(me % 2, me);
  EXPECT_EQ(sub->rank(), me / 2);
  EXPECT_EQ(sub->size(), (p - me % 2 + 1) / 2);
  EXPECT_EQ(sub->allreduce_value<std::int64_t>(1, sl::reduce_op::sum), sub->size());
  c->barrier();
}

TEST(MpiGuard, SkippedCallMeetsTheNextOneAndIsNamed) {
  // The last rank skips "Est.fit": its "Est.score" meets the others' "Est.fit", every rank raises
  // naming both calls, and the next agreement lines up again.
  auto c = sl::make_world_comm();
  if (c->size() < 2) GTEST_SKIP() << "needs two ranks";
  const int last = c->size() - 1;
  const sl::call_identity fit{"Est.fit", {{"alpha", 1}}, {}}, score{"Est.score", {{"alpha", 1}}, {}};
  caught got = tu::catch_error([&] {
    if (c->rank() != last) sl::agree(*c, nullptr, {}, &fit);
    sl::agree(*c, nullptr, {}, &score);
  });
  EXPECT_TRUE(tu::all_threw({got}, sl::error_kind::invalid_argument, last, "in Est.score while rank 0 is in Est.fit"));
  EXPECT_EQ(sl::agree(*c, nullptr, {{"n_features", 3}}, &fit), (std::vector<std::int64_t>{3}));
}

TEST(MpiGuard, ErrorOnLastRankIsRaisedEverywhere) {
  auto c = sl::make_world_comm();
  const int last = c->size() - 1;
  caught got = tu::catch_error([&] {
    sl::guarded(*c, [&] {
      if (c->rank() == last) throw sl::invalid_argument("only the last rank objects");
    });
  });
  EXPECT_TRUE(tu::all_threw({got}, sl::error_kind::invalid_argument, last, "only the last rank objects"));
}
