// AttemptDriver, part 1 of 3: the plan (phases, interleaved rounds, extension
// and re-measurement) and the results as they arrive. The KILL rule is in
// attempt_kill.cc, the evaluation and report in attempt_evaluate.cc.
#include "controller/attempt/attempt_driver.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "controller/stats/stats.h"
#include "controller/verdict/verdict.h"

namespace benchfleet {
namespace {

constexpr size_t kStderrShown = 300;

// Quotes `s` for /bin/sh so that an input path with spaces or metacharacters
// stays one word.
std::string ShellQuote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

std::vector<std::string> ToArgv(const CommandSpec& cmd,
                                const std::string* input_path) {
  if (!cmd.shell.empty()) {
    std::string shell = cmd.shell;
    if (input_path != nullptr) {
      shell =
          absl::StrReplaceAll(shell, {{"{input}", ShellQuote(*input_path)}});
    }
    return {"/bin/sh", "-c", shell};
  }
  std::vector<std::string> argv = cmd.argv;
  if (input_path != nullptr) {
    for (std::string& a : argv)
      a = absl::StrReplaceAll(a, {{"{input}", *input_path}});
  }
  return argv;
}

// Fisher-Yates with the generator's raw output, so that a seed gives the same
// order with every standard library (std::shuffle's use of the engine is
// implementation-defined).
template <typename T>
void SeededShuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(v[i - 1], v[j]);
  }
}

std::string Tail(const std::string& s) {
  std::string t =
      s.size() > kStderrShown ? s.substr(s.size() - kStderrShown) : s;
  absl::StrReplaceAll({{"\n", " | "}}, &t);
  return t;
}

}  // namespace

const char* StepKindName(StepKind kind) {
  switch (kind) {
    case StepKind::kSetup:
      return "setup";
    case StepKind::kCorrectness:
      return "correctness";
    case StepKind::kWarmup:
      return "warmup";
    case StepKind::kMeasure:
      return "measure";
  }
  return "unknown";
}

AttemptDriver::AttemptDriver(ExperimentSpec spec, uint64_t seed,
                             int64_t experiment_number)
    : spec_(std::move(spec)),
      seed_(seed),
      number_(experiment_number),
      rng_(seed) {
  for (const VariantSpec& v : spec_.variants)
    variants_[v.name] = VariantState{};
  warnings_ = spec_.warnings;
  for (const VariantSpec& v : spec_.variants) {
    const std::optional<CommandSpec>& setup = v.setup ? v.setup : spec_.setup;
    if (setup && !setup->empty())
      queue_.push_back({StepKind::kSetup, v.name, "", 0});
  }
}

bool AttemptDriver::Active(const std::string& variant) const {
  const VariantState& vs = variants_.at(variant);
  return !vs.rejected && !vs.killed;
}

void AttemptDriver::QueueRounds(StepKind kind, int rounds,
                                const std::vector<std::string>& variants,
                                const std::vector<std::string>& inputs) {
  if (spec_.order == RunOrder::kSequential) {
    for (const std::string& v : variants)
      for (const std::string& in : inputs)
        for (int r = 0; r < rounds; ++r) queue_.push_back({kind, v, in, r});
    return;
  }
  // Interleaved: each round is one randomized block holding every (variant,
  // input) pair once, so slow drifts of the host hit all variants alike.
  for (int r = 0; r < rounds; ++r) {
    std::vector<Pending> block;
    for (const std::string& v : variants)
      for (const std::string& in : inputs) block.push_back({kind, v, in, r});
    SeededShuffle(block, rng_);
    for (Pending& p : block) queue_.push_back(std::move(p));
  }
}

void AttemptDriver::AdvancePhase() {
  std::vector<std::string> active;
  for (const VariantSpec& v : spec_.variants)
    if (Active(v.name)) active.push_back(v.name);
  std::vector<std::string> inputs;
  for (const InputSpec& in : spec_.inputs) inputs.push_back(in.name);

  switch (phase_) {
    case Phase::kSetup:
      phase_ = Phase::kCorrectness;
      if (spec_.correctness_command && !spec_.correctness_command->empty()) {
        for (const std::string& v : active)
          queue_.push_back({StepKind::kCorrectness, v, "", 0});
      }
      return;
    case Phase::kCorrectness:
      phase_ = Phase::kWarmup;
      QueueRounds(StepKind::kWarmup, spec_.warmup, active, inputs);
      return;
    case Phase::kWarmup:
      phase_ = Phase::kMeasure;
      QueueRounds(StepKind::kMeasure, spec_.runs, active, inputs);
      return;
    case Phase::kMeasure: {
      phase_ = Phase::kExtend;
      std::map<std::string, std::set<std::string>> extend;
      Evaluate(/*final_pass=*/false, &extend);
      if (extend.empty()) {
        if (QueueRemeasure()) return;
        break;
      }
      extended_ = true;
      // Per (variant, input): how many more runs reach max_runs. The baseline
      // is extended on every input any candidate needs, so both sides end with
      // comparable n.
      std::map<std::pair<std::string, std::string>, int> needed;
      const std::string& base = spec_.baseline().name;
      for (const auto& [variant, ins] : extend) {
        for (const std::string& in : ins) {
          for (const std::string& v : {base, variant}) {
            const int have = static_cast<int>(samples_[{v, in}].size());
            needed[{v, in}] = std::max(0, spec_.max_runs - have);
          }
        }
      }
      int rounds = 0;
      for (const auto& [key, n] : needed) rounds = std::max(rounds, n);
      for (int r = 0; r < rounds; ++r) {
        std::vector<Pending> block;
        for (const auto& [key, n] : needed)
          if (n > r)
            block.push_back({StepKind::kMeasure, key.first, key.second, r});
        if (spec_.order == RunOrder::kInterleaved) SeededShuffle(block, rng_);
        for (Pending& p : block) queue_.push_back(std::move(p));
      }
      if (!queue_.empty() || QueueRemeasure()) return;
      break;
    }
    case Phase::kExtend:
      if (QueueRemeasure()) return;
      break;
    case Phase::kRemeasure:
    case Phase::kDone:
      break;
  }
  phase_ = Phase::kDone;
  finished_ = true;
}

std::optional<PlannedStep> AttemptDriver::Next() {
  while (!finished_) {
    if (queue_.empty()) {
      // The next phase depends on every result of this one (rejections,
      // extension, the environment check): wait for the steps still out.
      if (!in_flight_.empty()) return std::nullopt;
      AdvancePhase();
      continue;
    }
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    if (!Active(p.variant))
      continue;  // aborted: the variant was rejected or killed
    if (!Needed(p)) continue;
    PlannedStep step = Materialize(p);
    p.deadline = step.timeout;
    in_flight_.emplace(step.seq, std::move(p));
    return step;
  }
  return std::nullopt;
}

bool AttemptDriver::Needed(const Pending& p) const {
  // Baseline runs are only there to be compared with: once every candidate is
  // killed or rejected, the rest of them would measure for nothing. A few are
  // kept on each input all the same, so that the report still shows the
  // baseline and a baseline that cannot run still says so.
  if (p.variant != spec_.baseline().name || p.remeasure ||
      (p.kind != StepKind::kWarmup && p.kind != StepKind::kMeasure) ||
      spec_.variants.size() < 2) {
    return true;
  }
  if (p.kind == StepKind::kMeasure) {
    auto it = samples_.find({p.variant, p.input});
    const size_t have = it == samples_.end() ? 0 : it->second.size();
    if (have < verdict::kKillMinBaselineRuns) return true;
  }
  for (size_t vi = 1; vi < spec_.variants.size(); ++vi)
    if (Active(spec_.variants[vi].name)) return true;
  return false;
}

std::vector<int64_t> AttemptDriver::TakeRevoked() {
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (Active(it->second.variant) && Needed(it->second)) {
      ++it;
      continue;
    }
    revoked_.push_back(it->first);
    it = in_flight_.erase(it);
  }
  return std::exchange(revoked_, {});
}

std::string AttemptDriver::Where(const Pending& p) const {
  std::string w = absl::StrCat(
      p.remeasure ? "re-measure" : StepKindName(p.kind), " ", p.variant);
  if (!p.input.empty()) {
    absl::StrAppend(&w, " on ", p.input);
    if (p.kind == StepKind::kMeasure || p.kind == StepKind::kWarmup)
      absl::StrAppend(&w, " (round ", p.round + 1, ")");
  }
  return w;
}

PlannedStep AttemptDriver::Materialize(const Pending& p) {
  const VariantSpec* variant = nullptr;
  for (const VariantSpec& v : spec_.variants)
    if (v.name == p.variant) variant = &v;
  PlannedStep step;
  step.seq = next_seq_++;
  step.kind = p.kind;
  step.variant = p.variant;
  step.input = p.input;
  // With source.repo the agent runs the step in the variant's checkout: an
  // empty cwd is that checkout's root (agent.proto Lease.sources).
  step.cwd = spec_.HasSource() ? std::string() : spec_.workdir;
  step.env = variant->env;
  step.env["BENCHFLEET_VARIANT"] = p.variant;
  step.env["BENCHFLEET_STEP"] = StepKindName(p.kind);
  step.timeout = spec_.timeout;
  switch (p.kind) {
    case StepKind::kSetup:
      step.argv =
          ToArgv(variant->setup ? *variant->setup : *spec_.setup, nullptr);
      break;
    case StepKind::kCorrectness:
      step.argv = ToArgv(*spec_.correctness_command, nullptr);
      break;
    case StepKind::kWarmup:
    case StepKind::kMeasure: {
      const InputSpec* input = nullptr;
      for (const InputSpec& in : spec_.inputs)
        if (in.name == p.input) input = &in;
      step.argv = ToArgv(variant->command ? *variant->command : spec_.command,
                         &input->path);
      step.env["BENCHFLEET_INPUT"] = input->name;
      step.env["BENCHFLEET_INPUT_PATH"] = input->path;
      if (spec_.compare == CompareMode::kFile)
        step.compare_file = spec_.compare_path;
      step.cpus = spec_.cpus;
      if (p.kind == StepKind::kMeasure) {
        for (const CustomMetricSpec& m : spec_.custom_metrics)
          step.metrics.emplace_back(m.name, m.regex);
      }
      if (p.variant != spec_.baseline().name) {
        step.timeout = verdict::CandidateDeadline(
            BaselineWalls(p.input), spec_.verdict.kill_factor, spec_.timeout,
            PooledSlowestRatio());
      }
      break;
    }
  }
  return step;
}

std::optional<double> AttemptDriver::PrimaryValue(const StepOutcome& o,
                                                  std::string* why) const {
  const std::string& m = spec_.primary_metric;
  if (m == "wall_time") return static_cast<double>(o.wall_ns);
  if (m == "user_time") return static_cast<double>(o.user_ns);
  if (m == "sys_time") return static_cast<double>(o.sys_ns);
  if (m == "max_rss") return static_cast<double>(o.max_rss_bytes);
  auto it = o.metrics.find(m);
  if (it == o.metrics.end()) {
    *why = absl::StrCat("metric '", m,
                        "' was not found in its output (check the regex in ",
                        "benchmark.metrics.custom)");
    return std::nullopt;
  }
  return it->second;
}

std::string AttemptDriver::Describe(const StepOutcome& o) const {
  std::string d = o.term_signal != 0
                      ? absl::StrCat("was killed by signal ", o.term_signal)
                      : absl::StrCat("exited with status ", o.exit_code);
  if (!o.stderr_tail.empty())
    absl::StrAppend(&d, " (stderr: ", Tail(o.stderr_tail), ")");
  return d;
}

void AttemptDriver::FailAttempt(std::string reason) {
  failed_ = true;
  failure_ = std::move(reason);
  finished_ = true;
  phase_ = Phase::kDone;
  queue_.clear();
  // Nothing still out is needed: the controller ends the lease, which drops
  // them at the agent.
  in_flight_.clear();
}

void AttemptDriver::Reject(const std::string& variant, std::string reason) {
  VariantState& vs = variants_[variant];
  if (vs.rejected) return;
  vs.rejected = true;
  vs.reject_reason = std::move(reason);
}

void AttemptDriver::OnResult(const StepOutcome& o) {
  auto out = in_flight_.find(o.seq);
  if (out == in_flight_.end() || finished_) return;
  const Pending p = std::move(out->second);
  in_flight_.erase(out);
  ++steps_done_;
  gate_wait_ns_ += o.gate_wait_ns;
  if (o.gate_wait_ns > 0)
    gate_waits_.push_back({Where(p), o.gate_wait_ns, o.gate_blocked_by});
  if (o.host_not_ready) {
    // Not the user's command failing and not the variant's fault: no verdict
    // from this host now. The experiment goes back to the queue.
    host_not_ready_ = true;
    return FailAttempt(
        absl::StrCat("host not ready before ", Where(p), ": ", o.error));
  }
  const bool is_baseline = p.variant == spec_.baseline().name;
  const std::string where =
      p.input.empty() ? std::string() : absl::StrCat(" on input ", p.input);
  const std::string what =
      absl::StrCat(StepKindName(p.kind), " of ", p.variant, where);

  if (!o.error.empty()) {
    std::string reason = absl::StrCat(what, " could not start: ", o.error);
    if (is_baseline) return FailAttempt(std::move(reason));
    return Reject(p.variant, std::move(reason));
  }
  if (p.kind == StepKind::kSetup || p.kind == StepKind::kCorrectness) {
    if (o.timed_out || o.exit_code != 0 || o.term_signal != 0) {
      std::string reason =
          o.timed_out ? absl::StrCat(what, " exceeded the timeout of ",
                                     absl::FormatDuration(spec_.timeout))
                      : absl::StrCat(what, " ", Describe(o));
      if (is_baseline) {
        return FailAttempt(absl::StrCat(
            reason, "; the baseline must pass before anything can ",
            "be compared with it"));
      }
      return Reject(p.variant, std::move(reason));
    }
    return;
  }

  if (o.timed_out && is_baseline) {
    return FailAttempt(absl::StrCat(what, " exceeded the timeout of ",
                                    absl::FormatDuration(spec_.timeout),
                                    "; raise benchmark.timeout"));
  }
  if (!is_baseline &&
      (o.timed_out || (o.exit_code == 0 && o.term_signal == 0))) {
    // The KILL rule judges every run the candidate completed or was stopped
    // in, with the baseline as it is now.
    KillRecord rec;
    rec.seq = o.seq;
    rec.input = p.input;
    rec.kind = p.kind;
    rec.run.wall_ns = static_cast<double>(o.wall_ns);
    // The agent stops a run at its deadline: min(kill bound, timeout). One
    // stopped at the bound of its time is judged like any run, against the
    // bound the baseline gives now: a burst that slowed it may have slowed
    // the baseline's runs since, and widened the bound.
    rec.run.hit_absolute_timeout = o.timed_out && p.deadline >= spec_.timeout;
    rec.run.host_flagged = !o.host_flags.empty();
    variants_[p.variant].runs.push_back(std::move(rec));
    CheckKill(p.variant);
  }
  if (o.timed_out) {
    // A run stopped at its deadline counts against the candidate with what it
    // measured up to then (a lower bound of its time); a custom metric it never
    // printed has no value. A flagged one is repeated like any flagged run.
    std::string unused;
    for (const std::string& f : o.host_flags) ++flag_counts_[f];
    if (p.kind == StepKind::kMeasure && Active(p.variant)) {
      if (!o.host_flags.empty() && reruns_ < MaxReruns()) {
        ++reruns_;
        queue_.push_back(p);
        return;
      }
      if (std::optional<double> value = PrimaryValue(o, &unused)) {
        samples_[{p.variant, p.input}].push_back({*value, o.wall_ns, true, ""});
      }
    }
    return;
  }
  if (o.exit_code != 0 || o.term_signal != 0) {
    std::string reason = absl::StrCat(what, " ", Describe(o));
    if (is_baseline) return FailAttempt(std::move(reason));
    return Reject(p.variant, std::move(reason));
  }
  if (is_baseline) {
    // Every completed baseline run is evidence of what the host does to this
    // program — warmups, flagged and re-measured runs included: they can only
    // widen the KILL bound. Each one may decide a KILL that was waiting for
    // it, or turn a candidate run that looked slow into one within the bound.
    baseline_kill_walls_[p.input].push_back(static_cast<double>(o.wall_ns));
    baseline_trace_.push_back({o.seq, p.input, static_cast<double>(o.wall_ns),
                               !o.host_flags.empty()});
    for (size_t vi = 1; vi < spec_.variants.size(); ++vi)
      CheckKill(spec_.variants[vi].name);
  }
  if (spec_.compare != CompareMode::kNone)
    digests_[{p.variant, p.input}].insert(o.output_digest);
  if (p.kind != StepKind::kMeasure) return;
  std::string why;
  std::optional<double> value = PrimaryValue(o, &why);
  if (!value) {
    std::string reason = absl::StrCat(what, ": ", why);
    if (is_baseline) return FailAttempt(std::move(reason));
    return Reject(p.variant, std::move(reason));
  }
  if (!o.host_flags.empty()) {
    // The host was throttled, lost frequency or ran a competing process during
    // this run: its time says more about the host than about the variant.
    // Repeat it (at the end of the current phase, when the disturbance has
    // likely passed), within a bounded budget.
    for (const std::string& f : o.host_flags) ++flag_counts_[f];
    if (reruns_ < MaxReruns()) {
      ++reruns_;
      queue_.push_back(p);
      return;
    }
    ++flagged_kept_;
  }
  if (p.remeasure) {
    remeasured_[p.input].push_back(*value);
    return;
  }
  samples_[{p.variant, p.input}].push_back(
      {*value, o.wall_ns, false, o.output_digest});
}

int AttemptDriver::MaxReruns() const {
  // A quarter of the planned measured runs, at least 5: enough to ride out a
  // burst of background work, bounded so that a host that is always disturbed
  // still ends.
  const int planned = spec_.runs * static_cast<int>(spec_.inputs.size()) *
                      static_cast<int>(spec_.variants.size());
  return std::max(5, planned / 4);
}

int64_t AttemptDriver::RemainingSteps() const {
  int64_t remaining = static_cast<int64_t>(in_flight_.size());
  for (const Pending& p : queue_) remaining += Active(p.variant) ? 1 : 0;
  // Phases not queued yet run only the variants still active: a candidate
  // rejected or killed early drops out of the total instead of leaving it short
  // of done forever.
  int64_t active = 0;
  for (const VariantSpec& v : spec_.variants) active += Active(v.name) ? 1 : 0;
  const int64_t inputs = static_cast<int64_t>(spec_.inputs.size());
  switch (phase_) {
    case Phase::kSetup:
      if (spec_.correctness_command && !spec_.correctness_command->empty())
        remaining += active;
      [[fallthrough]];
    case Phase::kCorrectness:
      remaining += active * inputs * spec_.warmup;
      [[fallthrough]];
    case Phase::kWarmup:
      remaining += active * inputs * spec_.runs;
      break;
    case Phase::kMeasure:
    case Phase::kExtend:
    case Phase::kRemeasure:
    case Phase::kDone:
      break;
  }
  return remaining;
}

AttemptProgress AttemptDriver::progress() const {
  AttemptProgress pr;
  pr.steps_done = steps_done_;
  pr.steps_total = finished_ ? steps_done_ : steps_done_ + RemainingSteps();
  if (finished_) {
    pr.current = failed_ ? "failed" : "finished";
  } else if (!in_flight_.empty()) {
    // The oldest step out is the one the agent runs now.
    pr.current = Where(in_flight_.begin()->second);
  }
  return pr;
}

void AttemptDriver::SetBaselineReference(history::BaselineReference reference) {
  if (drift_checked_) return;
  reference_ = std::move(reference);
}

bool AttemptDriver::QueueRemeasure() {
  if (drift_checked_) return false;
  drift_checked_ = true;
  phase_ = Phase::kRemeasure;
  if (!reference_ || !reference_->available ||
      (!reference_->metric.empty() &&
       reference_->metric != spec_.primary_metric)) {
    return false;
  }
  std::vector<std::string> moved;
  for (const history::InputDrift& d :
       history::CompareBaselines(BaselineSamples(), reference_->inputs)) {
    if (d.compared && d.moved) moved.push_back(d.input);
  }
  if (moved.empty()) return false;
  const std::string& base = spec_.baseline().name;
  if (spec_.order == RunOrder::kSequential) {
    for (const std::string& in : moved)
      for (int r = 0; r < spec_.runs; ++r)
        queue_.push_back({StepKind::kMeasure, base, in, r, true});
    return true;
  }
  for (int r = 0; r < spec_.runs; ++r) {
    std::vector<Pending> block;
    for (const std::string& in : moved)
      block.push_back({StepKind::kMeasure, base, in, r, true});
    SeededShuffle(block, rng_);
    for (Pending& p : block) queue_.push_back(std::move(p));
  }
  return true;
}

}  // namespace benchfleet
