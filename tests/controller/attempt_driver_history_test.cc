// AttemptDriver and history: "environment changed" (DESIGN.md §4) and the
// re-measured baseline, with the fake agent of attempt_driver_testing.h.
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "controller/attempt/attempt_driver.h"
#include "tests/controller/attempt_driver_testing.h"

namespace benchfleet {
namespace {

using namespace attempt_testing;  // NOLINT(build/namespaces): test helpers

// ---------------------------------------------------------------------------------------
// History: "environment changed" (DESIGN.md §4) and the re-measured baseline.

// The previous comparable attempt: experiment 003, finished 2023-11-14 22:13
// UTC, whose baseline had these medians (ms) over 10 runs with a MAD of
// 0.5 ms.
history::BaselineReference Reference(
    const std::map<std::string, int64_t>& median_ms) {
  history::BaselineReference ref;
  ref.available = true;
  ref.experiment_id = 11;
  ref.experiment_number = 3;
  ref.completed_at = absl::FromUnixSeconds(1'700'000'000);
  ref.metric = "wall_time";
  for (const auto& [input, ms] : median_ms) {
    history::BaselineStats b;
    b.input = input;
    b.n = 10;
    b.median = static_cast<double>(ms * kMs);
    b.mad = 0.5 * kMs;
    ref.inputs.push_back(b);
  }
  return ref;
}

// Baseline measured runs on `input` take `first_ms` for the first `n_first`
// of them and 100 ms after that; "fast" takes 50 ms everywhere.
Agent BaselineShift(const std::string& input, int64_t first_ms, int n_first) {
  auto seen = std::make_shared<int>(0);
  Agent base = Timings({{"fast", 50}});
  return [=](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.kind == StepKind::kMeasure && step.variant == "base" &&
        step.input == input && (*seen)++ < n_first) {
      o.wall_ns = Jitter(first_ms * kMs, step.seq);
    }
    return o;
  };
}

Trace DriveWithReference(const ExperimentSpec& spec,
                         std::optional<history::BaselineReference> ref,
                         const Agent& agent) {
  AttemptDriver driver(spec, 42, /*experiment_number=*/7);
  if (ref) driver.SetBaselineReference(std::move(*ref));
  return Drive(driver, agent);
}

TEST(AttemptDriverHistoryTest, MovedBaselineIsReMeasuredAndFlagged) {
  const ExperimentSpec spec = MakeSpec({"fast"}, {"tiny", "large"});
  const Trace t = DriveWithReference(
      spec, Reference({{"tiny", 80}, {"large", 100}}), Timings({{"fast", 50}}));
  // 10 more baseline runs on the input that moved, none on the other, none
  // for the candidate, all after the planned measured runs.
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure, "base", "tiny"), 20);
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure, "base", "large"), 10);
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure, "fast"), 20);
  ASSERT_EQ(t.steps.size(), 50u);
  for (size_t i = 40; i < 50; ++i) {
    EXPECT_EQ(t.steps[i].variant, "base");
    EXPECT_EQ(t.steps[i].input, "tiny");
  }
  const EnvironmentCheck& env = t.report.environment;
  EXPECT_EQ(env.status, "changed");
  EXPECT_EQ(env.reference_experiment_id, 11);
  ASSERT_EQ(env.inputs.size(), 2u);
  EXPECT_EQ(env.inputs[1].input, "tiny");
  EXPECT_TRUE(env.inputs[1].moved);
  EXPECT_NEAR(env.inputs[1].change, 0.25, 0.01);
  EXPECT_EQ(env.inputs[1].n_remeasured, 10);
  EXPECT_TRUE(env.inputs[1].remeasured_moved);
  EXPECT_NEAR(env.inputs[1].remeasured_change, 0.25, 0.01);
  EXPECT_FALSE(env.inputs[0].moved);
  ASSERT_FALSE(env.lines.empty());
  EXPECT_THAT(
      env.lines[0],
      AllOf(HasSubstr("environment changed: baseline median on tiny "
                      "moved +25"),
            HasSubstr("since experiment 003 (2023-11-14 22:13 UTC) on "
                      "this fingerprint and commit; re-measured: +25")));
  // The verdict still compares the candidate with the interleaved baseline
  // only.
  const CandidateReport& fast = Candidate(t.report, "fast");
  for (const InputRow& row : fast.inputs) EXPECT_EQ(row.n_baseline, 10);
  const std::string text = RenderReportText(t.report);
  EXPECT_THAT(text, HasSubstr("environment changed: baseline median on tiny"));
  EXPECT_THAT(text, HasSubstr("not part of the baseline sample"));
  const std::string json = ReportToJson(t.report);
  EXPECT_THAT(json, HasSubstr("\"status\": \"changed\""));
  EXPECT_THAT(json, HasSubstr("\"remeasured_moved\": true"));
}

TEST(AttemptDriverHistoryTest, TransientMoveIsReportedAsBackWithinNoise) {
  const ExperimentSpec spec = MakeSpec({"fast"}, {"tiny"});
  // The first 10 baseline runs are 30 % slow, the re-measured ones are not.
  const Trace t = DriveWithReference(spec, Reference({{"tiny", 100}}),
                                     BaselineShift("tiny", 130, 10));
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure, "base"), 20);
  const EnvironmentCheck& env = t.report.environment;
  EXPECT_EQ(env.status, "transient");
  ASSERT_EQ(env.inputs.size(), 1u);
  EXPECT_TRUE(env.inputs[0].moved);
  EXPECT_NEAR(env.inputs[0].change, 0.30, 0.01);
  EXPECT_FALSE(env.inputs[0].remeasured_moved);
  EXPECT_NEAR(env.inputs[0].remeasured_change, 0.0, 0.01);
  ASSERT_FALSE(env.lines.empty());
  EXPECT_THAT(env.lines[0],
              HasSubstr("environment changed (transient): re-measured, back "
                        "within noise"));
  // The baseline the verdict used is the first, interleaved block (130 ms).
  EXPECT_NEAR(Candidate(t.report, "fast").baseline_median, 130.0 * kMs,
              2.0 * kMs);
}

TEST(AttemptDriverHistoryTest, UnchangedBaselineRunsNothingExtra) {
  const ExperimentSpec spec = MakeSpec({"fast"}, {"tiny", "large"});
  const Trace t =
      DriveWithReference(spec, Reference({{"tiny", 100}, {"large", 100}}),
                         Timings({{"fast", 50}}));
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure), 40);
  EXPECT_EQ(t.report.environment.status, "unchanged");
  ASSERT_EQ(t.report.environment.lines.size(), 1u);
  EXPECT_THAT(t.report.environment.lines[0],
              HasSubstr("baseline within noise of experiment 003"));
  EXPECT_THAT(RenderReportText(t.report),
              Not(HasSubstr("environment changed")));
}

TEST(AttemptDriverHistoryTest, NoHistoryMeansNoFlagAndNoExtraRuns) {
  const ExperimentSpec spec = MakeSpec({"fast"}, {"tiny"});
  history::BaselineReference none;
  none.no_history = true;
  none.why_not = "no earlier completed attempt on this host fingerprint";
  const Trace t = DriveWithReference(spec, none, Timings({{"fast", 50}}));
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure), 20);
  EXPECT_EQ(t.report.environment.status, "no-history");
  EXPECT_THAT(t.report.environment.lines,
              ElementsAre(HasSubstr("no earlier completed attempt")));
  EXPECT_THAT(RenderReportText(t.report),
              Not(HasSubstr("environment changed")));

  // Without any reference (a caller that does not check history) the report
  // is silent about the environment.
  const Trace silent = DriveWithReference(spec, std::nullopt, Timings({}));
  EXPECT_EQ(Count(silent.steps, StepKind::kMeasure), 20);
  EXPECT_EQ(silent.report.environment.status, "");
  EXPECT_THAT(silent.report.environment.lines, IsEmpty());
}

TEST(AttemptDriverHistoryTest, MissingFingerprintSaysWhyInOneLine) {
  const history::BaselineReference ref =
      history::FindBaselineReference(R"({"commit": "abc"})", 1, {});
  const Trace t =
      DriveWithReference(MakeSpec({"fast"}), ref, Timings({{"fast", 50}}));
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure), 20);
  EXPECT_EQ(t.report.environment.status, "not-compared");
  EXPECT_THAT(t.report.environment.lines,
              ElementsAre(HasSubstr("records no host fingerprint")));
  EXPECT_THAT(RenderReportText(t.report),
              HasSubstr("Environment: not compared with history"));
}

TEST(AttemptDriverHistoryTest, ReferenceForAnotherMetricIsNotCompared) {
  history::BaselineReference ref = Reference({{"tiny", 50}});
  ref.metric = "max_rss";
  const Trace t =
      DriveWithReference(MakeSpec({"fast"}), ref, Timings({{"fast", 50}}));
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure), 20);
  EXPECT_EQ(t.report.environment.status, "not-compared");
  EXPECT_THAT(
      t.report.environment.lines,
      ElementsAre(HasSubstr("measured max_rss, this attempt wall_time")));
}

TEST(AttemptDriverHistoryTest, DisturbedReMeasuredRunIsRepeatedWithinItsBlock) {
  Agent base = Timings({{"fast", 50}});
  bool flagged = false;
  const Trace t =
      DriveWithReference(MakeSpec({"fast"}), Reference({{"tiny", 80}}),
                         [&](const PlannedStep& step) {
                           StepOutcome o = base(step);
                           // The first re-measured run (after the 20 planned
                           // ones) is disturbed.
                           if (step.seq == 21 && !flagged) {
                             flagged = true;
                             o.host_flags = {"contended"};
                           }
                           return o;
                         });
  EXPECT_TRUE(flagged);
  EXPECT_EQ(t.report.reruns, 1);
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure, "base"), 21);
  // The repeat stays in the re-measured block, not the verdicts' baseline.
  EXPECT_EQ(t.report.environment.inputs.at(0).n_remeasured, 10);
  EXPECT_EQ(Candidate(t.report, "fast").inputs.at(0).n_baseline, 10);
}

TEST(AttemptDriverHistoryTest,
     ReportKeepsTheBaselineStatisticsForLaterAttempts) {
  const Trace t =
      DriveSpec(MakeSpec({"fast"}, {"tiny", "large"}), Timings({{"fast", 50}}));
  ASSERT_EQ(t.report.baseline_inputs.size(), 2u);
  for (const BaselineInputRow& row : t.report.baseline_inputs) {
    EXPECT_EQ(row.n, 10);
    EXPECT_NEAR(row.median, 100.0 * kMs, 1.0 * kMs);
    EXPECT_GT(row.mad, 0);
  }
  // A later attempt reads them back from the stored report.
  absl::StatusOr<std::vector<history::BaselineStats>> back =
      history::BaselineStatsFromReportJson(ReportToJson(t.report));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_DOUBLE_EQ((*back)[0].median, t.report.baseline_inputs[0].median);
}

}  // namespace
}  // namespace benchfleet
