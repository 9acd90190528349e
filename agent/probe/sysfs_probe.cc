#include "agent/probe/sysfs_probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/probe/kernel_file.h"
#include "agent/probe/process_accounting.h"

namespace benchfleet {

using probe_internal::KernelFile;
using probe_internal::ListDir;
using probe_internal::NextLine;
using probe_internal::NextToken;
using probe_internal::NumberedName;
using probe_internal::ParseDouble;
using probe_internal::ParseInt;
using probe_internal::ReadBuffer;
using probe_internal::ReadFirstLine;

namespace {

std::optional<double> KhzToMhz(std::optional<int64_t> khz) {
  if (!khz) return std::nullopt;
  return static_cast<double>(*khz) / 1000.0;
}

std::optional<int64_t> ReadIntFrom(const KernelFile& file) {
  char buf[64];
  auto text = file.ReadSmall(buf, sizeof(buf));
  if (!text) return std::nullopt;
  return ParseInt(*text);
}

// The real path of `path` (resolving the cpuN/cpufreq -> policyM links), or
// `path`.
std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) return path;
  return resolved;
}

uint64_t ToU64(std::string_view token) {
  auto value = ParseInt(token);
  return value && *value > 0 ? static_cast<uint64_t>(*value) : 0;
}

}  // namespace

struct SysfsProbe::Impl {
  struct Policy {
    KernelFile governor, min_freq, max_freq;
    std::optional<double> hw_max_freq_mhz;
    std::string governor_value;
    std::optional<double> min_freq_mhz, max_freq_mhz;
  };
  struct Cpu {
    int cpu = -1;
    int policy = -1;
    KernelFile cur_freq, core_throttle, package_throttle;
    // The latest readings of those files (see Rotate).
    std::optional<double> cur_freq_mhz;
    std::optional<int64_t> core_throttle_count, package_throttle_count;
    bool have_prev = false;
    uint64_t prev_busy = 0, prev_total = 0;
    std::optional<double> util;  // of the sample being taken
  };
  struct Sensor {
    KernelFile file;
    std::string source, name, label;
    bool cpu = false;
    std::optional<double> temp_c;  // the latest reading (see Rotate)
  };
  // A per-CPU or per-sensor file in the round-robin; `id` is the CPU number
  // (cpus can be re-sorted) or the index in `sensors`.
  struct RotatingFile {
    enum Kind { kCurFreq, kCoreThrottle, kPackageThrottle, kSensor } kind;
    int id;
  };

  SysfsProbeOptions options;
  GpuProbe* gpus = nullptr;

  KernelFile stat_file, loadavg_file, meminfo_file, turbo_file;
  bool turbo_inverted = false;  // intel_pstate/no_turbo: 1 = turbo off
  ReadBuffer stat_buf, meminfo_buf;
  std::vector<Policy> policies;
  std::vector<Cpu> cpus;       // ascending cpu
  std::vector<int> cpu_index;  // cpu -> index in `cpus`, -1
  std::string cpufreq_driver;
  std::vector<Sensor> sensors;
  std::vector<RotatingFile> rotation;
  size_t rotation_next = 0;

  int64_t samples = 0;
  bool have_prev_host = false;
  uint64_t prev_busy = 0, prev_steal = 0, prev_total = 0;
  double prev_host_ticks = 0;
  std::optional<int64_t> mem_total, mem_available;
  std::optional<bool> turbo;

  std::unique_ptr<probe_internal::ProcessAccounting> processes;
  // One clock tick in ns, and min_window in ticks.
  double tick_ns = 1e7;
  double window_ticks = 100;

  Impl(SysfsProbeOptions opts, GpuProbe* gpu_probe)
      : options(std::move(opts)), gpus(gpu_probe) {
    if (options.slow_every_n < 1) options.slow_every_n = 1;
    if (options.min_window <= std::chrono::nanoseconds(0))
      options.min_window = std::chrono::nanoseconds(1);
    const long hz = sysconf(_SC_CLK_TCK);
    tick_ns = 1e9 / static_cast<double>(hz > 0 ? hz : 100);
    window_ticks = static_cast<double>(options.min_window.count()) / tick_ns;
    if (options.top_processes < 0) options.top_processes = 0;
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 &&
        files.rlim_cur != RLIM_INFINITY) {
      options.max_kept_process_files =
          std::min<int64_t>(options.max_kept_process_files, files.rlim_cur / 4);
    }
    options.max_kept_process_files =
        std::max(options.max_kept_process_files, 0);
    processes = std::make_unique<probe_internal::ProcessAccounting>(
        options, tick_ns, window_ticks);
    Discover();
  }

  std::string Path(std::string_view path) const {
    return options.root + std::string(path);
  }

  int IndexOf(int cpu) {
    if (cpu < 0) return -1;
    if (cpu < static_cast<int>(cpu_index.size()) && cpu_index[cpu] >= 0)
      return cpu_index[cpu];
    // A CPU that /proc/stat lists but /sys does not (a container, or one
    // onlined since).
    Cpu added;
    added.cpu = cpu;
    cpus.push_back(std::move(added));
    std::sort(cpus.begin(), cpus.end(),
              [](const Cpu& a, const Cpu& b) { return a.cpu < b.cpu; });
    Reindex();
    return cpu_index[cpu];
  }

  void Reindex() {
    int max_cpu = -1;
    for (const Cpu& c : cpus) max_cpu = std::max(max_cpu, c.cpu);
    cpu_index.assign(max_cpu + 1, -1);
    for (size_t i = 0; i < cpus.size(); ++i)
      cpu_index[cpus[i].cpu] = static_cast<int>(i);
  }

  void Discover() {
    stat_file = KernelFile::Open(Path("/proc/stat"));
    loadavg_file = KernelFile::Open(Path("/proc/loadavg"));
    meminfo_file = KernelFile::Open(Path("/proc/meminfo"));
    DiscoverCpus();
    DiscoverTurbo();
    DiscoverSensors();
    for (const Cpu& cpu : cpus) {
      if (cpu.cur_freq.valid())
        rotation.push_back({RotatingFile::kCurFreq, cpu.cpu});
    }
    for (const Cpu& cpu : cpus) {
      if (cpu.core_throttle.valid()) {
        rotation.push_back({RotatingFile::kCoreThrottle, cpu.cpu});
      }
      if (cpu.package_throttle.valid()) {
        rotation.push_back({RotatingFile::kPackageThrottle, cpu.cpu});
      }
    }
    for (size_t i = 0; i < sensors.size(); ++i) {
      rotation.push_back({RotatingFile::kSensor, static_cast<int>(i)});
    }
    processes->OpenProc(Path("/proc"));
  }

  void DiscoverCpus() {
    const std::string cpu_root = Path("/sys/devices/system/cpu");
    std::map<std::string, int> policy_by_path;
    struct Topology {
      int package = -1, core = -1;
    };
    std::vector<Topology> topology;
    for (const std::string& name : ListDir(cpu_root)) {
      int n = -1;
      if (!NumberedName(name, "cpu", &n)) continue;
      const std::string dir = cpu_root + "/" + name;
      Cpu cpu;
      cpu.cpu = n;
      cpu.cur_freq = KernelFile::Open(dir + "/cpufreq/scaling_cur_freq");
      if (cpu.cur_freq.valid()) {
        const std::string policy_path = RealPath(dir + "/cpufreq");
        auto [it, inserted] = policy_by_path.emplace(
            policy_path, static_cast<int>(policies.size()));
        if (inserted) {
          Policy policy;
          policy.governor = KernelFile::Open(policy_path + "/scaling_governor");
          policy.min_freq = KernelFile::Open(policy_path + "/scaling_min_freq");
          policy.max_freq = KernelFile::Open(policy_path + "/scaling_max_freq");
          policy.hw_max_freq_mhz = KhzToMhz(
              ParseInt(ReadFirstLine(policy_path + "/cpuinfo_max_freq")));
          policies.push_back(std::move(policy));
          if (cpufreq_driver.empty()) {
            cpufreq_driver = ReadFirstLine(policy_path + "/scaling_driver");
          }
        }
        cpu.policy = it->second;
      }
      cpus.push_back(std::move(cpu));
      Topology t;
      if (auto v =
              ParseInt(ReadFirstLine(dir + "/topology/physical_package_id"))) {
        t.package = static_cast<int>(*v);
      }
      if (auto v = ParseInt(ReadFirstLine(dir + "/topology/core_id"))) {
        t.core = static_cast<int>(*v);
      }
      topology.push_back(t);
    }
    // Throttle counters are per core and per package: read each on its first
    // CPU only.
    std::vector<int> order(cpus.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return cpus[a].cpu < cpus[b].cpu; });
    std::vector<std::pair<int, int>> seen_cores;
    std::vector<int> seen_packages;
    for (int i : order) {
      const Topology& t = topology[i];
      const std::string dir =
          cpu_root + "/cpu" + std::to_string(cpus[i].cpu) + "/thermal_throttle";
      const bool unknown = t.package < 0 || t.core < 0;
      const std::pair<int, int> core_key{t.package, t.core};
      if (unknown || std::find(seen_cores.begin(), seen_cores.end(),
                               core_key) == seen_cores.end()) {
        cpus[i].core_throttle = KernelFile::Open(dir + "/core_throttle_count");
        if (!unknown) seen_cores.push_back(core_key);
      }
      if (t.package < 0 || std::find(seen_packages.begin(), seen_packages.end(),
                                     t.package) == seen_packages.end()) {
        cpus[i].package_throttle =
            KernelFile::Open(dir + "/package_throttle_count");
        if (t.package >= 0) seen_packages.push_back(t.package);
      }
    }
    std::sort(cpus.begin(), cpus.end(),
              [](const Cpu& a, const Cpu& b) { return a.cpu < b.cpu; });
    Reindex();
    // CPUs that /proc/stat knows (a container without /sys).
    ReadBuffer buf;
    if (stat_file.ReadAll(&buf)) {
      std::string_view text = buf.view();
      while (!text.empty()) {
        std::string_view line = NextLine(&text);
        if (line.substr(0, 3) != "cpu") break;
        int n = -1;
        if (NumberedName(NextToken(&line), "cpu", &n)) IndexOf(n);
      }
    }
  }

  void DiscoverTurbo() {
    turbo_file =
        KernelFile::Open(Path("/sys/devices/system/cpu/intel_pstate/no_turbo"));
    if (turbo_file.valid()) {
      turbo_inverted = true;
      return;
    }
    turbo_file =
        KernelFile::Open(Path("/sys/devices/system/cpu/cpufreq/boost"));
    if (turbo_file.valid()) return;
    // amd-pstate and newer kernels: per-policy boost.
    for (const std::string& name :
         ListDir(Path("/sys/devices/system/cpu/cpufreq"))) {
      int n = -1;
      if (!NumberedName(name, "policy", &n)) continue;
      turbo_file = KernelFile::Open(Path("/sys/devices/system/cpu/cpufreq/") +
                                    name + "/boost");
      if (turbo_file.valid()) return;
    }
  }

  void DiscoverSensors() {
    std::vector<std::pair<int, Sensor>> zones;
    const std::string thermal = Path("/sys/class/thermal");
    for (const std::string& name : ListDir(thermal)) {
      int n = -1;
      if (!NumberedName(name, "thermal_zone", &n)) continue;
      Sensor sensor;
      sensor.file = KernelFile::Open(thermal + "/" + name + "/temp");
      if (!sensor.file.valid()) continue;
      sensor.source = name;
      sensor.name = ReadFirstLine(thermal + "/" + name + "/type");
      sensor.cpu = IsCpuTemperatureSensor(sensor.name, "");
      zones.emplace_back(n, std::move(sensor));
    }
    std::sort(zones.begin(), zones.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& zone : zones) sensors.push_back(std::move(zone.second));

    struct HwmonSensor {
      int chip, temp;
      Sensor sensor;
    };
    std::vector<HwmonSensor> found;
    const std::string hwmon = Path("/sys/class/hwmon");
    for (const std::string& name : ListDir(hwmon)) {
      int chip = -1;
      if (!NumberedName(name, "hwmon", &chip)) continue;
      std::string dir = hwmon + "/" + name;
      std::string chip_name = ReadFirstLine(dir + "/name");
      if (chip_name.empty()) {
        // Kernels before 3.15 kept the attributes on the parent device.
        dir += "/device";
        chip_name = ReadFirstLine(dir + "/name");
      }
      for (const std::string& file : ListDir(dir)) {
        constexpr std::string_view kSuffix = "_input";
        if (file.size() <= kSuffix.size() ||
            file.compare(file.size() - kSuffix.size(), kSuffix.size(),
                         kSuffix) != 0) {
          continue;
        }
        const std::string stem = file.substr(0, file.size() - kSuffix.size());
        int temp = -1;
        if (!NumberedName(stem, "temp", &temp)) continue;
        Sensor sensor;
        sensor.file = KernelFile::Open(dir + "/" + file);
        if (!sensor.file.valid()) continue;
        sensor.source = name + "/" + stem;
        sensor.name = chip_name;
        sensor.label = ReadFirstLine(dir + "/" + stem + "_label");
        sensor.cpu = IsCpuTemperatureSensor(sensor.name, sensor.label);
        found.push_back({chip, temp, std::move(sensor)});
      }
    }
    std::sort(found.begin(), found.end(),
              [](const HwmonSensor& a, const HwmonSensor& b) {
                return std::pair(a.chip, a.temp) < std::pair(b.chip, b.temp);
              });
    for (auto& f : found) sensors.push_back(std::move(f.sensor));
  }

  int OpenFiles() const {
    int n = stat_file.valid() + loadavg_file.valid() + meminfo_file.valid() +
            turbo_file.valid();
    for (const Policy& p : policies)
      n += p.governor.valid() + p.min_freq.valid() + p.max_freq.valid();
    for (const Cpu& c : cpus)
      n += c.cur_freq.valid() + c.core_throttle.valid() +
           c.package_throttle.valid();
    for (const Sensor& s : sensors) n += s.file.valid();
    n += processes->OpenFiles();
    return n;
  }

  HostSample Sample(SampleTime now, bool want_processes) {
    HostSample s;
    s.taken_at = now;
    const bool slow = samples % options.slow_every_n == 0;
    std::optional<double> busy_core_ticks, elapsed_ticks;
    // First: /proc/stat may list CPUs that /sys did not.
    ReadStat(&s, &busy_core_ticks, &elapsed_ticks);
    s.cores.resize(cpus.size());
    for (size_t i = 0; i < cpus.size(); ++i) {
      s.cores[i].cpu = cpus[i].cpu;
      s.cores[i].util = cpus[i].util;
    }
    ReadLoad(&s);
    if (slow) ReadMemory();
    s.mem_total_bytes = mem_total;
    s.mem_available_bytes = mem_available;
    Rotate(/*all=*/samples == 0);
    ReadFrequencies(&s, slow);
    ReadThrottle(&s);
    if (slow && turbo_file.valid()) {
      if (auto v = ReadIntFrom(turbo_file)) {
        turbo = turbo_inverted ? *v == 0 : *v != 0;
      }
    }
    s.turbo_enabled = turbo;
    s.cpufreq_driver = cpufreq_driver;
    ReadTemperatures(&s);
    processes->Sample(&s, busy_core_ticks, elapsed_ticks, have_prev_host,
                      prev_host_ticks, want_processes);
    if (gpus != nullptr) s.gpus = gpus->SampleGpus();
    ++samples;
    return s;
  }

  // /proc/stat: "cpu  user nice system idle iowait irq softirq steal guest
  // guest_nice", then one such line per online CPU. guest time is already
  // inside user.
  void ReadStat(HostSample* s, std::optional<double>* busy_core_ticks,
                std::optional<double>* elapsed_ticks) {
    for (Cpu& cpu : cpus) cpu.util.reset();
    if (!stat_file.ReadAll(&stat_buf)) return;
    std::string_view text = stat_buf.view();
    bool have_host = false;
    uint64_t host_busy = 0, host_steal = 0, host_total = 0;
    int online = 0;
    while (!text.empty()) {
      std::string_view line = NextLine(&text);
      if (line.substr(0, 3) != "cpu") break;
      const std::string_view name = NextToken(&line);
      uint64_t v[8] = {};
      for (uint64_t& field : v) {
        const std::string_view token = NextToken(&line);
        if (token.empty()) break;
        field = ToU64(token);
      }
      const uint64_t busy = v[0] + v[1] + v[2] + v[5] + v[6];
      const uint64_t total = busy + v[3] + v[4] + v[7];
      if (name == "cpu") {
        have_host = true;
        host_busy = busy;
        host_steal = v[7];
        host_total = total;
        continue;
      }
      int n = -1;
      if (!NumberedName(name, "cpu", &n)) continue;
      ++online;
      Cpu& cpu = cpus[IndexOf(n)];
      if (cpu.have_prev && total > cpu.prev_total && busy >= cpu.prev_busy) {
        cpu.util = static_cast<double>(busy - cpu.prev_busy) /
                   static_cast<double>(total - cpu.prev_total);
      }
      cpu.have_prev = true;
      cpu.prev_busy = busy;
      cpu.prev_total = total;
    }
    if (!have_host || online == 0) return;
    const double host_ticks = static_cast<double>(host_total) / online;
    if (have_prev_host && host_total > prev_total && host_busy >= prev_busy) {
      const double d_total = static_cast<double>(host_total - prev_total);
      s->cpu_util = static_cast<double>(host_busy - prev_busy) / d_total;
      s->cpu_steal =
          host_steal >= prev_steal
              ? static_cast<double>(host_steal - prev_steal) / d_total
              : 0.0;
      *busy_core_ticks = static_cast<double>(host_busy - prev_busy);
      *elapsed_ticks = host_ticks - prev_host_ticks;
    }
    have_prev_host = true;
    prev_busy = host_busy;
    prev_steal = host_steal;
    prev_total = host_total;
    prev_host_ticks = host_ticks;
  }

  void ReadLoad(HostSample* s) {
    char buf[128];
    auto text = loadavg_file.ReadSmall(buf, sizeof(buf));
    if (!text) return;
    std::string_view rest = *text;
    s->load1 = ParseDouble(NextToken(&rest));
    s->load5 = ParseDouble(NextToken(&rest));
    s->load15 = ParseDouble(NextToken(&rest));
    const std::string_view tasks = NextToken(&rest);  // "running/total"
    if (auto running = ParseInt(tasks.substr(0, tasks.find('/')))) {
      s->procs_running = static_cast<int>(*running);
    }
  }

  void ReadMemory() {
    if (!meminfo_file.ReadAll(&meminfo_buf)) return;
    std::string_view text = meminfo_buf.view();
    std::optional<int64_t> total, available;
    while (!text.empty() && !(total && available)) {
      std::string_view line = NextLine(&text);
      const std::string_view key = NextToken(&line);
      std::optional<int64_t>* target = key == "MemTotal:"       ? &total
                                       : key == "MemAvailable:" ? &available
                                                                : nullptr;
      if (target == nullptr) continue;
      if (auto kb = ParseInt(NextToken(&line))) *target = *kb * 1024;
    }
    mem_total = total;
    mem_available = available;
  }

  // Refreshes the next files of the round-robin (all of them when `all`).
  void Rotate(bool all) {
    if (rotation.empty()) return;
    const int budget = options.sysfs_reads_per_sample;
    const size_t n = all || budget <= 0
                         ? rotation.size()
                         : std::min<size_t>(budget, rotation.size());
    char buf[64];
    for (size_t k = 0; k < n; ++k) {
      const RotatingFile& f = rotation[(rotation_next + k) % rotation.size()];
      if (f.kind == RotatingFile::kSensor) {
        Sensor& sensor = sensors[f.id];
        // A sensor that is asleep or failed (EIO, ENODATA) has no reading.
        auto text = sensor.file.ReadSmall(buf, sizeof(buf));
        auto millidegrees = text ? ParseInt(*text) : std::nullopt;
        sensor.temp_c.reset();
        if (millidegrees)
          sensor.temp_c = static_cast<double>(*millidegrees) / 1000.0;
        continue;
      }
      Cpu& cpu = cpus[cpu_index[f.id]];
      switch (f.kind) {
        case RotatingFile::kCurFreq:
          cpu.cur_freq_mhz = KhzToMhz(ReadIntFrom(cpu.cur_freq));
          break;
        case RotatingFile::kCoreThrottle:
          cpu.core_throttle_count = ReadIntFrom(cpu.core_throttle);
          break;
        case RotatingFile::kPackageThrottle:
          cpu.package_throttle_count = ReadIntFrom(cpu.package_throttle);
          break;
        case RotatingFile::kSensor:
          break;
      }
    }
    rotation_next = (rotation_next + n) % rotation.size();
  }

  void ReadFrequencies(HostSample* s, bool slow) {
    char buf[64];
    if (slow) {
      for (Policy& p : policies) {
        auto governor = p.governor.ReadSmall(buf, sizeof(buf));
        p.governor_value = governor ? std::string(*governor) : std::string();
        p.min_freq_mhz = KhzToMhz(ReadIntFrom(p.min_freq));
        p.max_freq_mhz = KhzToMhz(ReadIntFrom(p.max_freq));
      }
    }
    for (size_t i = 0; i < cpus.size(); ++i) {
      const Cpu& cpu = cpus[i];
      if (cpu.policy < 0) continue;
      CpuCoreSample& core = s->cores[i];
      core.cur_freq_mhz = cpu.cur_freq_mhz;
      const Policy& p = policies[cpu.policy];
      core.governor = p.governor_value;
      core.min_freq_mhz = p.min_freq_mhz;
      core.max_freq_mhz = p.max_freq_mhz;
      core.hw_max_freq_mhz = p.hw_max_freq_mhz;
    }
  }

  // The sum is left out of a sample in which any counter could not be read (a
  // CPU going offline): a sum missing a counter would look like a rise once the
  // counter is back.
  void ReadThrottle(HostSample* s) {
    bool any = false, failed = false;
    int64_t sum = 0;
    for (size_t i = 0; i < cpus.size(); ++i) {
      const Cpu& cpu = cpus[i];
      if (cpu.core_throttle.valid()) {
        s->cores[i].core_throttle_count = cpu.core_throttle_count;
        failed |= !cpu.core_throttle_count;
      }
      if (cpu.package_throttle.valid()) {
        s->cores[i].package_throttle_count = cpu.package_throttle_count;
        failed |= !cpu.package_throttle_count;
      }
      for (const auto& count : {s->cores[i].core_throttle_count,
                                s->cores[i].package_throttle_count}) {
        if (count) {
          any = true;
          sum += *count;
        }
      }
    }
    if (any && !failed) s->throttle_count = sum;
  }

  void ReadTemperatures(HostSample* s) {
    s->temperatures.reserve(sensors.size());
    for (const Sensor& sensor : sensors) {
      if (!sensor.temp_c) continue;
      TemperatureReading& r = s->temperatures.emplace_back();
      r.source = sensor.source;
      r.name = sensor.name;
      r.label = sensor.label;
      r.cpu = sensor.cpu;
      r.temp_c = *sensor.temp_c;
    }
  }
};

std::vector<std::string> DefaultOwnBinaries() {
  return {"benchfleet", "benchfleet-controller", "benchfleet-agent"};
}

SysfsProbe::SysfsProbe(SysfsProbeOptions options, GpuProbe* gpus)
    : impl_(std::make_unique<Impl>(std::move(options), gpus)) {}

SysfsProbe::~SysfsProbe() = default;

HostSample SysfsProbe::Sample(SampleTime now) {
  return impl_->Sample(now, /*want_processes=*/false);
}

HostSample SysfsProbe::SampleWithProcesses(SampleTime now) {
  return impl_->Sample(now, /*want_processes=*/true);
}

void SysfsProbe::SetExclusions(ProcessExclusions exclusions) {
  impl_->processes->SetExclusions(std::move(exclusions));
}

int64_t SysfsProbe::process_scans() const { return impl_->processes->scans(); }

int SysfsProbe::open_files() const { return impl_->OpenFiles(); }

}  // namespace benchfleet
