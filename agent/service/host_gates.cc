#include "agent/service/host_gates.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace benchfleet {

SampleTime ToSampleTime(absl::Time t) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(absl::ToUnixNanos(t))));
}

std::vector<std::string> GateBlockers(const HostSample& s,
                                      const GateOptions& g) {
  std::vector<std::string> blockers;
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
  if (g.max_load > 0 && s.load1 && *s.load1 > g.max_load) {
    blockers.push_back(absl::StrFormat("load average %.2f, above the %.2f gate",
                                       *s.load1, g.max_load));
  }
  if (g.max_competing_cpu > 0 && s.other_cpu_cores &&
      *s.other_cpu_cores > g.max_competing_cpu) {
    std::string who;
    if (!s.top_processes.empty()) {
      const ProcessCpu& p = s.top_processes.front();
      who = absl::StrFormat(" (busiest: pid %d %s, %.2f cores)", p.pid, p.comm,
                            p.cpu_cores);
    }
    blockers.push_back(absl::StrFormat(
        "other processes use %.2f cores, above the %.2f-core gate%s",
        *s.other_cpu_cores, g.max_competing_cpu, who));
  }
  return blockers;
}

GateOutcome WaitForGates(
    Probe& probe, Clock& clock, const GateOptions& gates,
    absl::Time cooldown_until, const std::atomic<bool>* cancel,
    const std::function<void(const std::string&)>& on_blocked) {
  GateOutcome out;
  const absl::Time start = clock.Now();
  std::vector<std::string> blockers;
  for (;;) {
    const absl::Time now = clock.Now();
    out.waited = now - start;
    if (cancel != nullptr && cancel->load()) {
      out.cancelled = true;
      out.reason = "cancelled while waiting for the host's gates";
      return out;
    }
    blockers.clear();
    if (now < cooldown_until) {
      blockers.push_back(absl::StrCat(
          "cooling down for ", absl::FormatDuration(cooldown_until - now),
          " more since the previous experiment"));
    }
    // Sampled even during the cooldown: the first sample of a probe has no
    // deltas, so this keeps the competing-CPU reading current.
    std::vector<std::string> host =
        GateBlockers(probe.Sample(ToSampleTime(now)), gates);
    blockers.insert(blockers.end(), host.begin(), host.end());
    if (blockers.empty()) {
      out.passed = true;
      return out;
    }
    if (on_blocked) on_blocked(absl::StrJoin(blockers, "; "));
    if (out.waited >= gates.max_wait) {
      out.reason = absl::StrCat("the host did not become ready within ",
                                absl::FormatDuration(gates.max_wait), ": ",
                                absl::StrJoin(blockers, "; "));
      return out;
    }
    clock.SleepFor(gates.poll_interval);
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
  absl::MutexLock lock(&mu_);
  samples_.clear();
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
    out.push_back(probe_->Sample(ToSampleTime(clock_->Now())));
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
      busy_ = true;
    }
    HostSample s = probe_->Sample(ToSampleTime(clock_->Now()));
    absl::MutexLock lock(&mu_);
    busy_ = false;
    if (active_) samples_.push_back(std::move(s));
    // Sleep one interval or until End/stop; real time, since this paces a real
    // probe.
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || !active_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&done), interval_);
  }
}

}  // namespace benchfleet
