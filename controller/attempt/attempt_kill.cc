// AttemptDriver, part 2 of 3: the KILL rule (DESIGN.md §4) — which runs count
// as evidence that a candidate is too slow to finish, and when two in a row
// end it. The plan and results are in attempt_driver.cc, the evaluation in
// attempt_evaluate.cc.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/stats/stats.h"
#include "controller/verdict/verdict.h"

namespace benchfleet {

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

}  // namespace benchfleet
