// Tests for the baseline drift comparison (controller/history/baseline_drift):
// the noise threshold at and around its boundary, zero spread, tiny n, missing
// inputs, reading the baseline back from stored reports, and choosing the
// previous comparable attempt by fingerprint and commit.
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "controller/history/baseline_drift.h"
#include "controller/report/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet::history {
namespace {

using ::testing::HasSubstr;

// n values, half at centre - d and half at centre + d: median `centre`, raw
// MAD `d`.
std::vector<double> Spread(double centre, double d, int n) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(i % 2 == 0 ? centre - d : centre + d);
  return v;
}

BaselineStats Before(double median, double mad, int64_t n,
                     const std::string& input = "one") {
  BaselineStats b;
  b.input = input;
  b.median = median;
  b.mad = mad;
  b.n = n;
  return b;
}

// With MAD 10 and n 16 on both sides the threshold is
// 1.96 * sqrt(2) * 1.2533 * 1.4826 * 10 / 4 = 12.876 (12.9 % of 100).
constexpr double kNoise16 = 12.876;

TEST(BaselineDriftTest, MoveJustInsideTheCombinedIntervalIsNotFlagged) {
  const InputDrift d = CompareBaseline(Spread(100 + kNoise16 - 0.05, 10, 16),
                                       Before(100, 10, 16));
  ASSERT_TRUE(d.compared) << d.why_not;
  EXPECT_FALSE(d.moved);
  EXPECT_NEAR(d.noise, kNoise16 / 100, 1e-4);
  EXPECT_NEAR(d.change, (kNoise16 - 0.05) / 100, 1e-9);
}

TEST(BaselineDriftTest, MoveJustOutsideTheCombinedIntervalIsFlaggedBothWays) {
  const InputDrift up = CompareBaseline(Spread(100 + kNoise16 + 0.05, 10, 16),
                                        Before(100, 10, 16));
  ASSERT_TRUE(up.compared);
  EXPECT_TRUE(up.moved);
  const InputDrift down = CompareBaseline(Spread(100 - kNoise16 - 0.05, 10, 16),
                                          Before(100, 10, 16));
  ASSERT_TRUE(down.compared);
  EXPECT_TRUE(down.moved);
  EXPECT_LT(down.change, 0);
}

TEST(BaselineDriftTest, MoreRunsNarrowTheNoise) {
  // Same spread, 4x the runs on both sides: half the standard error.
  const InputDrift d =
      CompareBaseline(Spread(108, 10, 64), Before(100, 10, 64));
  ASSERT_TRUE(d.compared);
  EXPECT_NEAR(d.noise, kNoise16 / 2 / 100, 1e-4);
  EXPECT_TRUE(d.moved);
  // ... which 16 runs would not have resolved.
  EXPECT_FALSE(CompareBaseline(Spread(108, 10, 16), Before(100, 10, 16)).moved);
}

TEST(BaselineDriftTest, ZeroSpreadFallsBackToTheOnePercentFloor) {
  const std::vector<double> same(10, 100.0);
  const InputDrift at_floor =
      CompareBaseline(std::vector<double>(10, 101.0), Before(100, 0, 10));
  ASSERT_TRUE(at_floor.compared);
  EXPECT_DOUBLE_EQ(at_floor.noise, 0.01);
  EXPECT_FALSE(at_floor.moved) << "a move equal to the floor is not more";
  EXPECT_TRUE(
      CompareBaseline(std::vector<double>(10, 101.5), Before(100, 0, 10))
          .moved);
  EXPECT_FALSE(
      CompareBaseline(std::vector<double>(10, 99.5), Before(100, 0, 10)).moved);
  const InputDrift unchanged = CompareBaseline(same, Before(100, 0, 10));
  EXPECT_TRUE(unchanged.compared);
  EXPECT_FALSE(unchanged.moved);
  EXPECT_DOUBLE_EQ(unchanged.change, 0);
}

TEST(BaselineDriftTest, OlderReportWithoutMadUsesItsCv) {
  BaselineStats before;
  before.input = "one";
  before.median = 100;
  before.n = 16;
  before.cv = 0.1482;  // sigma 14.82, like MAD 10
  const InputDrift d = CompareBaseline(Spread(100, 10, 16), before);
  ASSERT_TRUE(d.compared);
  EXPECT_NEAR(d.noise, kNoise16 / 100, 1e-3);
}

TEST(BaselineDriftTest, TinySamplesAreNotCompared) {
  const InputDrift few_now =
      CompareBaseline({150.0, 151.0}, Before(100, 1, 10));
  EXPECT_FALSE(few_now.compared);
  EXPECT_FALSE(few_now.moved);
  EXPECT_THAT(few_now.why_not, HasSubstr("too few runs"));
  EXPECT_THAT(few_now.why_not, HasSubstr("2 now, 10 before"));
  EXPECT_FALSE(CompareBaseline(Spread(150, 1, 10), Before(100, 1, 2)).compared);
  // Three runs each is enough.
  EXPECT_TRUE(CompareBaseline({150.0, 151.0, 152.0}, Before(100, 1, 3)).moved);
  EXPECT_FALSE(CompareBaseline({}, Before(100, 1, 10)).compared);
}

TEST(BaselineDriftTest, NonPositiveMedianIsNotCompared) {
  const InputDrift d = CompareBaseline(Spread(100, 1, 10), Before(0, 0, 10));
  EXPECT_FALSE(d.compared);
  EXPECT_THAT(d.why_not, HasSubstr("not positive"));
}

TEST(BaselineDriftTest, InputsOnOneSideOnlyAreReportedNotCompared) {
  std::map<std::string, std::vector<double>> now;
  now["both"] = std::vector<double>(10, 120.0);
  now["new"] = std::vector<double>(10, 50.0);
  const std::vector<InputDrift> drift = CompareBaselines(
      now, {Before(100, 0, 10, "both"), Before(100, 0, 10, "gone")});
  ASSERT_EQ(drift.size(), 3u);
  EXPECT_EQ(drift[0].input, "both");
  EXPECT_TRUE(drift[0].compared && drift[0].moved);
  EXPECT_NEAR(drift[0].change, 0.2, 1e-12);
  EXPECT_EQ(drift[1].input, "gone");
  EXPECT_FALSE(drift[1].compared);
  EXPECT_THAT(drift[1].why_not, HasSubstr("not measured in this attempt"));
  EXPECT_EQ(drift[2].input, "new");
  EXPECT_FALSE(drift[2].compared);
  EXPECT_THAT(drift[2].why_not, HasSubstr("earlier attempt"));
}

TEST(BaselineDriftTest, ReadsTheBaselineBackFromAStoredReport) {
  ExperimentReport report;
  report.metric = "wall_time";
  report.baseline_inputs.push_back({"one", 12, 1.5e8, 2e6, 0.02});
  report.baseline_inputs.push_back({"two", 10, 3e8, 0, 0});
  std::string metric;
  absl::StatusOr<std::vector<BaselineStats>> stats =
      BaselineStatsFromReportJson(ReportToJson(report), &metric);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(metric, "wall_time");
  ASSERT_EQ(stats->size(), 2u);
  EXPECT_EQ((*stats)[0].input, "one");
  EXPECT_EQ((*stats)[0].n, 12);
  EXPECT_DOUBLE_EQ((*stats)[0].median, 1.5e8);
  ASSERT_TRUE((*stats)[0].mad.has_value());
  EXPECT_DOUBLE_EQ(*(*stats)[0].mad, 2e6);
  EXPECT_EQ((*stats)[1].input, "two");
}

TEST(BaselineDriftTest, ReadsAnOlderReportFromItsCandidateRows) {
  const std::string old_report = R"({"metric": "wall_time", "candidates": [
    {"variant": "fast", "inputs": [
      {"input": "one", "n_baseline": 10, "baseline_median": 100.0,
       "baseline_cv": 0.05}]},
    {"variant": "other", "inputs": [
      {"input": "one", "n_baseline": 10, "baseline_median": 100.0,
       "baseline_cv": 0.05},
      {"input": "two", "n_baseline": 7, "baseline_median": 200.0,
       "baseline_cv": 0.01}]}]})";
  absl::StatusOr<std::vector<BaselineStats>> stats =
      BaselineStatsFromReportJson(old_report);
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(stats->size(), 2u);
  EXPECT_EQ((*stats)[0].input, "one");
  EXPECT_FALSE((*stats)[0].mad.has_value());
  EXPECT_DOUBLE_EQ((*stats)[0].cv, 0.05);
  EXPECT_EQ((*stats)[1].n, 7);
}

TEST(BaselineDriftTest, RejectsTextThatIsNotAReportWithBaselineRows) {
  EXPECT_FALSE(BaselineStatsFromReportJson("not json").ok());
  EXPECT_FALSE(BaselineStatsFromReportJson("[]").ok());
  EXPECT_FALSE(BaselineStatsFromReportJson(R"({"candidates": []})").ok());
}

std::string ReportWith(double median) {
  ExperimentReport r;
  r.metric = "wall_time";
  r.baseline_inputs.push_back({"one", 10, median, 1, 0.01});
  return ReportToJson(r);
}

PastAttempt Past(int64_t id, const std::string& env, double median,
                 bool completed = true) {
  PastAttempt p;
  p.experiment_id = id;
  p.experiment_number = id;
  p.completed = completed;
  p.completed_at = absl::FromUnixSeconds(1'700'000'000 + id * 3600);
  p.environment_json = env;
  p.report_json = ReportWith(median);
  return p;
}

constexpr char kHere[] = R"({"fingerprint": "fp-1", "commit": "abc"})";

TEST(BaselineReferenceTest,
     PicksTheNewestAttemptOnTheSameFingerprintAndCommit) {
  const std::vector<PastAttempt> history = {
      Past(1, kHere, 100),
      Past(2, kHere, 110),
      Past(3, R"({"fingerprint": "fp-2", "commit": "abc"})", 120),
      Past(4, R"({"fingerprint": "fp-1", "commit": "def"})", 130),
      Past(5, kHere, 140, /*completed=*/false),
      Past(6, "", 150),
      Past(9, kHere, 160),  // the current experiment itself
  };
  const BaselineReference ref = FindBaselineReference(kHere, 9, history);
  ASSERT_TRUE(ref.available) << ref.why_not;
  EXPECT_EQ(ref.experiment_id, 2);
  EXPECT_EQ(ref.completed_at, absl::FromUnixSeconds(1'700'000'000 + 2 * 3600));
  EXPECT_EQ(ref.metric, "wall_time");
  ASSERT_EQ(ref.inputs.size(), 1u);
  EXPECT_DOUBLE_EQ(ref.inputs[0].median, 110);
}

TEST(BaselineReferenceTest, CommitsRecordedPerVariantMustAllMatch) {
  constexpr char kPerVariant[] =
      R"({"fingerprint": "fp-1", "commit": {"base": "abc", "fast": "def"}})";
  const std::vector<PastAttempt> history = {
      Past(1, kPerVariant, 100),
      Past(2, R"({"fingerprint": "fp-1", "commit": {"base": "abc"}})", 110),
  };
  const BaselineReference ref = FindBaselineReference(
      R"({"commit": {"fast": "def", "base": "abc"}, "fingerprint": "fp-1"})", 9,
      history);
  ASSERT_TRUE(ref.available) << ref.why_not;
  EXPECT_EQ(ref.experiment_id, 1);
}

TEST(BaselineReferenceTest, SkipsAttemptsWhoseReportHasNoBaseline) {
  std::vector<PastAttempt> history = {Past(1, kHere, 100), Past(2, kHere, 110)};
  history[1].report_json = "{}";
  const BaselineReference ref = FindBaselineReference(kHere, 9, history);
  ASSERT_TRUE(ref.available);
  EXPECT_EQ(ref.experiment_id, 1);
}

TEST(BaselineReferenceTest, NoMatchingAttemptIsNoHistory) {
  const BaselineReference ref = FindBaselineReference(
      kHere, 9, {Past(3, R"({"fingerprint": "fp-2", "commit": "abc"})", 1)});
  EXPECT_FALSE(ref.available);
  EXPECT_TRUE(ref.no_history);
  EXPECT_THAT(ref.why_not, HasSubstr("no earlier completed attempt"));
}

TEST(BaselineReferenceTest, MissingFingerprintOrCommitMeansNoComparison) {
  const std::vector<PastAttempt> history = {Past(1, kHere, 100)};
  const BaselineReference no_commit =
      FindBaselineReference(R"({"fingerprint": "fp-1"})", 9, history);
  EXPECT_FALSE(no_commit.available);
  EXPECT_FALSE(no_commit.no_history);
  EXPECT_THAT(no_commit.why_not, HasSubstr("records no commit"));
  const BaselineReference empty_fp = FindBaselineReference(
      R"({"fingerprint": "", "commit": "abc"})", 9, history);
  EXPECT_FALSE(empty_fp.available);
  EXPECT_THAT(empty_fp.why_not, HasSubstr("records no host fingerprint"));
  EXPECT_THAT(FindBaselineReference("not json", 9, history).why_not,
              HasSubstr("host fingerprint or commit"));
}

}  // namespace
}  // namespace benchfleet::history
