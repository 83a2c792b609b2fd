// basic_statistics: parity with a long-double two-pass reference over every split of the rows,
// replicated results, weights, incremental fits and bad input, on thread ranks and under MPI.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace sl = spmdlearn;
namespace bs = spmdlearn::basic_statistics;

namespace {

// D = 13 exercises every code path of the statistics kernel: an 8-wide block, a 4-wide block and
// a single column.
constexpr std::int64_t N = 1000, D = 13;

using tu::tol;

// Every statistic, concatenated in declaration order (for replication checks).
std::vector<double> flatten(const bs::result& r) {
  std::vector<double> out;
  for (const auto* v : {&r.min, &r.max, &r.sum, &r.mean, &r.variance, &r.standard_deviation,
                        &r.sum_squares, &r.sum_squares_centered, &r.second_order_raw_moment,
                        &r.variation})
    out.insert(out.end(), v->begin(), v->end());
  return out;
}

void expect_matches(const bs::result& got, const tu::ref_stats& want, double rtol,
                    const std::string& where) {
  EXPECT_EQ(got.n_features, static_cast<std::int64_t>(want.mean.size())) << where;
  // min/max are data values: exact.
  EXPECT_EQ(got.min, want.min) << where;
  EXPECT_EQ(got.max, want.max) << where;
  EXPECT_TRUE(tu::near_rel(got.sum, want.sum, rtol)) << where << " sum";
  EXPECT_TRUE(tu::near_rel(got.mean, want.mean, rtol)) << where << " mean";
  EXPECT_TRUE(tu::near_rel(got.variance, want.variance, rtol)) << where << " variance";
  EXPECT_TRUE(tu::near_rel(got.standard_deviation, want.standard_deviation, rtol))
      << where << " standard_deviation";
  EXPECT_TRUE(tu::near_rel(got.sum_squares, want.sum_squares, rtol)) << where << " sum_squares";
  EXPECT_TRUE(tu::near_rel(got.sum_squares_centered, want.sum_squares_centered, rtol))
      << where << " sum_squares_centered";
  EXPECT_TRUE(tu::near_rel(got.second_order_raw_moment, want.second_order_raw_moment, rtol))
      << where << " second_order_raw_moment";
  EXPECT_TRUE(tu::near_rel(got.variation, want.variation, rtol)) << where << " variation";
}

// compute() on p thread ranks, rank r holding rows [off[r], off[r+1]).
template <class T>
std::vector<bs::result> compute_on_threads(int p, const std::vector<T>& x, std::int64_t d,
                                           const std::vector<std::int64_t>& off, bool zero_zero,
                                           const std::vector<T>* w = nullptr,
                                           unsigned options = bs::all) {
  return tu::on_threads<bs::result>(p, [&](const sl::comm& c) {
    std::optional<sl::vector_view<const T>> wv;
    if (w) wv = tu::vblock(*w, off, c.rank());
    return bs::compute<T>(c, tu::block(x, d, off, c.rank(), zero_zero), wv, options);
  });
}

void expect_replicated(const std::vector<bs::result>& res, const std::string& where) {
  const auto first = flatten(res[0]);
  for (std::size_t r = 1; r < res.size(); ++r)
    EXPECT_TRUE(flatten(res[r]) == first) << where << ": rank " << r << " differs from rank 0";
}

std::string describe(int p, int empty, bool zz) {
  return "p=" + std::to_string(p) + " empty=" + std::to_string(empty) + (zz ? " shape(0,0)" : " shape(0,d)");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST(BasicStatisticsOptions, ParseOption) {
  const auto& names = bs::option_names();
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(bs::parse_option("mean"), unsigned(bs::mean));
  EXPECT_EQ(bs::parse_option("min"), unsigned(bs::min));
  EXPECT_EQ(bs::parse_option("variation"), unsigned(bs::variation));
  EXPECT_EQ(bs::parse_option("second_order_raw_moment"), unsigned(bs::second_order_raw_moment));
  EXPECT_EQ(bs::parse_option("all"), unsigned(bs::all));
  unsigned seen = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(bs::parse_option(names[i]), 1u << i) << names[i];
    seen |= bs::parse_option(names[i]);
  }
  EXPECT_EQ(seen, unsigned(bs::all));
  EXPECT_THROW(bs::parse_option("bogus"), sl::invalid_argument);
  EXPECT_THROW(bs::parse_option(""), sl::invalid_argument);
  EXPECT_THROW(bs::parse_option("Mean"), sl::invalid_argument);
  try {
    bs::parse_option("bogus");
  } catch (const sl::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bogus"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("mean"), std::string::npos);  // lists the valid names
  }
}

TEST(BasicStatisticsOptions, OnlyRequestedResultsAreFilled) {
  const auto x = tu::make_data(50, 3, 11);
  auto c = sl::make_self_comm();
  const auto r = bs::compute<double>(*c, {x.data(), 50, 3}, std::nullopt, bs::mean | bs::variance);
  const auto ref = tu::reference_stats(x, 50, 3);
  EXPECT_TRUE(tu::near_rel(r.mean, ref.mean, 1e-12));
  EXPECT_TRUE(tu::near_rel(r.variance, ref.variance, 1e-12));
  for (const auto* v : {&r.min, &r.max, &r.sum, &r.standard_deviation, &r.sum_squares,
                        &r.sum_squares_centered, &r.second_order_raw_moment, &r.variation})
    EXPECT_TRUE(v->empty());
  // finalize on a state gives the same as compute.
  bs::state s;
  bs::partial_fit<double>(*c, s, {x.data(), 50, 3});
  EXPECT_EQ(s.n_rows, 50);
  EXPECT_EQ(s.n_features, 3);
  EXPECT_EQ(s.weight_sum, 50.0);
  const auto f = bs::finalize(s, bs::parse_option("mean") | bs::parse_option("variance"));
  EXPECT_EQ(f.mean, r.mean);
  EXPECT_EQ(f.variance, r.variance);
}

TEST(BasicStatisticsSelf, SingleRowHasNaNVariance) {
  const std::vector<double> x{1.0, -2.0, 4.0};
  auto c = sl::make_self_comm();
  const auto r = bs::compute<double>(*c, {x.data(), 1, 3});
  EXPECT_EQ(r.mean, x);
  EXPECT_EQ(r.min, x);
  EXPECT_EQ(r.max, x);
  for (double v : r.variance) EXPECT_TRUE(std::isnan(v));
  EXPECT_EQ(r.sum_squares_centered, (std::vector<double>{0, 0, 0}));
}

TEST(BasicStatisticsSelf, StridedView) {
  // A view into a wider row-major buffer (row_stride > cols).
  const std::int64_t n = 40, wide = 9, d = 4;
  const auto full = tu::make_data(n, wide, 5);
  std::vector<double> packed;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 2; j < 2 + d; ++j) packed.push_back(full[i * wide + j]);
  auto c = sl::make_self_comm();
  const auto r = bs::compute<double>(*c, {full.data() + 2, n, d, wide});
  expect_matches(r, tu::reference_stats(packed, n, d), 1e-12, "strided");
}

// ---------------------------------------------------------------------------------------------
// Thread ranks.

template <class T>
class BasicStatisticsThreads : public ::testing::Test {};
using Floating = ::testing::Types<float, double>;
TYPED_TEST_SUITE(BasicStatisticsThreads, Floating);

TYPED_TEST(BasicStatisticsThreads, ParityOverUnevenSplitsWithEmptyRank) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 1234));
  const auto ref = tu::reference_stats(tu::to_double(xt), N, D);
  for (int p = 1; p <= 4; ++p) {
    std::vector<int> empties{-1};
    if (p > 1) empties.insert(empties.end(), {0, p - 1});
    if (p > 2) empties.push_back(1);
    for (int empty : empties)
      for (bool zz : {false, true}) {
        if (empty < 0 && zz) continue;
        const auto off = tu::split_rows(N, p, empty);
        const auto res = compute_on_threads<T>(p, xt, D, off, zz);
        const std::string where = describe(p, empty, zz);
        expect_matches(res[0], ref, tol<T>(), where);
        expect_replicated(res, where);
      }
  }
}

TYPED_TEST(BasicStatisticsThreads, ManyChunksPerRank) {
  using T = TypeParam;
  const std::int64_t n = 20000, d = 3;
  const auto xt = tu::cast<T>(tu::make_data(n, d, 99));
  const auto ref = tu::reference_stats(tu::to_double(xt), n, d);
  for (int p = 1; p <= 3; ++p) {
    const auto res = compute_on_threads<T>(p, xt, d, tu::split_rows(n, p), false);
    expect_matches(res[0], ref, tol<T>(), "p=" + std::to_string(p));
    expect_replicated(res, "p=" + std::to_string(p));
  }
}

TYPED_TEST(BasicStatisticsThreads, LargeMeanSmallSpreadKeepsVariance) {
  using T = TypeParam;
  tu::gen_options o;
  o.loc0 = 1e4;
  o.loc_step = 1.0;
  o.scale0 = 0.01;
  o.scale_step = 0.0;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 77, o));
  const auto x = tu::to_double(xt);
  const auto ref = tu::reference_stats(x, N, D);
  for (int p = 1; p <= 4; ++p) {
    const auto res = compute_on_threads<T>(p, xt, D, tu::split_rows(N, p, p > 1 ? p - 1 : -1), false);
    const std::string where = "p=" + std::to_string(p);
    EXPECT_TRUE(tu::near_rel(res[0].variance, ref.variance, 1e-7)) << where;
    EXPECT_TRUE(tu::near_rel(res[0].standard_deviation, ref.standard_deviation, 1e-7)) << where;
    EXPECT_TRUE(tu::near_rel(res[0].sum_squares_centered, ref.sum_squares_centered, 1e-7)) << where;
    EXPECT_TRUE(tu::near_rel(res[0].mean, ref.mean, 1e-12)) << where;
    EXPECT_TRUE(tu::near_rel(res[0].variation, ref.variation, 1e-7)) << where;
    expect_replicated(res, where);
  }
}

TYPED_TEST(BasicStatisticsThreads, IntegerWeightsEqualRepeatedRows) {
  using T = TypeParam;
  const std::int64_t n = 300;
  auto xd = tu::make_data(n, D, 4321);
  std::mt19937_64 rng(8);
  std::uniform_int_distribution<int> wdist(0, 3);
  std::vector<T> w(n);
  for (auto& v : w) v = static_cast<T>(wdist(rng));
  w[0] = 0;
  w[1] = 2;
  // Zero-weight rows hold outliers that must not reach min/max.
  for (std::int64_t i = 0; i < n; ++i)
    if (w[i] == 0) xd[i * D + (i % D)] = (i % 2 ? 1e6 : -1e6);
  const auto xt = tu::cast<T>(xd);
  std::vector<double> repeated;
  for (std::int64_t i = 0; i < n; ++i)
    for (int k = 0; k < static_cast<int>(w[i]); ++k)
      repeated.insert(repeated.end(), xt.begin() + i * D, xt.begin() + (i + 1) * D);
  const std::int64_t n_rep = static_cast<std::int64_t>(repeated.size()) / D;
  const auto ref = tu::reference_stats(repeated, n_rep, D);
  for (int p = 1; p <= 4; ++p)
    for (int empty : {-1, p - 1}) {
      if (p == 1 && empty >= 0) continue;
      const auto off = tu::split_rows(n, p, empty);
      const auto res = compute_on_threads<T>(p, xt, D, off, empty >= 0, &w);
      const std::string where = "weighted p=" + std::to_string(p) + " empty=" + std::to_string(empty);
      expect_matches(res[0], ref, tol<T>(), where);
      expect_replicated(res, where);
    }
  // All-ones weights equal no weights.
  std::vector<T> ones(n, T(1));
  const auto off = tu::split_rows(n, 3);
  const auto a = compute_on_threads<T>(3, xt, D, off, false, &ones);
  const auto b = compute_on_threads<T>(3, xt, D, off, false);
  EXPECT_TRUE(tu::near_rel(flatten(a[0]), flatten(b[0]), 1e-13));
}

TYPED_TEST(BasicStatisticsThreads, IncrementalEqualsOneCompute) {
  using T = TypeParam;
  const auto xt = tu::cast<T>(tu::make_data(N, D, 555));
  const auto ref = tu::reference_stats(tu::to_double(xt), N, D);
  // Three blocks of the rows, each spread over the ranks (the middle one leaving rank 0 empty).
  const std::vector<std::int64_t> cuts{0, 300, 710, N};
  for (int p = 1; p <= 4; ++p) {
    struct out {
      bs::result inc, once;
      bs::state s;
      tu::caught failed_call;
    };
    auto res = tu::on_threads<out>(p, [&](const sl::comm& c) {
      out o;
      for (int b = 0; b < 3; ++b) {
        const std::int64_t rows = cuts[b + 1] - cuts[b];
        const auto off = tu::split_rows(rows, c.size(), (b == 1 && c.size() > 1) ? 0 : -1);
        std::vector<T> part(xt.begin() + cuts[b] * D, xt.begin() + cuts[b + 1] * D);
        bs::partial_fit<T>(c, o.s, tu::block(part, D, off, c.rank(), b == 1));
        if (b == 1) {
          // A failing call in between (no rank holds a row) must leave the state untouched.
          o.failed_call = tu::catch_error([&] { bs::partial_fit<T>(c, o.s, {nullptr, 0, D}); });
        }
      }
      o.inc = bs::finalize(o.s);
      o.once = bs::compute<T>(c, tu::block(xt, D, tu::split_rows(N, c.size()), c.rank()));
      return o;
    });
    const std::string where = "incremental p=" + std::to_string(p);
    expect_matches(res[0].inc, ref, tol<T>(), where);
    EXPECT_TRUE(tu::near_rel(flatten(res[0].inc), flatten(res[0].once), 1e-12)) << where;
    EXPECT_EQ(res[0].s.n_rows, N);
    EXPECT_EQ(res[0].s.weight_sum, double(N));
    EXPECT_EQ(res[0].s.n_features, D);
    for (int r = 0; r < p; ++r) {
      EXPECT_TRUE(flatten(res[r].inc) == flatten(res[0].inc)) << where << " rank " << r;
      EXPECT_TRUE(res[r].failed_call.thrown && res[r].failed_call.kind == sl::error_kind::invalid_argument)
          << where << " rank " << r << ": " << res[r].failed_call.what;
    }
  }
}

TYPED_TEST(BasicStatisticsThreads, BadInputRaisesOnEveryRank) {
  using T = TypeParam;
  const std::int64_t n = 200;
  const auto clean = tu::cast<T>(tu::make_data(n, D, 31));
  const std::vector<T> ones(n, T(1));
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  for (int p = 1; p <= 4; ++p) {
    const auto off = tu::split_rows(n, p);
    for (int bad = 0; bad < p; ++bad) {
      const std::string where = "p=" + std::to_string(p) + " bad=" + std::to_string(bad);
      const std::int64_t bad_row = off[bad + 1] - 1;  // the bad rank's last row
      auto with_value = [&](T v) {
        auto x = clean;
        x[bad_row * D + 2] = v;
        return x;
      };
      auto run = [&](const std::vector<T>& x, const std::vector<T>* w) {
        return tu::catch_on_threads(p, [&](const sl::comm& c) {
          std::optional<sl::vector_view<const T>> wv;
          if (w) wv = tu::vblock(*w, off, c.rank());
          bs::compute<T>(c, tu::block(x, D, off, c.rank()), wv);
        });
      };
      EXPECT_TRUE(tu::all_threw(run(with_value(nan), nullptr), sl::error_kind::invalid_argument, bad, "NaN")) << where;
      EXPECT_TRUE(tu::all_threw(run(with_value(inf), nullptr), sl::error_kind::invalid_argument, bad, "infinity")) << where;
      EXPECT_TRUE(tu::all_threw(run(with_value(-inf), nullptr), sl::error_kind::invalid_argument, bad, "infinity")) << where;

      // NaN in a row of weight 0 is still bad input.
      auto w0 = ones;
      w0[bad_row] = 0;
      EXPECT_TRUE(tu::all_threw(run(with_value(nan), &w0), sl::error_kind::invalid_argument, bad, "NaN"))
          << where << " (zero-weight row)";

      auto wneg = ones;
      wneg[bad_row] = T(-1);
      EXPECT_TRUE(tu::all_threw(run(clean, &wneg), sl::error_kind::invalid_argument, bad, "negative")) << where;
      auto wnan = ones;
      wnan[bad_row] = nan;
      EXPECT_TRUE(tu::all_threw(run(clean, &wnan), sl::error_kind::invalid_argument, bad, "sample_weight")) << where;

      // Weight vector one entry short on the bad rank.
      auto short_w = tu::catch_on_threads(p, [&](const sl::comm& c) {
        auto wv = tu::vblock(ones, off, c.rank());
        if (c.rank() == bad) wv.size -= 1;
        bs::compute<T>(c, tu::block(clean, D, off, c.rank()), std::optional(wv));
      });
      EXPECT_TRUE(tu::all_threw(short_w, sl::error_kind::invalid_argument, bad, "sample_weight")) << where;

      if (p > 1) {
        // n_features differs on the bad rank (a view of its rows without the last column).
        auto feat = tu::catch_on_threads(p, [&](const sl::comm& c) {
          auto v = tu::block(clean, D, off, c.rank());
          if (c.rank() == bad) v = sl::matrix_view<const T>(v.data, v.rows, D - 1, D);
          bs::compute<T>(c, v);
        });
        EXPECT_TRUE(tu::all_threw(feat, sl::error_kind::invalid_argument, (p == 2 && bad == 0) ? -1 : bad,
                                  "n_features"))
            << where;
        EXPECT_NE(feat[0].what.find("rank " + std::to_string(bad)), std::string::npos) << feat[0].what;

        // dtype differs on the bad rank: threads can mix float and double.
        auto mixed = tu::catch_on_threads(p, [&](const sl::comm& c) {
          if (c.rank() == bad) {
            const auto other = tu::cast<std::conditional_t<std::is_same_v<T, float>, double, float>>(
                tu::to_double(clean));
            bs::compute(c, tu::block(other, D, off, c.rank()));
          } else {
            bs::compute<T>(c, tu::block(clean, D, off, c.rank()));
          }
        });
        EXPECT_TRUE(tu::all_threw(mixed, sl::error_kind::invalid_argument, (p == 2 && bad == 0) ? -1 : bad, "dtype"))
            << where;
      }
    }

    // Nobody holds a row: (0, d) everywhere, (0, 0) everywhere, a mix.
    for (int shape = 0; shape < 3; ++shape) {
      auto got = tu::catch_on_threads(p, [&](const sl::comm& c) {
        const bool zz = shape == 1 || (shape == 2 && c.rank() % 2 == 1);
        bs::compute<T>(c, zz ? sl::matrix_view<const T>{nullptr, 0, 0} : sl::matrix_view<const T>{clean.data(), 0, D});
      });
      EXPECT_TRUE(tu::all_threw(got, sl::error_kind::invalid_argument, -1, "no rank holds any row"))
          << "p=" << p << " shape=" << shape;
    }
    // Weights that sum to zero over all ranks.
    const std::vector<T> zeros(n, T(0));
    auto zero_w = tu::catch_on_threads(p, [&](const sl::comm& c) {
      bs::compute<T>(c, tu::block(clean, D, off, c.rank()), std::optional(tu::vblock(zeros, off, c.rank())));
    });
    EXPECT_TRUE(tu::all_threw(zero_w, sl::error_kind::invalid_argument, -1, "sample_weight")) << "p=" << p;

    // A later partial_fit with a different n_features than the state, on the last rank only.
    const int last = p - 1;
    auto later = tu::catch_on_threads(p, [&](const sl::comm& c) {
      bs::state s;
      bs::partial_fit<T>(c, s, tu::block(clean, D, off, c.rank()));
      const std::int64_t d2 = (c.rank() == last) ? D - 2 : D;
      bs::partial_fit<T>(c, s, sl::matrix_view<const T>(clean.data(), 2, d2, D));
    });
    EXPECT_TRUE(tu::all_threw(later, sl::error_kind::invalid_argument, last, "features")) << "p=" << p;
  }
}

// ---------------------------------------------------------------------------------------------
// MPI: every rank builds the same matrix, takes an uneven slice (the last rank empty when
// size > 1), computes collectively, and compares with the reference over all rows.

template <class T>
void mpi_parity() {
  auto c = sl::make_world_comm();
  const int p = c->size(), me = c->rank();
  const auto xt = tu::cast<T>(tu::make_data(N, D, 2024));
  const auto ref = tu::reference_stats(tu::to_double(xt), N, D);
  const auto off = tu::split_rows(N, p, p > 1 ? p - 1 : -1);
  const auto r = bs::compute<T>(*c, tu::block(xt, D, off, me));
  expect_matches(r, ref, tol<T>(), "rank " + std::to_string(me) + " of " + std::to_string(p));

  // Identical on every rank: gather everyone's result vector.
  const auto mine = flatten(r);
  const auto all = c->allgather<double>(mine);
  for (int q = 0; q < p; ++q) {
    const std::vector<double> theirs(all.begin() + q * mine.size(), all.begin() + (q + 1) * mine.size());
    EXPECT_TRUE(theirs == mine) << "rank " << q << " differs from rank " << me;
  }

  // Weighted, with shape (0, 0) on the empty rank.
  std::vector<T> w(N);
  for (std::int64_t i = 0; i < N; ++i) w[i] = static_cast<T>(i % 3);
  std::vector<double> repeated;
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t k = 0; k < i % 3; ++k) repeated.insert(repeated.end(), xt.begin() + i * D, xt.begin() + (i + 1) * D);
  const auto wref = tu::reference_stats(repeated, static_cast<std::int64_t>(repeated.size()) / D, D);
  const auto rw = bs::compute<T>(*c, tu::block(xt, D, off, me, true), std::optional(tu::vblock(w, off, me)));
  expect_matches(rw, wref, tol<T>(), "weighted, rank " + std::to_string(me));
}

TEST(MpiBasicStatistics, ParityDouble) { mpi_parity<double>(); }
TEST(MpiBasicStatistics, ParityFloat) { mpi_parity<float>(); }

TEST(MpiBasicStatistics, IncrementalEqualsCompute) {
  auto c = sl::make_world_comm();
  const int p = c->size(), me = c->rank();
  const auto x = tu::make_data(N, D, 17);
  const auto ref = tu::reference_stats(x, N, D);
  bs::state s;
  const std::vector<std::int64_t> cuts{0, 400, N};
  for (int b = 0; b < 2; ++b) {
    std::vector<double> part(x.begin() + cuts[b] * D, x.begin() + cuts[b + 1] * D);
    const auto off = tu::split_rows(cuts[b + 1] - cuts[b], p, p == 1 ? -1 : (b == 0 ? 0 : p - 1));
    bs::partial_fit<double>(*c, s, tu::block(part, D, off, me));
  }
  expect_matches(bs::finalize(s), ref, 1e-12, "incremental rank " + std::to_string(me));
}

TEST(MpiBasicStatistics, NaNOnLastRankRaisesEverywhere) {
  auto c = sl::make_world_comm();
  const int p = c->size(), me = c->rank(), last = p - 1;
  auto x = tu::make_data(N, D, 3);
  const auto off = tu::split_rows(N, p);  // every rank holds rows
  x[(off[last + 1] - 1) * D + 4] = std::numeric_limits<double>::quiet_NaN();
  const auto got = tu::catch_error([&] { bs::compute<double>(*c, tu::block(x, D, off, me)); });
  EXPECT_TRUE(tu::all_threw({got}, sl::error_kind::invalid_argument, last, "NaN"));
  // The communicator is still usable afterwards.
  EXPECT_EQ(c->allreduce_value<std::int64_t>(1, sl::reduce_op::sum), p);
}

namespace {
struct scoped_env {
  std::string name;
  scoped_env(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~scoped_env() { unsetenv(name.c_str()); }
};
}  // namespace

TEST(BasicStatisticsThreadsPerRank, SameStatisticsOnOneOrManyThreads) {
  // Blocks of >= 2^15 rows per thread are split over SPMDLEARN_NUM_THREADS threads inside a rank.
  const std::int64_t n = 200003, d = 9;
  const auto x = tu::make_data(n, d, 4242);
  const auto ref = tu::reference_stats(x, n, d);
  auto self = sl::make_self_comm();
  for (const char* nt : {"1", "2", "5"}) {
    scoped_env env("SPMDLEARN_NUM_THREADS", nt);
    const auto r = bs::compute<double>(*self, sl::matrix_view<const double>(x.data(), n, d));
    expect_matches(r, ref, 1e-12, std::string("threads=") + nt);
  }
  // A NaN deep in the block is reported at its row of the whole block, whatever the thread count.
  auto bad = x;
  bad[180000 * d + 4] = std::numeric_limits<double>::quiet_NaN();
  for (const char* nt : {"1", "5"}) {
    scoped_env env("SPMDLEARN_NUM_THREADS", nt);
    try {
      bs::compute<double>(*self, sl::matrix_view<const double>(bad.data(), n, d));
      FAIL() << "no error with threads=" << nt;
    } catch (const sl::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("local row 180000, column 4"), std::string::npos) << e.what();
    }
  }
}
