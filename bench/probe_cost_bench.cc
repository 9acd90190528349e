// bf-probe-cost: what the host probe costs (docs/perf/probe-cost.md), on the
// real /proc and /sys (or a fake tree with --root).
//
//   bf-probe-cost sweep [--sweeps N] [--root DIR] [--nvml PATH]
//     Times N back-to-back SysfsProbe::Sample() calls in three configurations
//     and prints the median and p90 thread CPU time and wall time per sweep:
//     - full: every reading, every sweep, /proc walked every sweep;
//     - fast-path: every reading, every sweep, never a /proc walk (the cost of
//       a sample when nothing competes: /proc/stat, loadavg, meminfo, cpufreq,
//       throttle counters, sensors, the excluded processes' stat files);
//     - agent: the agent's default options.
//   bf-probe-cost sampler [--seconds S] [--hz H] [--config C] [--root DIR]
//                 [--nvml PATH]
//     Mimics the agent's sampler: a thread that takes a sample every 1/H s
//     (absolute deadlines, sleeping in between) for S s, keeping the samples.
//     Prints the thread's CPU time (getrusage(RUSAGE_THREAD) and
//     CLOCK_THREAD_CPUTIME_ID) as a percentage of one core, the number of
//     samples and /proc walks, and the host's load meanwhile. C is agent (the
//     agent's defaults), no-walk (the same on a host where nothing competes:
//     the walk trigger never fires), full (a /proc walk every sample) or
//     run-ends (the agent's defaults, every sample taken as a run's closing
//     sample with SampleWithProcesses: while something competes, a walk per
//     sample up to 20 a second).
//
// Single-threaded apart from the sampler thread; a tool, so errors go to stderr
// with exit 2.
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "agent/probe/host_sample.h"
#include "agent/probe/nvml_probe.h"
#include "agent/probe/sysfs_probe.h"

namespace benchfleet {
namespace {

int64_t ClockNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t RusageThreadNs() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return (int64_t{ru.ru_utime.tv_sec} + ru.ru_stime.tv_sec) * 1'000'000'000 +
         (int64_t{ru.ru_utime.tv_usec} + ru.ru_stime.tv_usec) * 1'000;
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "bf-probe-cost: %s\n", message.c_str());
  std::exit(2);
}

struct Flags {
  std::string mode;
  int sweeps = 5000;
  double seconds = 60;
  double hz = 10;
  std::string config = "agent";
  std::string root;
  std::string nvml;  // "" = no GPU probe
};

Flags Parse(int argc, char** argv) {
  if (argc < 2)
    Die("usage: bf-probe-cost sweep|sampler [flags] (see the source header)");
  Flags f;
  f.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) Die("missing value for " + std::string(arg));
    const std::string value = argv[++i];
    if (arg == "--sweeps") {
      f.sweeps = std::atoi(value.c_str());
    } else if (arg == "--seconds") {
      f.seconds = std::atof(value.c_str());
    } else if (arg == "--hz") {
      f.hz = std::atof(value.c_str());
    } else if (arg == "--config") {
      f.config = value;
    } else if (arg == "--root") {
      f.root = value;
    } else if (arg == "--nvml") {
      f.nvml = value;
    } else {
      Die("unknown flag " + std::string(arg));
    }
  }
  if (f.sweeps < 10 || f.seconds <= 0 || f.hz <= 0)
    Die("bad --sweeps/--seconds/--hz");
  if (f.config != "agent" && f.config != "no-walk" && f.config != "full" &&
      f.config != "run-ends") {
    Die("--config is agent, no-walk, full or run-ends");
  }
  return f;
}

SysfsProbeOptions Options(const std::string& config, const std::string& root) {
  SysfsProbeOptions o;  // the agent's defaults
  o.root = root;
  if (config == "no-walk") o.process_trigger_cores = 1e9;
  if (config == "full" || config == "fast-path") {
    o.slow_every_n = 1;
    o.min_window = std::chrono::nanoseconds(1);  // a walk every sample
    o.process_trigger_cores = config == "full" ? 0 : 1e9;
    o.sysfs_reads_per_sample = 0;
  }
  return o;
}

std::string Load() {
  char buf[128] = {};
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "?";
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  std::string s(buf, n);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

void Sweep(const Flags& flags, GpuProbe* gpus) {
  std::printf("load before: %s\n", Load().c_str());
  std::printf(
      "| config | sweeps | median CPU us | p90 CPU us | median wall us | /proc "
      "walks |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const char* config : {"full", "fast-path", "agent"}) {
    SysfsProbe probe(Options(config, flags.root), gpus);
    probe.SetExclusions({.pids = {getpid()}});
    SampleTime t{};
    // Warm-up: page cache, allocator.
    for (int i = 0; i < 20; ++i) probe.Sample(t);
    const int64_t walks_before = probe.process_scans();
    std::vector<double> cpu_us, wall_us;
    cpu_us.reserve(flags.sweeps);
    wall_us.reserve(flags.sweeps);
    for (int i = 0; i < flags.sweeps; ++i) {
      const int64_t c0 = ClockNs(CLOCK_THREAD_CPUTIME_ID),
                    w0 = ClockNs(CLOCK_MONOTONIC);
      HostSample s = probe.Sample(t);
      const int64_t c1 = ClockNs(CLOCK_THREAD_CPUTIME_ID),
                    w1 = ClockNs(CLOCK_MONOTONIC);
      cpu_us.push_back((c1 - c0) / 1e3);
      wall_us.push_back((w1 - w0) / 1e3);
    }
    std::printf("| %s | %d | %.1f | %.1f | %.1f | %lld |\n", config,
                flags.sweeps, Percentile(cpu_us, 0.5), Percentile(cpu_us, 0.9),
                Percentile(wall_us, 0.5),
                static_cast<long long>(probe.process_scans() - walks_before));
    std::fflush(stdout);
  }
  std::printf("load after: %s\n", Load().c_str());
}

void Sampler(const Flags& flags, GpuProbe* gpus) {
  const std::string load_before = Load();
  SysfsProbe probe(Options(flags.config, flags.root), gpus);
  probe.SetExclusions({.pids = {getpid()}});
  int64_t rusage_ns = 0, cputime_ns = 0, samples = 0;
  double util_sum = 0;
  int util_n = 0;
  int64_t late = 0;
  std::vector<double> walk_us,
      plain_us;  // CPU per sample, with and without a /proc walk
  // run-ends: every sample closes a run (Probe::SampleWithProcesses), as if
  // runs of 1/H s followed each other: the most /proc walks a competing host
  // can cost the agent.
  const bool run_ends = flags.config == "run-ends";
  std::thread sampler([&] {
    std::vector<HostSample> kept;
    kept.reserve(static_cast<size_t>(flags.seconds * flags.hz) + 2);
    const int64_t r0 = RusageThreadNs(), c0 = ClockNs(CLOCK_THREAD_CPUTIME_ID);
    const auto period =
        std::chrono::nanoseconds(static_cast<int64_t>(1e9 / flags.hz));
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::nanoseconds(
                                 static_cast<int64_t>(flags.seconds * 1e9));
    auto next = start;
    while (next < end) {
      std::this_thread::sleep_until(next);
      if (std::chrono::steady_clock::now() - next > period) ++late;
      const int64_t walks = probe.process_scans(),
                    t0 = ClockNs(CLOCK_THREAD_CPUTIME_ID);
      const SampleTime now = std::chrono::system_clock::now();
      kept.push_back(run_ends ? probe.SampleWithProcesses(now)
                              : probe.Sample(now));
      const double us = (ClockNs(CLOCK_THREAD_CPUTIME_ID) - t0) / 1e3;
      (probe.process_scans() != walks ? walk_us : plain_us).push_back(us);
      next += period;
    }
    rusage_ns = RusageThreadNs() - r0;
    cputime_ns = ClockNs(CLOCK_THREAD_CPUTIME_ID) - c0;
    samples = static_cast<int64_t>(kept.size());
    for (const HostSample& s : kept) {
      if (s.cpu_util) {
        util_sum += *s.cpu_util;
        ++util_n;
      }
    }
  });
  sampler.join();
  const double wall_ns = flags.seconds * 1e9;
  std::printf(
      "config: %s, %.0f Hz for %.0f s, %lld samples (%lld late), %lld /proc "
      "walks\n",
      flags.config.c_str(), flags.hz, flags.seconds,
      static_cast<long long>(samples), static_cast<long long>(late),
      static_cast<long long>(probe.process_scans()));
  std::printf(
      "sampler thread CPU: getrusage(RUSAGE_THREAD) %.3f ms = %.4f %% of one "
      "core; "
      "CLOCK_THREAD_CPUTIME_ID %.3f ms = %.4f %% of one core; %.1f us per "
      "sample\n",
      rusage_ns / 1e6, 100.0 * rusage_ns / wall_ns, cputime_ns / 1e6,
      100.0 * cputime_ns / wall_ns,
      cputime_ns / 1e3 / std::max<int64_t>(samples, 1));
  if (!plain_us.empty()) {
    std::printf(
        "samples without a /proc walk: %zu, median %.1f us, p90 %.1f us, p99 "
        "%.1f us, "
        "max %.1f us\n",
        plain_us.size(), Percentile(plain_us, 0.5), Percentile(plain_us, 0.9),
        Percentile(plain_us, 0.99), Percentile(plain_us, 1.0));
  }
  if (!walk_us.empty()) {
    std::printf("samples with a /proc walk: %zu, median %.1f us, p90 %.1f us\n",
                walk_us.size(), Percentile(walk_us, 0.5),
                Percentile(walk_us, 0.9));
  }
  std::printf(
      "host during the run: mean CPU utilisation %.1f %%, load before [%s] "
      "after [%s]\n",
      util_n > 0 ? 100.0 * util_sum / util_n : -1.0, load_before.c_str(),
      Load().c_str());
}

}  // namespace
}  // namespace benchfleet

int main(int argc, char** argv) {
  const benchfleet::Flags flags = benchfleet::Parse(argc, argv);
  std::unique_ptr<benchfleet::NvmlProbe> nvml;
  if (!flags.nvml.empty()) {
    nvml = benchfleet::NvmlProbe::Open({.library = flags.nvml});
    std::printf("nvml: %s %s, %d GPUs\n",
                benchfleet::NvmlStateName(nvml->state()), nvml->error().c_str(),
                nvml->gpu_count());
  }
  if (flags.mode == "sweep") {
    benchfleet::Sweep(flags, nvml.get());
  } else if (flags.mode == "sampler") {
    benchfleet::Sampler(flags, nvml.get());
  } else {
    benchfleet::Die("mode is sweep or sampler");
  }
  return 0;
}
