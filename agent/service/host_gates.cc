#include "agent/service/host_gates.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace benchfleet {

SampleTime ToSampleTime(absl::Time t) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(absl::ToUnixNanos(t))));
}

namespace {

std::string Seconds(std::chrono::nanoseconds d) {
  return absl::StrFormat("%.2f s", std::chrono::duration<double>(d).count());
}

// The gates' verdict on one sample, and how soon it can change by itself
// (the competing-CPU reading completes its window).
struct GateCheck {
  std::vector<std::string> blockers;
  absl::Duration retry_after = absl::InfiniteDuration();
};

GateCheck CheckGates(const HostSample& s, const GateOptions& g) {
  GateCheck out;
  std::vector<std::string>& blockers = out.blockers;
  if (g.max_gpu_temp_c > 0) {
    for (const GpuSample& gpu : s.gpus) {
      if (gpu.temp_c && *gpu.temp_c >= g.max_gpu_temp_c) {
        blockers.push_back(
            absl::StrFormat("GPU %d at %.1f °C, at or above the %.0f °C gate",
                            gpu.index, *gpu.temp_c, g.max_gpu_temp_c));
      }
    }
  }
  if (g.max_cpu_temp_c > 0) {
    if (std::optional<double> t = MaxCpuTempC(s); t && *t >= g.max_cpu_temp_c) {
      blockers.push_back(
          absl::StrFormat("CPU at %.1f °C, at or above the %.0f °C gate", *t,
                          g.max_cpu_temp_c));
    }
  }

  // The competing reading against a gate's limit. A complete window is taken
  // as it is; one still filling only where rounding cannot change the answer.
  const bool measuring =
      s.other_cpu_window_needed > std::chrono::nanoseconds(0);
  enum class Reading { kBelow, kAbove, kMeasuring, kNone };
  auto judge = [&](double limit) {
    if (!s.other_cpu_cores)
      return measuring ? Reading::kMeasuring : Reading::kNone;
    if (!measuring)
      return *s.other_cpu_cores > limit ? Reading::kAbove : Reading::kBelow;
    const double rounding = s.other_cpu_rounding_cores.value_or(
        std::numeric_limits<double>::infinity());
    if (*s.other_cpu_cores + rounding <= limit) return Reading::kBelow;
    if (*s.other_cpu_cores - rounding > limit) return Reading::kAbove;
    return Reading::kMeasuring;
  };
  bool reported_measuring = false;
  auto measuring_blocker = [&](const char* what) {
    if (reported_measuring) return;
    reported_measuring = true;
    const std::chrono::nanoseconds window =
        s.other_cpu_window + s.other_cpu_window_needed;
    std::string so_far;
    if (s.other_cpu_cores && s.other_cpu_rounding_cores) {
      so_far = absl::StrFormat(" (%.2f ± %.2f cores)", *s.other_cpu_cores,
                               *s.other_cpu_rounding_cores);
    }
    blockers.push_back(absl::StrFormat(
        "measuring other processes' CPU for %s: %s of the %s window so far%s",
        what, Seconds(s.other_cpu_window), Seconds(window), so_far));
    out.retry_after =
        std::min(out.retry_after, absl::FromChrono(s.other_cpu_window_needed));
  };
  auto over_window = [&]() -> std::string {
    if (s.other_cpu_window <= std::chrono::nanoseconds(0)) return "";
    return absl::StrCat(" over the last ", Seconds(s.other_cpu_window));
  };
  auto busiest = [&]() -> std::string {
    if (s.top_processes.empty()) return "";
    const ProcessCpu& p = s.top_processes.front();
    return absl::StrFormat(" (busiest: pid %d %s, %.2f cores)", p.pid, p.comm,
                           p.cpu_cores);
  };

  if (g.max_load > 0 && s.load1 && *s.load1 > g.max_load) {
    const absl::Time at = absl::FromChrono(s.taken_at);
    const bool ours_in_load = g.own_work_ended_at != absl::InfinitePast() &&
                              at - g.own_work_ended_at < g.load_memory;
    if (!ours_in_load) {
      blockers.push_back(absl::StrFormat(
          "load average %.2f, above the %.2f gate (none of it is this "
          "agent's: %s)",
          *s.load1, g.max_load,
          g.own_work_ended_at == absl::InfinitePast()
              ? std::string("it has run no job yet")
              : absl::StrCat("its last job ended ",
                             absl::FormatDuration(absl::Trunc(
                                 at - g.own_work_ended_at, absl::Seconds(1))),
                             " ago")));
    } else {
      switch (judge(g.max_load)) {
        case Reading::kNone:
          // No competing reading at all (no /proc/stat): the load is all we
          // have.
          blockers.push_back(absl::StrFormat(
              "load average %.2f, above the %.2f gate (this agent's jobs ran "
              "within the last %s, but the host gives no competing-CPU "
              "reading to tell others' share)",
              *s.load1, g.max_load, absl::FormatDuration(g.load_memory)));
          break;
        case Reading::kMeasuring:
          measuring_blocker("the load gate");
          break;
        case Reading::kAbove:
          blockers.push_back(absl::StrFormat(
              "other processes use %.2f cores%s, above the load gate's "
              "%.2f%s; the load average (%.2f) is not used because this "
              "agent's own jobs ran within the last %s and it still counts "
              "them",
              *s.other_cpu_cores, over_window(), g.max_load, busiest(),
              *s.load1, absl::FormatDuration(g.load_memory)));
          break;
        case Reading::kBelow:
          break;
      }
    }
  }
  if (g.max_competing_cpu > 0) {
    switch (judge(g.max_competing_cpu)) {
      case Reading::kMeasuring:
        measuring_blocker("the competing-CPU gate");
        break;
      case Reading::kAbove:
        blockers.push_back(absl::StrFormat(
            "other processes use %.2f cores%s, above the %.2f-core gate%s",
            *s.other_cpu_cores, over_window(), g.max_competing_cpu, busiest()));
        break;
      case Reading::kBelow:
      case Reading::kNone:
        break;
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> GateBlockers(const HostSample& s,
                                      const GateOptions& g) {
  return CheckGates(s, g).blockers;
}

GateOutcome WaitForGates(
    Probe& probe, Clock& clock, const GateOptions& gates,
    absl::Time cooldown_until, const std::atomic<bool>* cancel,
    const std::function<void(const std::string&)>& on_blocked) {
  GateOutcome out;
  const absl::Time start = clock.Now();
  for (;;) {
    const absl::Time now = clock.Now();
    if (cancel != nullptr && cancel->load()) {
      out.waited = clock.Now() - start;
      out.cancelled = true;
      out.reason = "cancelled while waiting for the host's gates";
      return out;
    }
    std::vector<std::string> blockers;
    absl::Duration sleep = gates.poll_interval;
    if (now < cooldown_until) {
      blockers.push_back(absl::StrCat(
          "cooling down for ", absl::FormatDuration(cooldown_until - now),
          " more since the previous experiment"));
      sleep = std::min(sleep, cooldown_until - now);
    }
    // Sampled even during the cooldown: this keeps the competing-CPU reading's
    // window filling.
    GateCheck check = CheckGates(probe.Sample(ToSampleTime(now)), gates);
    blockers.insert(blockers.end(), check.blockers.begin(),
                    check.blockers.end());
    out.waited = clock.Now() - start;
    if (blockers.empty()) {
      out.passed = true;
      return out;
    }
    ++out.blocked_polls;
    out.waited_for = absl::StrJoin(blockers, "; ");
    if (on_blocked) on_blocked(out.waited_for);
    if (out.waited >= gates.max_wait) {
      out.reason = absl::StrCat("the host did not become ready within ",
                                absl::FormatDuration(gates.max_wait), ": ",
                                out.waited_for);
      return out;
    }
    // A competing-CPU reading completes its window by itself: no need to
    // sleep a whole poll interval past that.
    sleep = std::min(sleep, check.retry_after);
    sleep = std::min(sleep, gates.max_wait - out.waited);
    clock.SleepFor(std::max(sleep, absl::Microseconds(1)));
  }
}

StepSampler::StepSampler(Probe* probe, Clock* clock, absl::Duration interval)
    : probe_(probe), clock_(clock), interval_(interval) {
  if (interval_ > absl::ZeroDuration())
    thread_ = std::thread([this] { Loop(); });
}

StepSampler::~StepSampler() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void StepSampler::Begin() {
  if (!thread_.joinable()) return;  // sampling disabled
  HostSample opening = probe_->Sample(ToSampleTime(clock_->Now()));
  absl::MutexLock lock(&mu_);
  samples_.clear();
  samples_.push_back(std::move(opening));
  active_ = true;
}

std::vector<HostSample> StepSampler::End() {
  std::vector<HostSample> out;
  {
    absl::MutexLock lock(&mu_);
    active_ = false;
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !busy_; };
    mu_.Await(absl::Condition(&idle));
    out.swap(samples_);
  }
  if (thread_.joinable()) {
    // The closing sample covers the run's tail (its deltas end at the run's
    // end).
    out.push_back(probe_->SampleWithProcesses(ToSampleTime(clock_->Now())));
  }
  return out;
}

void StepSampler::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || active_;
      };
      mu_.Await(absl::Condition(&wake));
      if (stopping_) return;
      // Begin took the opening sample: wait one interval (real time, since
      // this paces a real probe) or until End/stop.
      auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !active_;
      };
      if (mu_.AwaitWithTimeout(absl::Condition(&done), interval_)) continue;
      busy_ = true;
    }
    HostSample s = probe_->Sample(ToSampleTime(clock_->Now()));
    absl::MutexLock lock(&mu_);
    busy_ = false;
    // Started during the run, so it belongs to it even if End came meanwhile:
    // End waits for it (busy_) before it takes the samples.
    samples_.push_back(std::move(s));
  }
}

}  // namespace benchfleet
