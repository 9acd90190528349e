// AttemptDriver: the plan of one experiment attempt as a step-by-step state
// machine. It decides which process the agent runs next (setup, correctness,
// warmups, measured runs in a seeded interleaved order, adaptive extension to
// max_runs), the deadline of each candidate run (DESIGN.md §4), reacts to each
// result (KILL after two runs in a row that count toward it, REJECT on failure
// or differing output, failure of the attempt when the baseline breaks, "host
// not ready" when the agent's gates could not be met), checks the
// baseline against the previous comparable attempt ("environment changed",
// re-measuring the inputs that moved) and finally builds the ExperimentReport
// with the decision engine.
//
// Several steps may be out at once: the controller keeps a window of orders
// ahead of the agent (so runs follow each other back to back), calling Next
// until it returns nothing, and OnResult as results come in, in any order.
// Within a phase the plan does not depend on results; at the end of a phase
// (before extension, which needs every result) Next returns nothing until the
// steps out have come back. When a result aborts a variant (KILL, REJECT), its
// steps still out are revoked (TakeRevoked) and the agent drops them.
//
// Pure logic: no I/O, no clock, no gRPC; the controller feeds it results. Not
// thread-safe; externally synchronized (the controller's attempt loop owns it).
#ifndef BENCHFLEET_CONTROLLER_ATTEMPT_ATTEMPT_DRIVER_H_
#define BENCHFLEET_CONTROLLER_ATTEMPT_ATTEMPT_DRIVER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/spec.h"
#include "controller/history/baseline_drift.h"
#include "controller/report/report.h"
#include "controller/verdict/verdict.h"

namespace benchfleet {

enum class StepKind { kSetup, kCorrectness, kWarmup, kMeasure };
const char* StepKindName(
    StepKind kind);  // "setup", "correctness", "warmup", "measure"

struct PlannedStep {
  int64_t seq = 0;
  StepKind kind = StepKind::kMeasure;
  std::string variant;
  std::string input;  // empty for setup/correctness
  std::vector<std::string> argv;
  std::string cwd;
  std::map<std::string, std::string> env;
  absl::Duration timeout = absl::InfiniteDuration();
  std::string compare_file;  // digest this file instead of stdout (compare:
                             // file:<path>)
  std::vector<std::pair<std::string, std::string>>
      metrics;            // custom metric name -> regex
  std::vector<int> cpus;  // pin the run to these CPUs (benchmark.cpus)
};

// What the host did while one step ran, as the agent summarized its samples
// (v1::HostSummary; same field names and units). 0 means "not measured".
struct StepHostSummary {
  int samples = 0;  // probe samples taken during the step
  double max_cpu_temp_c = 0;
  double max_gpu_temp_c = 0;
  double min_freq_mhz = 0;
  double mean_cpu_util = 0;      // 0..1, whole host
  int64_t throttle_delta = 0;    // thermal-throttle events during the step
  double max_competing_cpu = 0;  // cores used by other processes
  std::string top_competitor;    // "comm (pid N)" of the busiest competitor
};

struct StepOutcome {
  int64_t seq = 0;
  int64_t wall_ns = 0, user_ns = 0, sys_ns = 0, max_rss_bytes = 0;
  int exit_code = 0;
  int term_signal = 0;
  bool timed_out = false;
  std::string output_digest;
  std::map<std::string, double> metrics;
  std::string error;        // could not start
  std::string stderr_tail;  // for failure messages
  // Host disturbances the agent saw during the run ("throttled",
  // "frequency-drop", "contended"); a flagged measured run is repeated
  // (bounded).
  std::vector<std::string> host_flags;
  int64_t gate_wait_ns = 0;  // time the step waited for the host's gates
  // The agent's summary of the host during the run; nullopt when it sent
  // none. Stored with the result, not used by the driver.
  std::optional<StepHostSummary> host;
  // The host's gates could not be met within max_wait: the step did not run
  // and `error` says what blocked. Ends the attempt as "host not ready".
  bool host_not_ready = false;
  std::string gate_blocked_by;  // what held the step back while it waited
};

struct AttemptProgress {
  int64_t steps_done = 0;
  int64_t steps_total = 0;
  std::string current;  // e.g. "measure fast on tiny (round 4)"
};

class AttemptDriver {
 public:
  // `spec` must be valid (spec_loader); `seed` fixes the order and the
  // bootstrap.
  AttemptDriver(ExperimentSpec spec, uint64_t seed, int64_t experiment_number);

  // The next step to run, or nullopt when there is none to send now: the
  // attempt is finished (finished()), or the steps already out must come back
  // first (end of a phase). Steps may be taken ahead of their results.
  std::optional<PlannedStep> Next();
  // The result of a step Next returned; results of unknown or revoked steps
  // are ignored.
  void OnResult(const StepOutcome& outcome);
  // Steps out whose variant has been aborted (KILL, REJECT) since the last
  // call, and baseline runs once no candidate is left to compare with: they
  // are no longer expected back. The caller tells the agent.
  std::vector<int64_t> TakeRevoked();
  // Steps returned by Next whose results have not come back (and were not
  // revoked).
  size_t steps_out() const { return in_flight_.size(); }

  // The previous comparable baseline (same experiment, host fingerprint and
  // commit; history::FindBaselineReference), or why there is none. Call it
  // before the measured runs end (the dispatcher does when the lease is
  // accepted); a later call is ignored, and without one the report says
  // nothing about the environment. When the baseline median moved more than
  // its noise on some inputs, the attempt does not finish after its measured
  // runs: it runs `runs` more baseline runs on those inputs (interleaved like
  // the first), compares them with the reference again and reports
  // "environment changed" or "environment changed (transient)". The
  // re-measured runs do not join the baseline sample the verdicts use (they
  // ran after the candidates, not interleaved with them).
  void SetBaselineReference(history::BaselineReference reference);

  bool finished() const { return finished_; }
  // The attempt ended because the host's gates could not be met (finished()
  // is true; the report is marked failed and host_not_ready).
  bool host_not_ready() const { return host_not_ready_; }
  AttemptProgress progress() const;
  uint64_t seed() const { return seed_; }

  // Builds the report (statistics and verdicts). Valid once finished().
  ExperimentReport BuildReport() const;

 private:
  enum class Phase {
    kSetup,
    kCorrectness,
    kWarmup,
    kMeasure,
    kExtend,
    kRemeasure,
    kDone
  };
  struct Pending {
    StepKind kind;
    std::string variant;
    std::string input;
    int round = 0;
    bool remeasure = false;  // a baseline run after "environment changed"
    // The deadline the step was sent with (set when Next hands it out).
    absl::Duration deadline = absl::InfiniteDuration();
  };
  // One of a candidate's warmup or measured runs, as the KILL rule sees it.
  struct KillRecord {
    int64_t seq = 0;  // execution order
    std::string input;
    StepKind kind = StepKind::kMeasure;
    verdict::KillRun run;
  };
  struct VariantState {
    bool rejected = false;
    std::string reject_reason;
    bool killed = false;
    std::string kill_reason;
    int64_t kill_skipped_runs = 0;
    int64_t kill_saved_ns = 0;
    std::vector<KillRecord> runs;  // execution order
  };
  struct Sample {
    double value = 0;
    int64_t wall_ns = 0;
    bool timed_out = false;
    std::string digest;
  };

  bool Active(const std::string& variant) const;
  // False for a baseline warmup or measured run once no candidate is left to
  // compare with it (all killed or rejected): skipped, or revoked when out.
  bool Needed(const Pending& p) const;
  void AdvancePhase();
  void QueueRounds(StepKind kind, int rounds,
                   const std::vector<std::string>& variants,
                   const std::vector<std::string>& inputs);
  PlannedStep Materialize(const Pending& p);
  // The baseline's wall times on `input` so far (every completed run): the
  // KILL bound's evidence.
  std::vector<double> BaselineWalls(const std::string& input) const;
  // verdict::PooledSlowestRatio over the baseline's inputs so far.
  double PooledSlowestRatio() const;
  // Whether the baseline ran between steps `first` and `second`, and none of
  // its runs since `first` was flagged or beyond the bound the rest of its
  // input's runs give.
  bool HostQuietBetween(int64_t first, int64_t second) const;
  std::optional<double> PrimaryValue(const StepOutcome& o,
                                     std::string* why) const;
  // The baseline's measured values per input (the sample verdicts use).
  std::map<std::string, std::vector<double>> BaselineSamples() const;
  // Compares the baseline with the reference and queues the re-measure block
  // for the inputs that moved; returns whether it queued anything.
  bool QueueRemeasure();
  EnvironmentCheck CheckEnvironment() const;
  void FailAttempt(std::string reason);
  // Applies the KILL rule (verdict::CountsTowardKill) to the last two runs of
  // `variant` that are evidence; kills it when both count.
  void CheckKill(const std::string& variant);
  // One recorded run under the KILL rule with the baseline as it is now:
  // counts, clear (within the bound), pending (its input's baseline has too
  // few runs for a bound yet) or neutral (flagged by the host: no evidence).
  enum class Judgement { kCounts, kClear, kPending, kNeutral };
  Judgement Judge(const KillRecord& r) const;
  // "measure fast on tiny (round 3)", "re-measure base on big (round 2)".
  std::string Where(const Pending& p) const;
  void Reject(const std::string& variant, std::string reason);
  std::string Describe(const StepOutcome& o) const;
  int MaxReruns() const;
  // Steps still to run (in flight, queued, or in phases not queued yet) for
  // active variants.
  int64_t RemainingSteps() const;
  // Weighted geometric mean over inputs of the variant's median primary metric.
  double MedianAcrossInputs(const std::string& variant,
                            bool completed_only) const;
  // Runs the decision engine for every candidate; `final_pass` = no more
  // extension.
  ExperimentReport Evaluate(
      bool final_pass,
      std::map<std::string, std::set<std::string>>* extend) const;

  ExperimentSpec spec_;
  uint64_t seed_;
  int64_t number_;
  std::mt19937_64 rng_;
  Phase phase_ = Phase::kSetup;
  std::deque<Pending> queue_;
  std::map<int64_t, Pending> in_flight_;  // by step seq
  std::vector<int64_t> revoked_;          // not yet taken by TakeRevoked
  bool host_not_ready_ = false;
  std::vector<GateWait> gate_waits_;
  int64_t next_seq_ = 1;
  int64_t steps_done_ = 0;
  bool finished_ = false;
  bool failed_ = false;
  std::string failure_;
  bool extended_ = false;
  int reruns_ = 0;        // flagged measured runs repeated
  int flagged_kept_ = 0;  // flagged runs kept once the re-run budget was spent
  int64_t gate_wait_ns_ = 0;
  std::map<std::string, int> flag_counts_;
  std::vector<std::string> warnings_;
  std::map<std::string, VariantState> variants_;
  // (variant, input) -> measured samples, in execution order.
  std::map<std::pair<std::string, std::string>, std::vector<Sample>> samples_;
  // input -> wall times of every completed baseline run (warmups, flagged
  // and re-measured runs too): the KILL bound's evidence.
  std::map<std::string, std::vector<double>> baseline_kill_walls_;
  // Completed baseline warmup and measured runs, in execution order.
  struct BaselineRun {
    int64_t seq = 0;
    std::string input;
    double wall_ns = 0;
    bool flagged = false;
  };
  std::vector<BaselineRun> baseline_trace_;
  std::optional<history::BaselineReference> reference_;
  bool drift_checked_ = false;
  // input -> baseline values of the re-measure block.
  std::map<std::string, std::vector<double>> remeasured_;
  // (variant, input) -> digests seen in measured and warmup runs.
  std::map<std::pair<std::string, std::string>, std::set<std::string>> digests_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_ATTEMPT_ATTEMPT_DRIVER_H_
