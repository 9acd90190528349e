// Tests for AttemptDriver: the step plan of one attempt (order, counts,
// deadlines, command materialization) and its reactions to synthetic results
// (KILL, REJECT, baseline failure, extension, verdicts). No processes run: a
// fake "agent" turns each PlannedStep into a StepOutcome.
#include "controller/attempt/attempt_driver.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/spec.h"
#include "common/spec_loader.h"
#include "controller/report/report.h"
#include "controller/verdict/verdict.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kWorkdir[] = "/srv/exp";
constexpr int64_t kMs = 1'000'000;

CommandSpec Argv(std::vector<std::string> argv) {
  CommandSpec c;
  c.argv = std::move(argv);
  return c;
}

CommandSpec Shell(std::string shell) {
  CommandSpec c;
  c.shell = std::move(shell);
  return c;
}

VariantSpec Variant(const std::string& name) {
  VariantSpec v;
  v.name = name;
  v.command = Argv({"./bench", "--variant", name, "{input}"});
  return v;
}

// A valid spec: baseline "base" plus the named candidates, the given inputs, no
// setup, no warmups, 10 runs (max_runs 10: no extension unless a test raises
// it), interleaved.
ExperimentSpec MakeSpec(const std::vector<std::string>& candidates,
                        const std::vector<std::string>& inputs = {"tiny"}) {
  ExperimentSpec spec;
  spec.api_version = "benchfleet/v1";
  spec.kind = "Experiment";
  spec.name = "driver-test";
  spec.workdir = kWorkdir;
  spec.command = Argv({"./bench", "{input}"});
  for (const std::string& in : inputs) {
    InputSpec i;
    i.name = in;
    i.path = "inputs/" + in + ".txt";
    spec.inputs.push_back(i);
  }
  spec.warmup = 0;
  spec.runs = 10;
  spec.max_runs = 10;
  spec.timeout = absl::Seconds(10);
  spec.variants.push_back(Variant("base"));
  for (const std::string& c : candidates) spec.variants.push_back(Variant(c));
  return spec;
}

// How the fake agent answers: a function of the step (and the number of earlier
// steps of the same variant), returning the outcome with `seq` filled in by the
// harness.
using Agent = std::function<StepOutcome(const PlannedStep&)>;

// Median-centred, deterministic +-1% noise so that samples are not all
// identical.
int64_t Jitter(int64_t wall_ns, int64_t seq) {
  const int64_t k = (seq * 7919) % 11 - 5;  // -5..5
  return wall_ns + wall_ns * k / 500;
}

// A well-behaved agent: every variant exits 0 with the same output; measured
// runs take `wall_ms[variant]` (default 100 ms) with a little noise, and a run
// longer than its deadline is reported as timed out at the deadline, like the
// real agent.
Agent Timings(std::map<std::string, int64_t> wall_ms) {
  return [wall_ms = std::move(wall_ms)](const PlannedStep& step) {
    StepOutcome o;
    o.output_digest = "digest-ok";
    if (step.kind == StepKind::kSetup || step.kind == StepKind::kCorrectness) {
      o.wall_ns = 5 * kMs;
      return o;
    }
    auto it = wall_ms.find(step.variant);
    const int64_t ms = it == wall_ms.end() ? 100 : it->second;
    o.wall_ns = Jitter(ms * kMs, step.seq);
    o.user_ns = o.wall_ns;
    if (absl::Nanoseconds(o.wall_ns) > step.timeout) {
      o.wall_ns = absl::ToInt64Nanoseconds(step.timeout);
      o.timed_out = true;
      o.output_digest.clear();
    }
    return o;
  };
}

struct Trace {
  std::vector<PlannedStep> steps;
  ExperimentReport report;
};

// Drives the driver to the end, answering each step with `agent`. Fails the
// test (and stops) if the attempt does not finish within a generous number of
// steps.
Trace Drive(AttemptDriver& driver, const Agent& agent) {
  Trace run;
  for (int guard = 0; guard < 10'000; ++guard) {
    std::optional<PlannedStep> step = driver.Next();
    if (!step) break;
    StepOutcome o = agent(*step);
    o.seq = step->seq;
    run.steps.push_back(*step);
    driver.OnResult(o);
  }
  EXPECT_TRUE(driver.finished());
  EXPECT_FALSE(driver.Next().has_value());
  run.report = driver.BuildReport();
  return run;
}

Trace DriveSpec(ExperimentSpec spec, const Agent& agent, uint64_t seed = 42) {
  AttemptDriver driver(std::move(spec), seed, /*experiment_number=*/7);
  return Drive(driver, agent);
}

int Count(const std::vector<PlannedStep>& steps, StepKind kind,
          const std::string& variant = "", const std::string& input = "") {
  return static_cast<int>(
      std::count_if(steps.begin(), steps.end(), [&](const PlannedStep& s) {
        return s.kind == kind && (variant.empty() || s.variant == variant) &&
               (input.empty() || s.input == input);
      }));
}

const CandidateReport& Candidate(const ExperimentReport& report,
                                 const std::string& variant) {
  for (const CandidateReport& c : report.candidates)
    if (c.variant == variant) return c;
  ADD_FAILURE() << "no candidate " << variant << " in the report";
  static const CandidateReport kNone;
  return kNone;
}

// (kind, variant, input) of every step, for order comparisons.
std::vector<std::tuple<StepKind, std::string, std::string>> Order(
    const std::vector<PlannedStep>& steps) {
  std::vector<std::tuple<StepKind, std::string, std::string>> order;
  for (const PlannedStep& s : steps)
    order.emplace_back(s.kind, s.variant, s.input);
  return order;
}

std::vector<std::pair<std::string, std::string>> MeasureOrder(
    const std::vector<PlannedStep>& steps) {
  std::vector<std::pair<std::string, std::string>> order;
  for (const PlannedStep& s : steps)
    if (s.kind == StepKind::kMeasure) order.emplace_back(s.variant, s.input);
  return order;
}

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

namespace benchfleet {
namespace {

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

// ---------------------------------------------------------------------------------------
// KILL only on evidence (DESIGN.md §4).

// What the real agent reports for a run that takes `wall_ns`: stopped (and
// reaped 20 us later) at the step's deadline when it would run past it.
StepOutcome RunUntilDeadline(const PlannedStep& step, double wall_ns) {
  StepOutcome o;
  o.output_digest = "same";
  o.wall_ns = static_cast<int64_t>(wall_ns);
  if (absl::Nanoseconds(o.wall_ns) > step.timeout) {
    o.wall_ns = absl::ToInt64Nanoseconds(step.timeout) + 20'000;
    o.timed_out = true;
  }
  return o;
}

// A noisy "real" agent: each run takes `wall_ns` times a seeded, heavy-tailed
// factor (a few percent of jitter, and now and then a scheduler hiccup of up to
// 3 ms), and is stopped at its deadline like the real agent.
Agent Noisy(std::map<std::string, int64_t> wall_ns, uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  return [wall_ns = std::move(wall_ns), rng](const PlannedStep& step) {
    std::normal_distribution<double> jitter(1.0, 0.03);
    std::uniform_real_distribution<double> u(0, 1);
    auto it = wall_ns.find(step.variant);
    const double base =
        it == wall_ns.end() ? 1e6 : static_cast<double>(it->second);
    double wall = base * std::max(0.8, jitter(*rng));
    if (u(*rng) < 0.05) wall += u(*rng) * 3e6;  // a hiccup
    return RunUntilDeadline(step, wall);
  };
}

TEST(AttemptDriverKillTest, IdenticalCopiesAreNeverKilledAtAnyProgramLength) {
  // The A/A case that used to KILL at 2-5 ms: the bound sat inside the noise.
  int trials = 0;
  for (int64_t wall_us : {300, 1000, 2000, 5000, 20000}) {
    for (uint64_t seed = 1; seed <= 40; ++seed) {
      ExperimentSpec spec = MakeSpec({"copy"}, {"a", "b", "c", "d", "e"});
      spec.warmup = 2;
      const Trace t = DriveSpec(
          spec,
          Noisy({{"base", wall_us * 1000}, {"copy", wall_us * 1000}}, seed),
          seed);
      EXPECT_NE(Candidate(t.report, "copy").verdict, "KILL")
          << wall_us << " us, seed " << seed << ": "
          << Candidate(t.report, "copy").reason;
      ++trials;
    }
  }
  EXPECT_EQ(trials, 200);
}

// Bursts of host slowdown (another process, a hypervisor) that slow every
// run for a few steps by 1.5-3x, unflagged: what a loaded 2-core VM does.
Agent Bursty(std::map<std::string, int64_t> wall_ns, uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  auto burst_left = std::make_shared<int>(0);
  auto burst_factor = std::make_shared<double>(1.0);
  return [wall_ns = std::move(wall_ns), rng, burst_left,
          burst_factor](const PlannedStep& step) {
    std::uniform_real_distribution<double> u(0, 1);
    if (*burst_left == 0 && u(*rng) < 0.04) {
      *burst_left = 2 + static_cast<int>(u(*rng) * 5);
      *burst_factor = 1.5 + 1.5 * u(*rng);
    }
    auto it = wall_ns.find(step.variant);
    const double base =
        it == wall_ns.end() ? 1e6 : static_cast<double>(it->second);
    double wall = base * (1.0 + 0.03 * (u(*rng) - 0.5));
    if (*burst_left > 0) {
      wall *= *burst_factor;
      --*burst_left;
    }
    return RunUntilDeadline(step, wall);
  };
}

TEST(AttemptDriverKillTest, BurstsThatSlowEveryRunNeverKillAnIdenticalCopy) {
  int trials = 0;
  for (int64_t wall_us : {500, 5000, 20000}) {
    for (uint64_t seed = 1; seed <= 60; ++seed) {
      ExperimentSpec spec = MakeSpec({"copy1", "copy2", "copy3", "copy4"},
                                     {"a", "b", "c", "d", "e"});
      spec.warmup = 2;
      spec.max_runs = 20;
      std::map<std::string, int64_t> walls;
      for (const char* v : {"base", "copy1", "copy2", "copy3", "copy4"})
        walls[v] = wall_us * 1000;
      const Trace t = DriveSpec(spec, Bursty(walls, seed), seed);
      for (const CandidateReport& c : t.report.candidates) {
        EXPECT_NE(c.verdict, "KILL") << wall_us << " us, seed " << seed << ", "
                                     << c.variant << ": " << c.reason;
        ++trials;
      }
    }
  }
  EXPECT_EQ(trials, 720);
}

TEST(AttemptDriverKillTest, FivePercentSlowerIsDiscardedNotKilled) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    ExperimentSpec spec = MakeSpec({"slower"}, {"a", "b", "c", "d", "e"});
    const Trace t = DriveSpec(
        spec, Noisy({{"base", 20'000'000}, {"slower", 21'000'000}}, seed),
        seed);
    EXPECT_EQ(Candidate(t.report, "slower").verdict, "DISCARD")
        << "seed " << seed << ": " << Candidate(t.report, "slower").reason;
  }
}

TEST(AttemptDriverKillTest,
     MuchSlowerLongProgramIsKilledWithinThreeRunsAndSaysWhatItSaved) {
  // One input: the bound on an input exists after the baseline's third run
  // there, so with k inputs the KILL comes within about 2k+1 candidate runs.
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    ExperimentSpec spec = MakeSpec({"slow"}, {"a"});
    spec.warmup = 0;
    const Trace t = DriveSpec(
        spec, Noisy({{"base", 1'000'000'000}, {"slow", 1'500'000'000}}, seed),
        seed);
    const CandidateReport& slow = Candidate(t.report, "slow");
    EXPECT_EQ(slow.verdict, "KILL") << "seed " << seed;
    EXPECT_LE(Count(t.steps, StepKind::kMeasure, "slow"), 3) << "seed " << seed;
    EXPECT_GE(slow.kill_skipped_runs, 7);
    EXPECT_GT(slow.kill_saved_ns, 7LL * 1'000'000'000);
    EXPECT_THAT(slow.reason, HasSubstr("saving about"));
  }
}

TEST(AttemptDriverKillTest, SlowRunsTheHostFlaggedDoNotCount) {
  ExperimentSpec spec = MakeSpec({"copy"});
  // Every candidate run after the third baseline run is slow, but the host was
  // contended during each: re-run (within budget) and never a KILL.
  Agent agent = [base = Timings({})](const PlannedStep& step) {
    StepOutcome o = base(step);
    if (step.variant == "copy" && step.kind == StepKind::kMeasure &&
        step.timeout < absl::Seconds(10)) {
      o.wall_ns = absl::ToInt64Nanoseconds(step.timeout) + 1000;
      o.timed_out = true;
      o.host_flags = {"contended"};
    }
    return o;
  };
  const Trace t = DriveSpec(spec, agent);
  EXPECT_NE(Candidate(t.report, "copy").verdict, "KILL");
  EXPECT_GT(t.report.reruns, 0);
}

TEST(AttemptDriverKillTest, RunsJudgedLaterCountOnceTheBaselineHasABound) {
  // In the interleaved order the candidate's first runs finish before the
  // baseline has three runs, without a bound; they are judged again when it
  // has one, so the KILL comes no later than the third candidate run.
  ExperimentSpec spec = MakeSpec({"slow"});
  const Trace t = DriveSpec(spec, Timings({{"slow", 200}}));
  EXPECT_EQ(Candidate(t.report, "slow").verdict, "KILL");
  EXPECT_LE(Count(t.steps, StepKind::kMeasure, "slow"), 3);
}

// ---------------------------------------------------------------------------------------
// A window of steps out at once.

TEST(AttemptDriverPipelineTest, StepsAreTakenAheadWithinAPhaseAndWaitAtItsEnd) {
  ExperimentSpec spec = MakeSpec({"fast"}, {"a", "b"});
  spec.warmup = 1;
  AttemptDriver driver(spec, 9, 1);
  Agent agent = Timings({{"fast", 70}});
  // The whole warmup phase (2 variants x 2 inputs) can be taken without a
  // result; then the driver waits for them before planning the measured runs.
  std::vector<PlannedStep> out;
  while (std::optional<PlannedStep> s = driver.Next()) out.push_back(*s);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(driver.steps_out(), 4u);
  EXPECT_FALSE(driver.finished());
  // Results in reverse order are fine.
  for (auto it = out.rbegin(); it != out.rend(); ++it) {
    StepOutcome o = agent(*it);
    o.seq = it->seq;
    driver.OnResult(o);
  }
  EXPECT_EQ(driver.steps_out(), 0u);
  // A result twice, or of an unknown step, changes nothing.
  StepOutcome again = agent(out[0]);
  again.seq = out[0].seq;
  driver.OnResult(again);
  EXPECT_EQ(driver.progress().steps_done, 4);
  std::optional<PlannedStep> next = driver.Next();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->kind, StepKind::kMeasure);
}

TEST(AttemptDriverPipelineTest, KillRevokesTheVariantsStepsOut) {
  ExperimentSpec spec = MakeSpec({"hang", "fast"});
  AttemptDriver driver(spec, 11, 1);
  Agent agent = [base = Timings({{"fast", 70}})](const PlannedStep& step) {
    if (step.variant != "hang") return base(step);
    StepOutcome o;
    o.timed_out = true;
    o.wall_ns = absl::ToInt64Nanoseconds(step.timeout);
    return o;
  };
  // Keep eight steps out, answering the oldest each time, like the dispatcher.
  std::deque<PlannedStep> out;
  std::set<int64_t> revoked;
  int answered_hang = 0;
  for (int guard = 0; guard < 1000 && !driver.finished(); ++guard) {
    while (driver.steps_out() < 8) {
      std::optional<PlannedStep> s = driver.Next();
      if (!s) break;
      out.push_back(*s);
    }
    if (out.empty()) break;
    PlannedStep s = out.front();
    out.pop_front();
    if (revoked.contains(s.seq)) continue;
    StepOutcome o = agent(s);
    o.seq = s.seq;
    answered_hang += s.variant == "hang";
    driver.OnResult(o);
    for (int64_t seq : driver.TakeRevoked()) {
      revoked.insert(seq);
      const auto it =
          std::find_if(out.begin(), out.end(),
                       [&](const PlannedStep& p) { return p.seq == seq; });
      ASSERT_NE(it, out.end()) << "revoked a step that is not out: " << seq;
      EXPECT_EQ(it->variant, "hang");
    }
  }
  EXPECT_TRUE(driver.finished());
  EXPECT_EQ(answered_hang, 2);
  EXPECT_FALSE(revoked.empty()) << "the killed variant had steps out";
  const ExperimentReport report = driver.BuildReport();
  EXPECT_EQ(Candidate(report, "hang").verdict, "KILL");
  EXPECT_EQ(Candidate(report, "fast").verdict, "KEEP");
}

// ---------------------------------------------------------------------------------------
// A host that is not ready gives no verdict.

TEST(AttemptDriverHostNotReadyTest, GateNotMetBeforeACandidateRunIsNotAReject) {
  ExperimentSpec spec = MakeSpec({"fast"});
  AttemptDriver driver(spec, 4, 1);
  Agent agent = Timings({{"fast", 70}});
  bool blocked = false;
  while (std::optional<PlannedStep> step = driver.Next()) {
    StepOutcome o = agent(*step);
    o.seq = step->seq;
    if (step->variant == "fast" && !blocked) {
      o = StepOutcome{};
      o.seq = step->seq;
      o.exit_code = -1;
      o.host_not_ready = true;
      o.error = "the host did not become ready within 15m: CPU at 81.0 °C";
      o.gate_wait_ns = absl::ToInt64Nanoseconds(absl::Minutes(15));
      o.gate_blocked_by = "CPU at 81.0 °C, at or above the 70 °C gate";
      blocked = true;
    }
    driver.OnResult(o);
  }
  ASSERT_TRUE(blocked);
  EXPECT_TRUE(driver.finished());
  EXPECT_TRUE(driver.host_not_ready());
  const ExperimentReport report = driver.BuildReport();
  EXPECT_TRUE(report.failed);
  EXPECT_TRUE(report.host_not_ready);
  EXPECT_THAT(report.failure,
              AllOf(HasSubstr("host not ready before measure fast"),
                    HasSubstr("81.0 °C")));
  for (const CandidateReport& c : report.candidates)
    EXPECT_NE(c.verdict, "REJECT");
  ASSERT_FALSE(report.gate_waits.empty());
  EXPECT_THAT(report.gate_waits.back().blocked_by, HasSubstr("70 °C gate"));
}

TEST(AttemptDriverHostNotReadyTest, GateNotMetBeforeTheBaselineIsNotAFailure) {
  ExperimentSpec spec = MakeSpec({"fast"});
  AttemptDriver driver(spec, 4, 1);
  std::optional<PlannedStep> step = driver.Next();
  ASSERT_TRUE(step.has_value());
  StepOutcome o;
  o.seq = step->seq;
  o.exit_code = -1;
  o.host_not_ready = true;
  o.error =
      "the host did not become ready within 1m: other processes use 1.8 cores";
  driver.OnResult(o);
  EXPECT_TRUE(driver.finished());
  EXPECT_TRUE(driver.host_not_ready());
  EXPECT_TRUE(driver.BuildReport().host_not_ready);
}

}  // namespace
}  // namespace benchfleet
