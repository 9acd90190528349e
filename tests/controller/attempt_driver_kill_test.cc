// AttemptDriver: KILL only on evidence, the pipelined step window and
// host-not-ready, with the fake agent of attempt_driver_testing.h.
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
