// Tests for AttemptDriver: the step plan of one attempt (order, counts,
// deadlines, command materialization) and its reactions to synthetic results
// (KILL, REJECT, baseline failure, extension, verdicts). No processes run: a
// fake "agent" turns each PlannedStep into a StepOutcome.
#include "controller/attempt/attempt_driver.h"

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/controller/attempt_driver_testing.h"

namespace benchfleet {
namespace {

using namespace attempt_testing;  // NOLINT(build/namespaces): test helpers

// ---------------------------------------------------------------------------------------
// The plan: which steps, how many, in which order.

TEST(AttemptDriverTest,
     PlansSetupCorrectnessWarmupsAndRunsForEveryVariantAndInput) {
  ExperimentSpec spec = MakeSpec({"fast", "slow"}, {"tiny", "large"});
  spec.setup = Shell("make");
  spec.correctness_command = Shell("make test");
  spec.warmup = 2;
  spec.runs = 10;
  spec.max_runs = 10;
  const Trace run = DriveSpec(spec, Timings({}));

  EXPECT_EQ(Count(run.steps, StepKind::kSetup), 3);
  EXPECT_EQ(Count(run.steps, StepKind::kCorrectness), 3);
  EXPECT_EQ(Count(run.steps, StepKind::kWarmup), 2 * 2 * 3);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure), 10 * 2 * 3);
  for (const std::string v : {"base", "fast", "slow"}) {
    EXPECT_EQ(Count(run.steps, StepKind::kSetup, v), 1) << v;
    EXPECT_EQ(Count(run.steps, StepKind::kCorrectness, v), 1) << v;
    for (const std::string in : {"tiny", "large"}) {
      EXPECT_EQ(Count(run.steps, StepKind::kWarmup, v, in), 2)
          << v << " " << in;
      EXPECT_EQ(Count(run.steps, StepKind::kMeasure, v, in), 10)
          << v << " " << in;
    }
  }
  // Phases never overlap: all setups, then correctness, then warmups, then
  // measured runs.
  EXPECT_TRUE(std::is_sorted(run.steps.begin(), run.steps.end(),
                             [](const PlannedStep& a, const PlannedStep& b) {
                               return static_cast<int>(a.kind) <
                                      static_cast<int>(b.kind);
                             }));
  // Sequence numbers are 1, 2, 3, ... in the order the steps are handed out.
  for (size_t i = 0; i < run.steps.size(); ++i)
    EXPECT_EQ(run.steps[i].seq, int64_t(i) + 1);
  EXPECT_EQ(run.report.steps_run, static_cast<int64_t>(run.steps.size()));
  EXPECT_FALSE(run.report.failed);
}

TEST(AttemptDriverTest,
     VariantSetupOverridesTopLevelSetupAndMissingSetupPlansNone) {
  ExperimentSpec spec = MakeSpec({"fast"});
  spec.variants[1].setup = Shell("make fast");
  const Trace without_top = DriveSpec(spec, Timings({}));
  ASSERT_EQ(Count(without_top.steps, StepKind::kSetup), 1);
  EXPECT_EQ(without_top.steps[0].variant, "fast");
  EXPECT_THAT(without_top.steps[0].argv,
              ElementsAre("/bin/sh", "-c", "make fast"));

  spec.setup = Shell("make all");
  const Trace with_top = DriveSpec(spec, Timings({}));
  ASSERT_EQ(Count(with_top.steps, StepKind::kSetup), 2);
  EXPECT_THAT(with_top.steps[0].argv, ElementsAre("/bin/sh", "-c", "make all"));
  EXPECT_THAT(with_top.steps[1].argv,
              ElementsAre("/bin/sh", "-c", "make fast"));
}

TEST(AttemptDriverTest, SameSeedGivesSameOrderAndDifferentSeedAnotherOne) {
  const ExperimentSpec spec = MakeSpec({"fast", "slow"}, {"tiny", "large"});
  const Trace a = DriveSpec(spec, Timings({}), /*seed=*/1);
  const Trace b = DriveSpec(spec, Timings({}), /*seed=*/1);
  const Trace c = DriveSpec(spec, Timings({}), /*seed=*/2);
  EXPECT_EQ(Order(a.steps), Order(b.steps));
  EXPECT_NE(Order(a.steps), Order(c.steps));
  EXPECT_EQ(a.report.seed, 1u);
  EXPECT_EQ(c.report.seed, 2u);
}

TEST(AttemptDriverTest, InterleavedOrderRunsEveryPairOnceInEachShuffledRound) {
  const ExperimentSpec spec = MakeSpec({"fast", "slow"}, {"tiny", "large"});
  const Trace run = DriveSpec(spec, Timings({}), /*seed=*/5);
  const auto order = MeasureOrder(run.steps);
  ASSERT_EQ(order.size(), 60u);
  const std::set<std::pair<std::string, std::string>> all_pairs(order.begin(),
                                                                order.end());
  ASSERT_EQ(all_pairs.size(), 6u);
  std::set<std::vector<std::pair<std::string, std::string>>> distinct_rounds;
  for (size_t round = 0; round < 10; ++round) {
    const std::vector<std::pair<std::string, std::string>> block(
        order.begin() + round * 6, order.begin() + round * 6 + 6);
    const std::set<std::pair<std::string, std::string>> pairs(block.begin(),
                                                              block.end());
    EXPECT_EQ(pairs, all_pairs) << "round " << round;
    distinct_rounds.insert(block);
  }
  // Shuffled per round, not one fixed pattern (and so not variant-major
  // either).
  EXPECT_GT(distinct_rounds.size(), 1u);
}

TEST(AttemptDriverTest, SequentialOrderIsVariantMajorThenInputThenRun) {
  ExperimentSpec spec = MakeSpec({"fast"}, {"tiny", "large"});
  spec.order = RunOrder::kSequential;
  const Trace run = DriveSpec(spec, Timings({}));
  std::vector<std::pair<std::string, std::string>> expected;
  for (const std::string v : {"base", "fast"})
    for (const std::string in : {"tiny", "large"})
      for (int r = 0; r < 10; ++r) expected.emplace_back(v, in);
  EXPECT_EQ(MeasureOrder(run.steps), expected);
  // The seed does not matter for a sequential order.
  EXPECT_EQ(Order(DriveSpec(spec, Timings({}), 1).steps),
            Order(DriveSpec(spec, Timings({}), 99).steps));
}

// ---------------------------------------------------------------------------------------
// Materialized commands.

TEST(AttemptDriverTest,
     SubstitutesInputPathVerbatimInArgvAndShellQuotedInShell) {
  ExperimentSpec spec = MakeSpec({"fast"});
  spec.inputs[0].path = "inputs/it's a file.txt";
  spec.variants[0].command = Argv({"./bench", "--in={input}", "{input}"});
  spec.variants[1].command = Shell("./bench --fast {input} | tail -1");
  spec.variants[1].env = {{"OMP_NUM_THREADS", "1"}};
  spec.setup = Shell("make {input}");  // not a per-input step: left as written
  AttemptDriver driver(spec, 1, 1);

  bool saw_base = false, saw_fast = false, saw_setup = false;
  while (std::optional<PlannedStep> step = driver.Next()) {
    EXPECT_EQ(step->cwd, kWorkdir);
    EXPECT_EQ(step->env.at("BENCHFLEET_VARIANT"), step->variant);
    EXPECT_EQ(step->env.at("BENCHFLEET_STEP"), StepKindName(step->kind));
    if (step->kind == StepKind::kSetup) {
      saw_setup = true;
      EXPECT_THAT(step->argv, ElementsAre("/bin/sh", "-c", "make {input}"));
    } else if (step->variant == "base") {
      saw_base = true;
      EXPECT_THAT(step->argv,
                  ElementsAre("./bench", "--in=inputs/it's a file.txt",
                              "inputs/it's a file.txt"));
      EXPECT_EQ(step->env.at("BENCHFLEET_INPUT"), "tiny");
      EXPECT_EQ(step->env.at("BENCHFLEET_INPUT_PATH"),
                "inputs/it's a file.txt");
    } else {
      saw_fast = true;
      EXPECT_THAT(
          step->argv,
          ElementsAre("/bin/sh", "-c",
                      "./bench --fast 'inputs/it'\\''s a file.txt' | tail -1"));
      EXPECT_EQ(step->env.at("OMP_NUM_THREADS"), "1");
    }
    StepOutcome o;
    o.seq = step->seq;
    o.wall_ns = 100 * kMs;
    driver.OnResult(o);
  }
  EXPECT_TRUE(saw_base && saw_fast && saw_setup);
}

TEST(AttemptDriverTest, MeasuredRunsAskForCustomMetricsAndCompareFile) {
  ExperimentSpec spec = MakeSpec({"fast"});
  spec.warmup = 1;
  spec.compare = CompareMode::kFile;
  spec.compare_path = "out/result.bin";
  spec.custom_metrics.push_back({"ops", "ops=([0-9.]+)", Better::kHigher});
  AttemptDriver driver(spec, 1, 1);
  while (std::optional<PlannedStep> step = driver.Next()) {
    EXPECT_EQ(step->compare_file, "out/result.bin");
    if (step->kind == StepKind::kMeasure) {
      EXPECT_THAT(step->metrics,
                  ElementsAre(std::make_pair("ops", "ops=([0-9.]+)")));
    } else {
      EXPECT_THAT(step->metrics, IsEmpty()) << StepKindName(step->kind);
    }
    StepOutcome o;
    o.seq = step->seq;
    o.wall_ns = 100 * kMs;
    driver.OnResult(o);
  }
}

// ---------------------------------------------------------------------------------------
// Candidate deadlines.

TEST(AttemptDriverTest,
     CandidateDeadlineIsSpecTimeoutUntilThreeBaselineRunsThenTheKillBound) {
  ExperimentSpec spec = MakeSpec({"fast"});
  spec.warmup = 1;
  spec.timeout = absl::Milliseconds(500);
  spec.verdict.kill_factor = 1.5;
  AttemptDriver driver(spec, 3, 1);
  // Baseline walls: mostly 100 ms, one 400 ms run (400 + 2 ms > 1.5 * median
  // 100) and a later 600 ms one that pushes the bound past the spec timeout
  // (capped).
  const std::vector<int64_t> base_walls_ms = {100, 100, 100, 400, 100,
                                              100, 600, 100, 100, 100};
  std::vector<double> base_walls;
  int checked_before = 0, checked_kill_factor = 0, checked_spread = 0,
      checked_cap = 0;
  while (std::optional<PlannedStep> step = driver.Next()) {
    StepOutcome o;
    o.seq = step->seq;
    o.wall_ns = 50 * kMs;
    if (step->variant == "base") {
      EXPECT_EQ(step->timeout, spec.timeout)
          << "the baseline always runs under the spec timeout";
      if (step->kind == StepKind::kMeasure) {
        o.wall_ns = base_walls_ms[base_walls.size() - 1] * kMs;
      }
      // Its warmup (50 ms) is part of the bound's evidence too.
      base_walls.push_back(static_cast<double>(o.wall_ns));
    } else if (base_walls.size() < 3) {
      EXPECT_EQ(step->timeout, spec.timeout) << "seq " << step->seq;
      ++checked_before;
    } else {
      std::vector<double> sorted = base_walls;
      std::sort(sorted.begin(), sorted.end());
      auto median_of = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        const size_t n = v.size();
        return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
      };
      const double median = median_of(sorted);
      std::vector<double> deviations;
      for (double v : sorted) deviations.push_back(std::fabs(v - median));
      const double sigma = 1.4826 * median_of(deviations);
      const double by_median = 1.5 * median;
      const double by_spread = sorted.back() + std::max(4 * sigma, 2.0 * kMs);
      const absl::Duration expected =
          std::min(absl::Nanoseconds(std::ceil(std::max(by_median, by_spread))),
                   spec.timeout);
      EXPECT_EQ(step->timeout, expected)
          << "after " << sorted.size() << " baseline runs";
      if (expected == spec.timeout) {
        ++checked_cap;
      } else if (by_spread > by_median) {
        ++checked_spread;
      } else {
        ++checked_kill_factor;
      }
    }
    driver.OnResult(o);
  }
  EXPECT_GT(checked_before, 0);
  EXPECT_GT(checked_kill_factor, 0);
  EXPECT_GT(checked_spread, 0);
  EXPECT_GT(checked_cap, 0);
}

TEST(AttemptDriverTest, DeadlinesKeepTheirMicroseconds) {
  // 6.0 ms baseline runs with a 0.1 ms spread: kill_factor 1.10 gives 6.6 ms,
  // which must not become 6 ms on the way to the agent.
  ExperimentSpec spec = MakeSpec({"copy"});
  spec.verdict.kill_factor = 1.10;
  AttemptDriver driver(spec, 5, 1);
  const std::vector<int64_t> base_us = {6000, 5990, 6010, 6000, 6005,
                                        5995, 6000, 6000, 6000, 6000};
  size_t base_runs = 0;
  int checked = 0;
  while (std::optional<PlannedStep> step = driver.Next()) {
    StepOutcome o;
    o.seq = step->seq;
    o.output_digest = "same";
    if (step->variant == "base") {
      o.wall_ns = base_us[base_runs++] * 1000;
    } else {
      o.wall_ns = 6'000'000;
      if (base_runs >= 3) {
        // max(1.10 x 6.0 ms, slowest + max(4 sigma, 2 ms)) = 8.01 ms at most;
        // with a median of 6.0 ms the kill factor's 6.6 ms is below the
        // spread bound, so check the exact value of the larger one.
        EXPECT_GT(step->timeout, absl::Microseconds(6600));
        EXPECT_EQ(absl::ToInt64Nanoseconds(step->timeout) % 1000, 0)
            << "whole nanoseconds of a microsecond-exact bound";
        ++checked;
      }
    }
    driver.OnResult(o);
  }
  EXPECT_GT(checked, 0);
  // The bound itself, exactly: 1.10 x 6.0 ms with a spread far below it.
  std::vector<double> slow_base(10, 60e6);  // 60 ms, no spread
  EXPECT_EQ(verdict::CandidateDeadline(slow_base, 1.10, absl::Seconds(10)),
            absl::Microseconds(66000));
  EXPECT_EQ(
      verdict::CandidateDeadline({6.0e6, 6.0e6, 6.0e6}, 1.5, absl::Seconds(10)),
      absl::Microseconds(9000));
}

// ---------------------------------------------------------------------------------------
// KILL.

TEST(AttemptDriverTest,
     TwoConsecutiveCandidateTimeoutsKillAndSkipItsRemainingSteps) {
  // No warmups: every measured run is queued up front, so the skipping is
  // visible in Next.
  const ExperimentSpec spec = MakeSpec({"hang", "fast"}, {"tiny", "large"});
  Agent agent = [base = Timings({{"fast", 70}})](const PlannedStep& step) {
    if (step.variant != "hang") return base(step);
    StepOutcome o;
    o.timed_out = true;
    o.wall_ns = absl::ToInt64Nanoseconds(step.timeout);
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  int hang_steps = 0;
  for (const PlannedStep& s : run.steps) hang_steps += s.variant == "hang";
  EXPECT_EQ(hang_steps, 2);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "fast"), 20);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "base"), 20);
  const CandidateReport& hang = Candidate(run.report, "hang");
  EXPECT_EQ(hang.verdict, "KILL");
  EXPECT_THAT(hang.reason, HasSubstr("aborted"));
  EXPECT_EQ(Candidate(run.report, "fast").verdict, "KEEP");
}

TEST(AttemptDriverTest, OneTimeoutFollowedBySuccessDoesNotKill) {
  const ExperimentSpec spec = MakeSpec({"flaky"});
  // Every other run of the candidate times out: never two in a row.
  int flaky_runs = 0;
  Agent agent = [&flaky_runs, base = Timings({})](const PlannedStep& step) {
    if (step.variant != "flaky") return base(step);
    StepOutcome o = base(step);
    if (flaky_runs++ % 2 == 0) {
      o.timed_out = true;
      o.wall_ns = absl::ToInt64Nanoseconds(step.timeout);
      o.output_digest.clear();
    }
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "flaky"), 10);
  EXPECT_NE(Candidate(run.report, "flaky").verdict, "KILL");
}

TEST(AttemptDriverTest, TimeoutsOfDifferentCandidatesDoNotAddUp) {
  const ExperimentSpec spec = MakeSpec({"a", "b"});
  // Each candidate times out on its first run only; in the interleaved order
  // a's and b's timeouts may be adjacent, but each candidate has only one.
  std::map<std::string, int> runs;
  Agent agent = [&runs, base = Timings({})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.variant != "base" && runs[step.variant]++ == 0) {
      o.timed_out = true;
      o.wall_ns = absl::ToInt64Nanoseconds(step.timeout);
    }
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  EXPECT_NE(Candidate(run.report, "a").verdict, "KILL");
  EXPECT_NE(Candidate(run.report, "b").verdict, "KILL");
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure), 30);
}

TEST(AttemptDriverTest,
     TimedOutRunsAreNotSamplesOfACustomMetricTheyNeverPrinted) {
  ExperimentSpec spec = MakeSpec({"flaky"});
  spec.custom_metrics.push_back({"ops", "ops=([0-9.]+)", Better::kHigher});
  spec.primary_metric = "ops";
  // The candidate prints ~1000 ops like the baseline, except that every other
  // run is stopped at its deadline before it prints anything.
  int flaky_runs = 0;
  Agent agent = [&flaky_runs, base = Timings({})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.kind != StepKind::kMeasure) return o;
    if (step.variant == "flaky" && flaky_runs++ % 2 == 0) {
      o.timed_out = true;
      o.wall_ns = absl::ToInt64Nanoseconds(step.timeout);
      return o;
    }
    o.metrics["ops"] = 1000 + static_cast<double>(step.seq % 7);
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  const CandidateReport& flaky = Candidate(run.report, "flaky");
  EXPECT_NE(flaky.verdict, "KILL");
  ASSERT_EQ(flaky.inputs.size(), 1u);
  // Only the 5 runs that printed the metric are samples of it; a deadline in
  // nanoseconds is not a number of ops.
  EXPECT_EQ(flaky.inputs[0].n_candidate, 5);
  EXPECT_NEAR(flaky.inputs[0].candidate_median, 1003, 5);
  EXPECT_LT(flaky.inputs[0].candidate_cv, 0.01);
}

// ---------------------------------------------------------------------------------------
// The baseline breaking fails the whole attempt.

struct BaselineFailureCase {
  std::string name;
  StepKind failing_kind;
  std::function<void(StepOutcome&)> fail;
  std::vector<std::string> reason_parts;
};

class BaselineFailureTest
    : public ::testing::TestWithParam<BaselineFailureCase> {};

TEST_P(BaselineFailureTest, FailsTheAttemptWithAReasonNamingTheStep) {
  const BaselineFailureCase& c = GetParam();
  ExperimentSpec spec = MakeSpec({"fast"});
  spec.setup = Shell("make");
  spec.correctness_command = Shell("make test");
  spec.warmup = 1;
  Agent agent = [&c, base = Timings({})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.variant == "base" && step.kind == c.failing_kind) c.fail(o);
    return o;
  };
  AttemptDriver driver(spec, 11, 1);
  const Trace run = Drive(driver, agent);
  EXPECT_TRUE(run.report.failed);
  EXPECT_THAT(run.report.candidates, IsEmpty());
  for (const std::string& part : c.reason_parts)
    EXPECT_THAT(run.report.failure, HasSubstr(part));
  // Nothing runs after the failing baseline step.
  ASSERT_FALSE(run.steps.empty());
  EXPECT_EQ(run.steps.back().variant, "base");
  EXPECT_EQ(run.steps.back().kind, c.failing_kind);
  EXPECT_EQ(driver.progress().current, "failed");
}

INSTANTIATE_TEST_SUITE_P(
    AttemptDriverTest, BaselineFailureTest,
    ::testing::Values(
        BaselineFailureCase{
            "SetupExitsNonzero",
            StepKind::kSetup,
            [](StepOutcome& o) {
              o.exit_code = 2;
              o.stderr_tail = "cc: not found";
            },
            {"setup of base", "exited with status 2", "cc: not found"}},
        BaselineFailureCase{
            "SetupCannotStart",
            StepKind::kSetup,
            [](StepOutcome& o) { o.error = "exec: permission denied"; },
            {"setup of base", "could not start", "permission denied"}},
        BaselineFailureCase{"CorrectnessFails",
                            StepKind::kCorrectness,
                            [](StepOutcome& o) { o.exit_code = 1; },
                            {"correctness of base", "exited with status 1"}},
        BaselineFailureCase{"WarmupTimesOut",
                            StepKind::kWarmup,
                            [](StepOutcome& o) { o.timed_out = true; },
                            {"warmup of base on input tiny",
                             "exceeded the timeout", "benchmark.timeout"}},
        BaselineFailureCase{
            "MeasuredRunExitsNonzero",
            StepKind::kMeasure,
            [](StepOutcome& o) { o.exit_code = 3; },
            {"measure of base on input tiny", "exited with status 3"}},
        BaselineFailureCase{
            "MeasuredRunKilledBySignal",
            StepKind::kMeasure,
            [](StepOutcome& o) { o.term_signal = 9; },
            {"measure of base on input tiny", "killed by signal 9"}},
        BaselineFailureCase{
            "MeasuredRunTimesOut",
            StepKind::kMeasure,
            [](StepOutcome& o) { o.timed_out = true; },
            {"measure of base on input tiny", "exceeded the timeout"}}),
    [](const ::testing::TestParamInfo<BaselineFailureCase>& info) {
      return info.param.name;
    });

// ---------------------------------------------------------------------------------------
// REJECT.

TEST(AttemptDriverTest,
     CandidateNonzeroExitIsRejectedAndItsRemainingRunsSkipped) {
  const ExperimentSpec spec = MakeSpec({"broken", "fast"});
  int broken_runs = 0;
  Agent agent = [&broken_runs,
                 base = Timings({{"fast", 70}})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.variant == "broken" && ++broken_runs == 3) {
      o.exit_code = 139;
      o.stderr_tail = "Segmentation fault";
    }
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "broken"), 3);
  const CandidateReport& broken = Candidate(run.report, "broken");
  EXPECT_EQ(broken.verdict, "REJECT");
  EXPECT_THAT(broken.reason, AllOf(HasSubstr("measure of broken on input tiny"),
                                   HasSubstr("exited with status 139"),
                                   HasSubstr("Segmentation fault")));
  EXPECT_EQ(Candidate(run.report, "fast").verdict, "KEEP");
  EXPECT_FALSE(run.report.failed);
}

TEST(AttemptDriverTest,
     CandidateSetupOrCorrectnessFailureRejectsWithoutRunningIt) {
  ExperimentSpec spec = MakeSpec({"nobuild", "wrong"});
  spec.setup = Shell("make");
  spec.correctness_command = Shell("make test");
  Agent agent = [base = Timings({})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.variant == "nobuild" && step.kind == StepKind::kSetup)
      o.exit_code = 2;
    if (step.variant == "wrong" && step.kind == StepKind::kCorrectness)
      o.exit_code = 1;
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  EXPECT_EQ(Count(run.steps, StepKind::kCorrectness, "nobuild"), 0);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "nobuild"), 0);
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "wrong"), 0);
  // Nothing is left to compare with: the baseline runs only the three runs
  // that show it in the report.
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "base"), 3);
  EXPECT_EQ(Candidate(run.report, "nobuild").verdict, "REJECT");
  EXPECT_THAT(Candidate(run.report, "nobuild").reason,
              HasSubstr("setup of nobuild"));
  EXPECT_EQ(Candidate(run.report, "wrong").verdict, "REJECT");
  EXPECT_THAT(Candidate(run.report, "wrong").reason,
              HasSubstr("correctness of wrong"));
}

TEST(AttemptDriverTest, DifferingOutputDigestIsRejected) {
  const ExperimentSpec spec = MakeSpec({"wrong"}, {"tiny", "large"});
  Agent agent = [base = Timings({{"wrong", 50}})](const PlannedStep& step) {
    StepOutcome o = base(step);
    o.output_digest = "digest-of-" + step.input;
    if (step.variant == "wrong" && step.input == "large")
      o.output_digest = "0123456789abcdef";
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  const CandidateReport& wrong = Candidate(run.report, "wrong");
  EXPECT_EQ(wrong.verdict, "REJECT");
  EXPECT_THAT(wrong.reason, HasSubstr("0123456789ab"));
  for (const InputRow& row : wrong.inputs) {
    EXPECT_EQ(row.verdict, row.input == "large" ? "REJECT" : "KEEP")
        << row.input;
  }
}

TEST(AttemptDriverTest, OutputsAreNotComparedWithCompareNone) {
  ExperimentSpec spec = MakeSpec({"fast"});
  spec.compare = CompareMode::kNone;
  Agent agent = [base = Timings({{"fast", 70}})](const PlannedStep& step) {
    StepOutcome o = base(step);
    o.output_digest =
        "run-" + std::to_string(step.seq);  // different every time
    return o;
  };
  EXPECT_EQ(Candidate(DriveSpec(spec, agent).report, "fast").verdict, "KEEP");
}

TEST(AttemptDriverTest, MissingCustomMetricRejectsTheCandidate) {
  ExperimentSpec spec = MakeSpec({"fast", "silent"});
  spec.custom_metrics.push_back({"ops", "ops=([0-9.]+)", Better::kHigher});
  spec.primary_metric = "ops";
  Agent agent = [base = Timings({})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.kind != StepKind::kMeasure || step.variant == "silent") return o;
    const double ops = step.variant == "fast" ? 1500 : 1000;
    o.metrics["ops"] = ops + static_cast<double>(step.seq % 5);
    return o;
  };
  const Trace run = DriveSpec(spec, agent);
  EXPECT_TRUE(run.report.higher_is_better);
  EXPECT_EQ(Candidate(run.report, "fast").verdict, "KEEP");
  const CandidateReport& silent = Candidate(run.report, "silent");
  EXPECT_EQ(silent.verdict, "REJECT");
  EXPECT_THAT(silent.reason, AllOf(HasSubstr("'ops'"), HasSubstr("not found")));
  EXPECT_EQ(Count(run.steps, StepKind::kMeasure, "silent"), 1);
}

TEST(AttemptDriverTest, MissingCustomMetricOnBaselineFailsTheAttempt) {
  ExperimentSpec spec = MakeSpec({"fast"});
  spec.custom_metrics.push_back({"ops", "ops=([0-9.]+)", Better::kHigher});
  spec.primary_metric = "ops";
  const Trace run = DriveSpec(spec, Timings({}));
  EXPECT_TRUE(run.report.failed);
  EXPECT_THAT(run.report.failure,
              AllOf(HasSubstr("measure of base"), HasSubstr("'ops'")));
}

}  // namespace
}  // namespace benchfleet
