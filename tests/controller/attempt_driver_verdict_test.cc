// AttemptDriver: extension, verdicts, progress, a spec from YAML and
// host-flagged re-runs, with the fake agent of attempt_driver_testing.h.
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
// Extension and verdicts.

TEST(AttemptDriverTest, NoisySamplesAreExtendedToMaxRunsThenDecided) {
  ExperimentSpec spec = MakeSpec({"noisy"}, {"tiny", "large"});
  spec.max_runs = 16;
  spec.verdict.kill_factor = 5;
  // The candidate is very noisy on "large" only (no outlier removal can save
  // it).
  int noisy_runs = 0;
  Agent agent = [&noisy_runs, base = Timings({})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.variant == "noisy" && step.input == "large" &&
        step.kind == StepKind::kMeasure) {
      static constexpr int64_t kWalls[] = {60, 100, 140, 180, 220};
      o.wall_ns = kWalls[noisy_runs++ % 5] * kMs;
    }
    return o;
  };
  AttemptDriver driver(spec, 8, 1);
  const Trace run = Drive(driver, agent);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "noisy", "large"), 16);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "base", "large"), 16);
  // Inputs that were not noisy keep their planned runs.
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "noisy", "tiny"), 10);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "base", "tiny"), 10);
  EXPECT_EQ(Candidate(run.report, "noisy").verdict, "INCONCLUSIVE");
  EXPECT_THAT(run.report.warnings,
              testing::Contains(HasSubstr("extended towards max_runs")));
  const AttemptProgress progress = driver.progress();
  EXPECT_EQ(progress.steps_done, static_cast<int64_t>(run.steps.size()));
  EXPECT_EQ(progress.steps_total, progress.steps_done);
}

TEST(AttemptDriverTest, QuietRunsAreNotExtended) {
  ExperimentSpec spec = MakeSpec({"fast"});
  spec.max_runs = 20;
  const Trace run = DriveSpec(spec, Timings({{"fast", 70}}));
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure), 20);
  EXPECT_THAT(run.report.warnings,
              testing::Not(testing::Contains(HasSubstr("extended"))));
}

TEST(AttemptDriverTest, ClearlyFasterCandidateIsKeptAndSlowerOneDiscarded) {
  ExperimentSpec spec = MakeSpec({"fast", "slow", "same"}, {"tiny", "large"});
  spec.verdict.kill_factor = 1.5;  // let the 25 % slower one finish its runs
  const Trace run = DriveSpec(spec, Timings({{"fast", 70}, {"slow", 125}}));
  const CandidateReport& fast = Candidate(run.report, "fast");
  EXPECT_EQ(fast.verdict, "KEEP");
  EXPECT_NEAR(fast.change, -0.30, 0.02);
  EXPECT_LT(fast.p_value, 0.05);
  const CandidateReport& slow = Candidate(run.report, "slow");
  EXPECT_EQ(slow.verdict, "DISCARD");
  EXPECT_NEAR(slow.change, 0.25, 0.02);
  EXPECT_EQ(Candidate(run.report, "same").verdict, "DISCARD");
  EXPECT_EQ(run.report.baseline, "base");
  EXPECT_EQ(run.report.number, 7);
  EXPECT_EQ(run.report.name, "driver-test");
}

TEST(AttemptDriverTest, HigherIsBetterMetricKeepsTheCandidateWithMore) {
  ExperimentSpec spec = MakeSpec({"more", "less"});
  spec.custom_metrics.push_back({"ops", "ops=([0-9.]+)", Better::kHigher});
  spec.primary_metric = "ops";
  Agent agent = [base = Timings({})](const PlannedStep& step) {
    StepOutcome o = base(step);
    const double ops = step.variant == "more"   ? 1300
                       : step.variant == "less" ? 700
                                                : 1000;
    o.metrics["ops"] = ops + static_cast<double>(step.seq % 7);
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  EXPECT_EQ(Candidate(run.report, "more").verdict, "KEEP");
  EXPECT_EQ(Candidate(run.report, "less").verdict, "DISCARD");
}

TEST(AttemptDriverTest, CompoundDoingWorseThanItsBestPartReportsAConflict) {
  ExperimentSpec spec = MakeSpec({"a", "b", "ab", "ba"});
  spec.variants[3].combines = {"a",
                               "b"};  // ab: 15 % better, less than a (30 %)
  spec.variants[4].combines = {"b",
                               "a"};  // ba: 40 % better, more than both parts
  const Trace run =
      DriveSpec(spec, Timings({{"a", 70}, {"b", 85}, {"ab", 85}, {"ba", 60}}));
  const CandidateReport& ab = Candidate(run.report, "ab");
  EXPECT_EQ(ab.combines, (std::vector<std::string>{"a", "b"}));
  EXPECT_THAT(ab.conflict,
              AllOf(HasSubstr("ab improves"), HasSubstr("its part a alone")));
  EXPECT_THAT(Candidate(run.report, "ba").conflict, IsEmpty());
  EXPECT_THAT(Candidate(run.report, "a").conflict, IsEmpty());
}

// ---------------------------------------------------------------------------------------
// Progress.

TEST(AttemptDriverTest, ProgressCountsDoneAndPlannedSteps) {
  ExperimentSpec spec = MakeSpec({"fast"}, {"tiny", "large"});
  spec.setup = Shell("make");
  spec.correctness_command = Shell("make test");
  spec.warmup = 1;
  AttemptDriver driver(spec, 4, 1);
  const int64_t planned = 2 + 2 + 2 * 2 * (1 + 10);
  EXPECT_EQ(driver.progress().steps_done, 0);
  EXPECT_EQ(driver.progress().steps_total, planned);
  int64_t done = 0;
  const Agent agent = Timings({{"fast", 70}});
  while (std::optional<PlannedStep> step = driver.Next()) {
    const AttemptProgress p = driver.progress();
    EXPECT_EQ(p.steps_done, done);
    EXPECT_EQ(p.steps_total, planned);
    EXPECT_THAT(p.current, HasSubstr(std::string(StepKindName(step->kind)) +
                                     " " + step->variant));
    if (!step->input.empty()) {
      EXPECT_THAT(p.current, HasSubstr("on " + step->input));
    }
    StepOutcome o = agent(*step);
    o.seq = step->seq;
    driver.OnResult(o);
    ++done;
  }
  EXPECT_EQ(done, planned);
  EXPECT_EQ(driver.progress().steps_done, planned);
  EXPECT_EQ(driver.progress().steps_total, planned);
  EXPECT_EQ(driver.progress().current, "finished");
}

TEST(AttemptDriverTest,
     ProgressTotalDropsTheStepsOfARejectedOrKilledCandidate) {
  ExperimentSpec spec = MakeSpec({"nobuild", "hang", "fast"});
  spec.setup = Shell("make");
  spec.warmup = 1;
  Agent agent = [base = Timings({{"fast", 70}})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.variant == "nobuild" && step.kind == StepKind::kSetup)
      o.exit_code = 1;
    if (step.variant == "hang" && step.kind == StepKind::kMeasure) {
      o.timed_out = true;
      o.wall_ns = absl::ToInt64Nanoseconds(step.timeout);
    }
    return o;
  };
  AttemptDriver driver(spec, 4, 1);
  int64_t last_total = driver.progress().steps_total;
  while (std::optional<PlannedStep> step = driver.Next()) {
    StepOutcome o = agent(*step);
    o.seq = step->seq;
    driver.OnResult(o);
    const int64_t total = driver.progress().steps_total;
    EXPECT_LE(total, last_total)
        << "the total only shrinks when nothing is extended";
    last_total = total;
  }
  const AttemptProgress p = driver.progress();
  // 4 setups, 3 warmups (not nobuild), 10 + 10 measured runs + 2 of hang.
  EXPECT_EQ(p.steps_done, 4 + 3 + 22);
  EXPECT_EQ(p.steps_total, p.steps_done);
  EXPECT_EQ(Candidate(driver.BuildReport(), "hang").verdict, "KILL");
  EXPECT_EQ(Candidate(driver.BuildReport(), "nobuild").verdict, "REJECT");
}

// ---------------------------------------------------------------------------------------
// A spec as the controller gets it: YAML through the loader.

TEST(AttemptDriverTest, DrivesASpecParsedFromYaml) {
  constexpr char kYaml[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: parsed
setup: make
benchmark:
  command: ./bench {input}
  inputs:
    - {name: one, path: in/one.txt}
    - {name: two, path: in/two.txt, weight: 2}
  warmup: 1
  runs: 10
  max_runs: 12
  order: sequential
  timeout: 5s
variants:
  - {name: base}
  - {name: fast, argv: [./bench, --fast, "{input}"]}
)";
  SpecLoadOptions options;
  options.base_dir = kWorkdir;
  absl::StatusOr<ExperimentSpec> spec =
      ParseSpec(kYaml, "parsed.yaml", options);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const Trace run = DriveSpec(*spec, Timings({{"fast", 70}}));
  EXPECT_EQ(Count(run.steps, StepKind::kSetup), 2);
  EXPECT_EQ(Count(run.steps, StepKind::kWarmup), 4);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure), 40);
  EXPECT_THAT(run.steps.front().argv, ElementsAre("/bin/sh", "-c", "make"));
  const PlannedStep& first_measure = *std::find_if(
      run.steps.begin(), run.steps.end(),
      [](const PlannedStep& s) { return s.kind == StepKind::kMeasure; });
  EXPECT_THAT(first_measure.argv,
              ElementsAre("/bin/sh", "-c", "./bench 'in/one.txt'"));
  EXPECT_EQ(first_measure.timeout, absl::Seconds(5));
  EXPECT_EQ(Candidate(run.report, "fast").verdict, "KEEP");
  EXPECT_EQ(run.report.name, "parsed");
}

TEST(AttemptDriverHostFlagsTest, FlaggedMeasuredRunsAreRepeatedAndCounted) {
  // The 3rd and 7th measured runs see a competing process: they are repeated,
  // so every variant still ends with exactly `runs` clean samples, and the
  // report counts the re-runs.
  int measured = 0;
  Agent base = Timings({{"fast", 50}});
  Trace t = DriveSpec(MakeSpec({"fast"}), [&](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.kind == StepKind::kMeasure && (++measured == 3 || measured == 7)) {
      o.host_flags = {"contended"};
    }
    return o;
  });
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure), 2 * 10 + 2);
  EXPECT_EQ(t.report.reruns, 2);
  EXPECT_EQ(t.report.host_flags.at("contended"), 2);
  const CandidateReport& fast = Candidate(t.report, "fast");
  EXPECT_EQ(fast.verdict, "KEEP");
  ASSERT_EQ(fast.inputs.size(), 1u);
  EXPECT_EQ(fast.inputs[0].n_baseline, 10);
  EXPECT_EQ(fast.inputs[0].n_candidate, 10);
  EXPECT_NE(
      RenderReportText(t.report).find("Re-runs: 2 measured run(s) repeated"),
      std::string::npos);
}

TEST(AttemptDriverHostFlagsTest, AnAlwaysDisturbedHostStopsRepeatingAndWarns) {
  Agent base = Timings({{"fast", 50}});
  Trace t = DriveSpec(MakeSpec({"fast"}), [&](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.kind == StepKind::kMeasure) o.host_flags = {"throttled"};
    return o;
  });
  // The budget is max(5, 20 planned runs / 4) = 5 re-runs; then flagged runs
  // are kept.
  EXPECT_EQ(t.report.reruns, 5);
  EXPECT_EQ(Count(t.steps, StepKind::kMeasure), 20 + 5);
  bool warned = false;
  for (const std::string& w : t.report.warnings)
    warned =
        warned || w.find("re-run budget of 5 was spent") != std::string::npos;
  EXPECT_TRUE(warned);
}

}  // namespace
}  // namespace benchfleet
