// Sample retention: which samples a pass deletes and when passes run, on a
// FakeClock against a real SQLite store.
#include "controller/sample_retention.h"

#include <vector>

#include "absl/status/status.h"
#include "controller/store/sqlite_store.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

constexpr absl::Duration kDay = absl::Hours(24);

class SampleRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteOptions o;
    o.path = ":memory:";
    auto store = SqliteStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  void AddSample(absl::Time taken_at) {
    SampleRecord s;
    s.attempt_id = 1;
    s.step_seq = ++seq_;
    s.agent_id = "a";
    s.taken_at = taken_at;
    ASSERT_TRUE(store_->RecordSamples({s}).ok());
  }

  // The deletion the controller binds: the store's.
  DeleteSamplesBefore DeleteFromStore() {
    return [this](absl::Time cutoff) {
      return store_->DeleteSamplesBefore(cutoff);
    };
  }

  std::vector<absl::Time> Remaining() {
    std::vector<absl::Time> out;
    auto samples = store_->ListSamples(1);
    EXPECT_TRUE(samples.ok()) << samples.status();
    if (samples.ok())
      for (const SampleRecord& s : *samples) out.push_back(s.taken_at);
    return out;
  }

  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  int64_t seq_ = 0;
};

TEST_F(SampleRetentionTest, FirstCallDeletesSamplesOlderThanTheRetention) {
  const absl::Time t0 = clock_.Now();
  AddSample(t0 - 40 * kDay);
  AddSample(t0 - 31 * kDay);
  AddSample(t0 - 29 * kDay);
  AddSample(t0 - absl::Hours(1));
  SampleRetention r(DeleteFromStore(), &clock_,
                    {});  // default: 30 days, hourly
  auto deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_TRUE(deleted->has_value());
  EXPECT_EQ(**deleted, 2);
  EXPECT_EQ(Remaining(),
            (std::vector<absl::Time>{t0 - 29 * kDay, t0 - absl::Hours(1)}));
  EXPECT_EQ(r.last_cutoff(), t0 - 30 * kDay);
}

TEST_F(SampleRetentionTest, RunsAgainOnlyOnceThePeriodHasPassed) {
  const absl::Time t0 = clock_.Now();
  SampleRetention r(DeleteFromStore(), &clock_, {});
  ASSERT_TRUE(r.RunIfDue().ok());
  AddSample(t0 - 31 * kDay);  // arrives late (an agent's resend)
  AddSample(t0 - 29 * kDay - absl::Minutes(30));
  auto deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(deleted->has_value()) << "a pass right after the last one";
  clock_.Advance(absl::Minutes(59));
  deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(deleted->has_value()) << "59 minutes after the last pass";
  EXPECT_EQ(Remaining().size(), 2u);
  clock_.Advance(absl::Minutes(1));
  deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok());
  ASSERT_TRUE(deleted->has_value()) << "an hour after the last pass";
  EXPECT_EQ(**deleted, 1);
  EXPECT_EQ(Remaining(),
            (std::vector<absl::Time>{t0 - 29 * kDay - absl::Minutes(30)}));
  // A day later the other one has aged past the retention as well.
  clock_.Advance(kDay);
  deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok());
  ASSERT_TRUE(deleted->has_value());
  EXPECT_EQ(**deleted, 1);
  EXPECT_TRUE(Remaining().empty());
}

TEST_F(SampleRetentionTest, ZeroKeepsSamplesForever) {
  AddSample(clock_.Now() - 3650 * kDay);
  SampleRetentionOptions o;
  o.keep = absl::ZeroDuration();
  SampleRetention r(DeleteFromStore(), &clock_, o);
  for (int i = 0; i < 3; ++i) {
    auto deleted = r.RunIfDue();
    ASSERT_TRUE(deleted.ok());
    EXPECT_FALSE(deleted->has_value());
    clock_.Advance(absl::Hours(2));
  }
  EXPECT_EQ(Remaining().size(), 1u);
}

TEST_F(SampleRetentionTest, ShortRetentionAndPeriod) {
  const absl::Time t0 = clock_.Now();
  AddSample(t0 - absl::Minutes(20));
  AddSample(t0 - absl::Minutes(5));
  SampleRetentionOptions o;
  o.keep = absl::Minutes(10);
  o.every = absl::Minutes(10);
  SampleRetention r(DeleteFromStore(), &clock_, o);
  auto deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->value_or(-1), 1);
  clock_.Advance(absl::Minutes(10));
  deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->value_or(-1), 1);
  EXPECT_TRUE(Remaining().empty());
}

// The rule on its own, with a recording fake instead of a store.
TEST(SampleRetentionRuleTest, AFailedPassIsRetriedOnTheNextCall) {
  FakeClock clock;
  std::vector<absl::Time> cutoffs;
  bool fail = true;
  SampleRetentionOptions o;
  o.keep = absl::Hours(2);
  o.every = absl::Hours(1);
  SampleRetention r(
      [&](absl::Time cutoff) -> absl::StatusOr<int64_t> {
        cutoffs.push_back(cutoff);
        if (fail) return absl::UnavailableError("store down");
        return 7;
      },
      &clock, o);
  const absl::Time t0 = clock.Now();
  auto deleted = r.RunIfDue();
  EXPECT_EQ(deleted.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.last_cutoff(), absl::InfinitePast()) << "no pass completed";
  fail = false;
  clock.Advance(absl::Minutes(1));
  deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->value_or(-1), 7) << "retried at once, not an hour later";
  EXPECT_EQ(r.last_cutoff(), t0 + absl::Minutes(1) - absl::Hours(2));
  EXPECT_EQ(cutoffs,
            (std::vector<absl::Time>{t0 - absl::Hours(2),
                                     t0 + absl::Minutes(1) - absl::Hours(2)}));
  clock.Advance(absl::Minutes(59));
  deleted = r.RunIfDue();
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(deleted->has_value()) << "59 minutes after the last pass";
  EXPECT_EQ(cutoffs.size(), 2u);
}

TEST(SampleRetentionRuleTest, ZeroKeepNeverCallsTheDeletion) {
  FakeClock clock;
  int calls = 0;
  SampleRetentionOptions o;
  o.keep = absl::ZeroDuration();
  SampleRetention r(
      [&](absl::Time) -> absl::StatusOr<int64_t> {
        ++calls;
        return 0;
      },
      &clock, o);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(r.RunIfDue().ok());
    clock.Advance(absl::Hours(2));
  }
  EXPECT_EQ(calls, 0);
}

TEST(ParseSampleRetentionTest, AcceptsDaysDurationsAndZero) {
  EXPECT_EQ(*ParseSampleRetention("30d"), absl::Hours(720));
  EXPECT_EQ(*ParseSampleRetention("1.5d"), absl::Hours(36));
  EXPECT_EQ(*ParseSampleRetention("12h"), absl::Hours(12));
  EXPECT_EQ(*ParseSampleRetention("90m"), absl::Minutes(90));
  EXPECT_EQ(*ParseSampleRetention("0"), absl::ZeroDuration());
  for (const char* bad : {"", "30", "d", "-1d", "thirty days", "5x", "-3h"}) {
    auto r = ParseSampleRetention(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "'";
    if (!r.ok()) {
      EXPECT_NE(std::string(r.status().message()).find("30d"),
                std::string::npos)
          << r.status();
    }
  }
}

}  // namespace
}  // namespace benchfleet
