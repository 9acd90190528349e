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

double WeightedGeoMean(
    const std::vector<std::pair<double, double>>& value_weight) {
  double num = 0, den = 0;
  for (const auto& [v, w] : value_weight) {
    if (v <= 0) continue;
    num += w * std::log(v);
    den += w;
  }
  return den > 0 ? std::exp(num / den) : 0;
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

double AttemptDriver::PooledSlowestRatio() const {
  std::vector<std::vector<double>> by_input;
  for (const auto& [input, walls] : baseline_kill_walls_)
    by_input.push_back(walls);
  return verdict::PooledSlowestRatio(by_input);
}

bool AttemptDriver::HostQuietBetween(int64_t first, int64_t second) const {
  bool between = false;
  for (auto it = baseline_trace_.rbegin();
       it != baseline_trace_.rend() && it->seq > first; ++it) {
    between = between || it->seq < second;
    // Was this baseline run itself beyond what the rest of the baseline on
    // its input allows? Then the host was disturbed around then.
    std::vector<double> others = BaselineWalls(it->input);
    auto self = std::find(others.begin(), others.end(), it->wall_ns);
    if (self != others.end()) others.erase(self);
    const std::optional<double> bound =
        verdict::KillBoundNs(others, spec_.verdict.kill_factor);
    if (it->flagged || (bound && it->wall_ns > *bound)) return false;
  }
  return between;
}

std::vector<double> AttemptDriver::BaselineWalls(
    const std::string& input) const {
  auto it = baseline_kill_walls_.find(input);
  return it == baseline_kill_walls_.end() ? std::vector<double>{} : it->second;
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
  step.cwd = spec_.workdir;
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

AttemptDriver::Judgement AttemptDriver::Judge(const KillRecord& r) const {
  if (r.run.hit_absolute_timeout) return Judgement::kCounts;  // a hang
  // A flagged run measured the host, not the variant: no evidence either way.
  if (r.run.host_flagged) return Judgement::kNeutral;
  const std::vector<double> base = BaselineWalls(r.input);
  if (base.size() < verdict::kKillMinBaselineRuns) return Judgement::kPending;
  return verdict::CountsTowardKill(r.run, base, spec_.verdict.kill_factor,
                                   PooledSlowestRatio())
             ? Judgement::kCounts
             : Judgement::kClear;
}

void AttemptDriver::CheckKill(const std::string& variant) {
  VariantState& vs = variants_[variant];
  if (vs.killed || vs.rejected) return;
  // The current streak of runs that count, newest first (flagged runs are
  // skipped: no evidence either way). A run that cannot be judged yet (its
  // input's baseline has too few runs) holds the decision back: it may turn
  // out to be within the bound and break the streak.
  std::vector<const KillRecord*> streak;
  for (auto it = vs.runs.rbegin(); it != vs.runs.rend(); ++it) {
    const Judgement j = Judge(*it);
    if (j == Judgement::kNeutral) continue;
    if (j == Judgement::kPending) return;
    if (j == Judgement::kClear) break;
    streak.push_back(&*it);
  }
  if (streak.size() < 2) return;
  // Two in a row; a hang needs nothing more. Otherwise the host was quiet
  // around them: the baseline ran between two of the streak's runs, and none
  // of its runs since the older one was itself beyond the bound the rest of
  // the baseline allows, or flagged. A burst that slows two candidate runs
  // slows the baseline run between them too.
  const KillRecord* pair[2] = {nullptr, nullptr};  // newer, older
  for (size_t k = 0; k + 1 < streak.size(); ++k) {
    if ((streak[k]->run.hit_absolute_timeout &&
         streak[k + 1]->run.hit_absolute_timeout) ||
        HostQuietBetween(streak[k + 1]->seq, streak[k]->seq)) {
      pair[0] = streak[k];
      pair[1] = streak[k + 1];
      break;
    }
  }
  if (pair[0] == nullptr) return;
  // And the candidate is slow as a rule, not only twice: the median over its
  // runs so far of run / baseline median on that run's input is past
  // kill_factor. A copy of the baseline caught twice by bursts is not.
  if (!pair[1]->run.hit_absolute_timeout) {
    std::vector<double> ratios;
    for (const KillRecord& r : vs.runs) {
      if (r.run.host_flagged) continue;
      const std::vector<double> base = BaselineWalls(r.input);
      if (base.size() < verdict::kKillMinBaselineRuns) continue;
      ratios.push_back(r.run.wall_ns / stats::Median(base));
    }
    if (ratios.empty() || stats::Median(ratios) <= spec_.verdict.kill_factor) {
      return;
    }
  }
  const KillRecord* judged[2] = {streak[0], pair[1]};
  vs.killed = true;
  // What the abort saves: the planned warmup and measured runs the candidate
  // has not run, at no less than its own observed time each.
  const int64_t planned = static_cast<int64_t>(spec_.warmup + spec_.runs) *
                          static_cast<int64_t>(spec_.inputs.size());
  int64_t done = 0;
  for (const KillRecord& r : vs.runs) done += r.run.host_flagged ? 0 : 1;
  vs.kill_skipped_runs = std::max<int64_t>(0, planned - done);
  const double per_run = (judged[0]->run.wall_ns + judged[1]->run.wall_ns) / 2;
  vs.kill_saved_ns =
      static_cast<int64_t>(per_run * static_cast<double>(vs.kill_skipped_runs));
  const KillRecord& last = *judged[0];
  std::string why;
  if (last.run.hit_absolute_timeout) {
    why = absl::StrFormat(
        "the last, a %s run on input %s, hit the absolute timeout of %s",
        StepKindName(last.kind), last.input,
        absl::FormatDuration(spec_.timeout));
  } else {
    const std::vector<double> base = BaselineWalls(last.input);
    why = absl::StrFormat(
        "the last, on input %s, ran %s against a baseline median of %s "
        "(bound %s: %.2fx the median or the slowest baseline run plus 4 "
        "robust sigma)",
        last.input, FormatValue(last.run.wall_ns, MetricUnit::kNanoseconds),
        FormatValue(stats::Median(base), MetricUnit::kNanoseconds),
        FormatValue(*verdict::KillBoundNs(base, spec_.verdict.kill_factor,
                                          PooledSlowestRatio()),
                    MetricUnit::kNanoseconds),
        spec_.verdict.kill_factor);
  }
  vs.kill_reason =
      vs.kill_skipped_runs == 0
          ? absl::StrCat(why, "; no planned run was left to skip")
          : absl::StrFormat(
                "%s; its remaining %d planned run(s) were aborted, saving "
                "about %s",
                why, vs.kill_skipped_runs,
                FormatValue(static_cast<double>(vs.kill_saved_ns),
                            MetricUnit::kNanoseconds));
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

double AttemptDriver::MedianAcrossInputs(const std::string& variant,
                                         bool completed_only) const {
  std::vector<std::pair<double, double>> medians;
  for (const InputSpec& in : spec_.inputs) {
    auto it = samples_.find({variant, in.name});
    if (it == samples_.end()) continue;
    std::vector<double> values;
    for (const Sample& s : it->second)
      if (!completed_only || !s.timed_out) values.push_back(s.value);
    if (!values.empty()) medians.emplace_back(stats::Median(values), in.weight);
  }
  return WeightedGeoMean(medians);
}

void AttemptDriver::SetBaselineReference(history::BaselineReference reference) {
  if (drift_checked_) return;
  reference_ = std::move(reference);
}

std::map<std::string, std::vector<double>> AttemptDriver::BaselineSamples()
    const {
  std::map<std::string, std::vector<double>> out;
  const std::string& base = spec_.baseline().name;
  for (const InputSpec& in : spec_.inputs) {
    auto it = samples_.find({base, in.name});
    if (it == samples_.end() || it->second.empty()) continue;
    std::vector<double>& values = out[in.name];
    for (const Sample& s : it->second) values.push_back(s.value);
  }
  return out;
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

EnvironmentCheck AttemptDriver::CheckEnvironment() const {
  EnvironmentCheck env;
  if (!reference_) return env;
  const history::BaselineReference& ref = *reference_;
  if (!ref.available) {
    env.status = ref.no_history ? "no-history" : "not-compared";
    env.lines.push_back(ref.why_not);
    return env;
  }
  env.reference_experiment_id = ref.experiment_id;
  env.reference_experiment_number = ref.experiment_number;
  const std::string since =
      absl::StrFormat("experiment %03d (%s)", ref.experiment_number,
                      absl::FormatTime("%Y-%m-%d %H:%M UTC", ref.completed_at,
                                       absl::UTCTimeZone()));
  if (!ref.metric.empty() && ref.metric != spec_.primary_metric) {
    env.status = "not-compared";
    env.lines.push_back(absl::StrCat("not compared with history: ", since,
                                     " measured ", ref.metric,
                                     ", this attempt ", spec_.primary_metric));
    return env;
  }
  const std::vector<history::InputDrift> drift =
      history::CompareBaselines(BaselineSamples(), ref.inputs);
  const history::InputDrift* largest = nullptr;
  std::vector<std::string> not_compared;
  bool still_moved = false;
  int remeasured_inputs = 0;
  for (const history::InputDrift& d : drift) {
    if (!d.compared) {
      not_compared.push_back(absl::StrCat(d.input, ": ", d.why_not));
      continue;
    }
    BaselineDriftRow row;
    row.input = d.input;
    row.previous_median = d.previous_median;
    row.median = d.median;
    row.change = d.change;
    row.noise = d.noise;
    row.moved = d.moved;
    if (largest == nullptr || std::fabs(d.change) > std::fabs(largest->change))
      largest = &d;
    if (!d.moved) {
      env.inputs.push_back(std::move(row));
      continue;
    }
    std::string line = absl::StrFormat(
        "baseline median on %s moved %s (noise ±%.1f%%) since %s on this "
        "fingerprint and commit; re-measured: ",
        d.input, FormatPercent(d.change), d.noise * 100, since);
    auto rm = remeasured_.find(d.input);
    std::optional<history::InputDrift> again;
    if (rm != remeasured_.end()) {
      for (const history::BaselineStats& b : ref.inputs)
        if (b.input == d.input) again = history::CompareBaseline(rm->second, b);
      row.n_remeasured = static_cast<int64_t>(rm->second.size());
      ++remeasured_inputs;
    }
    if (again && again->compared) {
      row.remeasured_median = again->median;
      row.remeasured_change = again->change;
      row.remeasured_moved = again->moved;
      absl::StrAppend(&line, FormatPercent(again->change));
    } else {
      // Not re-measured (the attempt ended first) or too few runs to tell:
      // the move stands.
      row.remeasured_moved = true;
      absl::StrAppend(&line, "n/a");
    }
    if (row.remeasured_moved) {
      still_moved = true;
      env.lines.push_back(absl::StrCat("environment changed: ", line));
    } else {
      env.lines.push_back(absl::StrCat(
          "environment changed (transient): re-measured, back within noise; ",
          line));
    }
    env.inputs.push_back(std::move(row));
  }
  if (env.inputs.empty()) {
    env.status = "not-compared";
    env.lines.push_back(absl::StrCat("not compared with ", since, ": ",
                                     absl::StrJoin(not_compared, "; ")));
    return env;
  }
  if (env.lines.empty()) {
    env.status = "unchanged";
    env.lines.push_back(absl::StrFormat(
        "baseline within noise of %s on this fingerprint and commit (largest "
        "move %s on %s, noise ±%.1f%%)",
        since, FormatPercent(largest->change), largest->input,
        largest->noise * 100));
    return env;
  }
  env.status = still_moved ? "changed" : "transient";
  if (remeasured_inputs > 0) {
    env.lines.push_back(absl::StrCat(
        "the ", spec_.runs, " re-measured baseline run(s) per moved input are ",
        "not part of the baseline sample the verdicts use (they ran after the "
        "candidates, not interleaved with them)",
        still_moved ? "; check the host (kernel, firmware, governor, "
                      "background services) before trusting comparisons with "
                      "earlier experiments"
                    : ""));
  }
  return env;
}

ExperimentReport AttemptDriver::BuildReport() const {
  return Evaluate(true, nullptr);
}

ExperimentReport AttemptDriver::Evaluate(
    bool final_pass,
    std::map<std::string, std::set<std::string>>* extend) const {
  ExperimentReport report;
  report.number = number_;
  report.name = spec_.name;
  report.campaign = spec_.campaign;
  report.metric = spec_.primary_metric;
  report.seed = seed_;
  report.baseline = spec_.baseline().name;
  report.steps_run = steps_done_;
  report.failed = failed_;
  report.failure = failure_;
  report.host_not_ready = host_not_ready_;
  report.gate_wait_ns = gate_wait_ns_;
  report.gate_waits = gate_waits_;
  report.warnings = warnings_;
  Better better = Better::kLower;
  if (report.metric == "max_rss") {
    report.unit = MetricUnit::kBytes;
  } else if (report.metric == "wall_time" || report.metric == "user_time" ||
             report.metric == "sys_time") {
    report.unit = MetricUnit::kNanoseconds;
  } else {
    report.unit = MetricUnit::kPlain;
    for (const CustomMetricSpec& m : spec_.custom_metrics)
      if (m.name == report.metric) better = m.better;
  }
  report.higher_is_better = better == Better::kHigher;
  report.outlier_sigmas = verdict::kOutlierSigmas;
  if (failed_) return report;

  const verdict::DecisionPolicy policy =
      verdict::PolicyFor(spec_.verdict, better, seed_);
  const std::string& base = spec_.baseline().name;

  // Outputs the baseline itself does not reproduce cannot be compared.
  std::set<std::string> unstable_inputs;
  if (spec_.compare != CompareMode::kNone) {
    for (const InputSpec& in : spec_.inputs) {
      auto it = digests_.find({base, in.name});
      if (it != digests_.end() && it->second.size() > 1) {
        unstable_inputs.insert(in.name);
        report.warnings.push_back(absl::StrCat(
            "the baseline's output on input ", in.name,
            " differs between its own runs, so outputs were not compared "
            "there; make the ",
            "output deterministic or set correctness.compare: none"));
      }
    }
  }

  std::map<std::string, double> improvement_of;
  for (size_t vi = 1; vi < spec_.variants.size(); ++vi) {
    const VariantSpec& v = spec_.variants[vi];
    const VariantState& vs = variants_.at(v.name);
    verdict::CandidateEvidence ev;
    ev.variant = v.name;
    ev.correctness_failed = vs.rejected;
    ev.correctness_detail = vs.reject_reason;
    ev.killed = vs.killed;
    ev.kill_detail = vs.kill_reason;
    bool all_at_max = true;
    for (const InputSpec& in : spec_.inputs) {
      verdict::InputSamples is;
      is.input = in.name;
      is.weight = in.weight;
      auto b = samples_.find({base, in.name});
      auto c = samples_.find({v.name, in.name});
      if (b != samples_.end())
        for (const Sample& s : b->second) is.baseline.push_back(s.value);
      if (c != samples_.end())
        for (const Sample& s : c->second) is.candidate.push_back(s.value);
      if (static_cast<int>(is.candidate.size()) < spec_.max_runs ||
          static_cast<int>(is.baseline.size()) < spec_.max_runs) {
        all_at_max = false;
      }
      if (spec_.compare != CompareMode::kNone &&
          !unstable_inputs.contains(in.name)) {
        auto bd = digests_.find({base, in.name});
        auto cd = digests_.find({v.name, in.name});
        if (bd != digests_.end() && cd != digests_.end()) {
          for (const std::string& d : cd->second) {
            if (!bd->second.contains(d)) {
              is.output_differs = true;
              is.output_detail = absl::StrCat(
                  spec_.compare == CompareMode::kFile ? spec_.compare_path
                                                      : "stdout",
                  " sha256 ", d.substr(0, 12), "… vs the baseline's ",
                  bd->second.begin()->substr(0, 12), "…");
              break;
            }
          }
        }
      }
      // The decision engine needs samples on both sides; a killed or rejected
      // candidate may have none on some inputs, and its verdict does not depend
      // on them.
      if ((vs.rejected || vs.killed) &&
          (is.baseline.size() < 2 || is.candidate.size() < 2) &&
          !is.output_differs) {
        continue;
      }
      ev.inputs.push_back(std::move(is));
    }
    ev.at_max_runs = final_pass || all_at_max;

    const verdict::Decision d = verdict::Decide(ev, policy);
    if (extend != nullptr && d.needs_more_runs) {
      for (const std::string& in : d.inputs_to_extend)
        (*extend)[v.name].insert(in);
    }

    CandidateReport cr;
    cr.variant = v.name;
    cr.verdict = verdict::VerdictName(d.verdict);
    cr.reason = d.reason;
    cr.change = d.aggregate_change;
    cr.p_value = d.aggregate_p_value;
    cr.change_measured = d.aggregate_measured;
    cr.combines = v.combines;
    cr.kill_skipped_runs = vs.kill_skipped_runs;
    cr.kill_saved_ns = vs.kill_saved_ns;
    std::vector<std::pair<double, double>> base_medians, cand_medians;
    for (const verdict::InputDecision& id : d.inputs) {
      InputRow row;
      row.input = id.input;
      row.n_baseline = static_cast<int64_t>(id.baseline.n);
      row.n_candidate = static_cast<int64_t>(id.candidate.n);
      row.n_baseline_measured =
          static_cast<int64_t>(id.baseline.n + id.baseline_outliers_removed);
      row.n_candidate_measured =
          static_cast<int64_t>(id.candidate.n + id.candidate_outliers_removed);
      row.baseline_median = id.baseline.median;
      row.candidate_median = id.candidate.median;
      row.baseline_cv = id.baseline.cv;
      row.candidate_cv = id.candidate.cv;
      row.change = id.change;
      row.ci_low = id.change_ci.low;
      row.ci_high = id.change_ci.high;
      row.p_value = id.p_value;
      row.welch_p_value = id.welch_p_value;
      row.outliers_removed = static_cast<int64_t>(
          id.baseline_outliers_removed + id.candidate_outliers_removed);
      // Per-input classification: the decision table's thresholds and noise
      // rule, from the decision engine.
      bool differs = false;
      for (const verdict::InputSamples& is : ev.inputs)
        if (is.input == id.input) differs = is.output_differs;
      row.verdict =
          verdict::VerdictName(verdict::ClassifyInput(id, differs, policy));
      base_medians.emplace_back(id.baseline.median, id.weight);
      cand_medians.emplace_back(id.candidate.median, id.weight);
      cr.inputs.push_back(std::move(row));
    }
    if (d.aggregate_measured) {
      // The medians of the very inputs the aggregate combines, so that Result
      // and Change agree (ratio of these = 1 + change), whatever the verdict.
      cr.baseline_median = WeightedGeoMean(base_medians);
      cr.candidate_median = WeightedGeoMean(cand_medians);
    } else {
      // No aggregate (an input could not be compared, e.g. a candidate that
      // crashed early): show what was measured, from the raw samples of the
      // inputs on which both sides completed runs, and no change.
      std::vector<std::pair<double, double>> base_raw, cand_raw;
      for (const InputSpec& in : spec_.inputs) {
        auto b = samples_.find({base, in.name});
        auto c = samples_.find({v.name, in.name});
        if (b == samples_.end() || c == samples_.end()) continue;
        std::vector<double> base_values, cand_values;
        for (const Sample& s : b->second) base_values.push_back(s.value);
        for (const Sample& s : c->second)
          if (!s.timed_out) cand_values.push_back(s.value);
        if (base_values.empty() || cand_values.empty()) continue;
        base_raw.emplace_back(stats::Median(base_values), in.weight);
        cand_raw.emplace_back(stats::Median(cand_values), in.weight);
      }
      cr.baseline_median =
          base_raw.empty() ? MedianAcrossInputs(base, /*completed_only=*/false)
                           : WeightedGeoMean(base_raw);
      cr.candidate_median = WeightedGeoMean(cand_raw);
    }
    if (d.aggregate_measured && d.verdict != verdict::Verdict::kKill &&
        d.verdict != verdict::Verdict::kReject) {
      improvement_of[v.name] = d.aggregate_improvement;
    }
    report.candidates.push_back(std::move(cr));
  }

  // Compound variants: a combination that does worse than its best part is a
  // conflict.
  for (CandidateReport& cr : report.candidates) {
    if (cr.combines.empty() || !improvement_of.contains(cr.variant)) continue;
    std::string best;
    double best_improvement = -1e300;
    for (const std::string& part : cr.combines) {
      auto it = improvement_of.find(part);
      if (it != improvement_of.end() && it->second > best_improvement) {
        best = part;
        best_improvement = it->second;
      }
    }
    if (!best.empty() && improvement_of[cr.variant] < best_improvement) {
      cr.conflict = absl::StrFormat(
          "%s improves %.1f%%, less than its part %s alone (%.1f%%): the parts "
          "conflict; keep "
          "only the better one",
          cr.variant, improvement_of[cr.variant] * 100, best,
          best_improvement * 100);
    }
  }
  for (const auto& [input, values] : BaselineSamples()) {
    const stats::Summary sum = stats::Summarize(values);
    report.baseline_inputs.push_back(
        {input, static_cast<int64_t>(sum.n), sum.median, sum.mad, sum.cv});
  }
  report.environment = CheckEnvironment();
  report.reruns = reruns_;
  for (const auto& [flag, count] : flag_counts_)
    report.host_flags[flag] = count;
  if (flagged_kept_ > 0) {
    report.warnings.push_back(absl::StrCat(
        flagged_kept_, " measured run(s) were disturbed by the host (",
        absl::StrJoin(flag_counts_, ", ", absl::PairFormatter("×")),
        ") and kept because the re-run budget of ", MaxReruns(),
        " was spent; check the host for background load or throttling"));
  }
  if (extended_) {
    report.warnings.push_back(absl::StrCat(
        "some inputs were noisy or not yet significant after ", spec_.runs,
        " runs and were extended towards max_runs (", spec_.max_runs, ")"));
  }
  return report;
}

}  // namespace benchfleet
