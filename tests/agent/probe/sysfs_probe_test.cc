// Tests of SysfsProbe against fake /proc+/sys trees shaped like real machines
// (an Intel laptop with intel_pstate, coretemp and throttle counters; an AMD
// desktop with acpi-cpufreq boost and k10temp; an ARM big.LITTLE board with
// shared cpufreq policies and thermal zones only; a container with almost
// nothing) and against this host's real /proc and /sys.
#include "agent/probe/sysfs_probe.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/probe/host_facts.h"
#include "agent/probe/host_sample.h"
#include "agent/probe/host_summary.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/probe/fake_tree.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::FakeTree;
using ::benchfleet::testing::IntelStat;
using ::benchfleet::testing::PidStatLine;
using ::benchfleet::testing::ProcStat;
using ::benchfleet::testing::SchedstatLine;
using ::benchfleet::testing::TestTime;
using ::testing::DoubleEq;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;
using ::testing::Optional;

const TemperatureReading* FindTemp(const HostSample& s,
                                   const std::string& source) {
  for (const TemperatureReading& t : s.temperatures) {
    if (t.source == source) return &t;
  }
  return nullptr;
}

TEST(SysfsProbeTest,
     IntelTreeGivesFrequenciesGovernorTurboTemperaturesAndMemory) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  const HostSample s = probe.Sample(TestTime(0));

  EXPECT_EQ(s.taken_at, TestTime(0));
  ASSERT_EQ(s.cores.size(), 4u);
  const double cur[] = {3900, 3850, 3900, 1800};
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    const CpuCoreSample& c = s.cores[i];
    EXPECT_EQ(c.cpu, i);
    EXPECT_THAT(c.cur_freq_mhz, Optional(DoubleEq(cur[i])));
    EXPECT_THAT(c.min_freq_mhz, Optional(DoubleEq(400)));
    EXPECT_THAT(c.max_freq_mhz, Optional(DoubleEq(4600)));
    EXPECT_THAT(c.hw_max_freq_mhz, Optional(DoubleEq(4600)));
    EXPECT_EQ(c.governor, "powersave");
    EXPECT_EQ(c.util, std::nullopt);  // first sample: no delta yet
  }
  EXPECT_THAT(MinCoreFreqMhz(s), Optional(DoubleEq(1800)));
  EXPECT_EQ(s.cpufreq_driver, "intel_pstate");
  EXPECT_EQ(s.turbo_enabled, true);  // intel_pstate/no_turbo = 0
  EXPECT_EQ(s.cpu_util, std::nullopt);

  EXPECT_THAT(s.load1, Optional(DoubleEq(0.52)));
  EXPECT_THAT(s.load5, Optional(DoubleEq(0.58)));
  EXPECT_THAT(s.load15, Optional(DoubleEq(0.59)));
  EXPECT_EQ(s.procs_running, 2);
  EXPECT_EQ(s.mem_total_bytes, int64_t{16318480} * 1024);
  EXPECT_EQ(s.mem_available_bytes, int64_t{11845120} * 1024);

  // Two thermal zones, then hwmon: acpitz, coretemp (package + 2 cores), nvme.
  ASSERT_EQ(s.temperatures.size(), 7u);
  EXPECT_EQ(s.temperatures[0].source, "thermal_zone0");
  EXPECT_EQ(s.temperatures[0].name, "acpitz");
  EXPECT_FALSE(s.temperatures[0].cpu);
  EXPECT_THAT(s.temperatures[0].temp_c, DoubleEq(27.8));
  const TemperatureReading* pkg = FindTemp(s, "hwmon1/temp1");
  ASSERT_NE(pkg, nullptr);
  EXPECT_EQ(pkg->name, "coretemp");
  EXPECT_EQ(pkg->label, "Package id 0");
  EXPECT_TRUE(pkg->cpu);
  EXPECT_THAT(pkg->temp_c, DoubleEq(53));
  EXPECT_TRUE(FindTemp(s, "thermal_zone1")->cpu);  // x86_pkg_temp
  EXPECT_FALSE(FindTemp(s, "hwmon2/temp1")->cpu);  // nvme
  EXPECT_EQ(FindTemp(s, "hwmon2/temp1")->label, "Composite");
  EXPECT_THAT(MaxCpuTempC(s), Optional(DoubleEq(53)));
  EXPECT_THAT(s.gpus, IsEmpty());
}

TEST(SysfsProbeTest, IntelThrottleCountersAreReadOncePerCoreAndPackage) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  HostSample s = probe.Sample(TestTime(0));
  // cpu0/cpu2 and cpu1/cpu3 are hyper-thread siblings (core_id 0 and 1) in
  // package 0.
  EXPECT_EQ(s.cores[0].core_throttle_count, 3);
  EXPECT_EQ(s.cores[1].core_throttle_count, 0);
  EXPECT_EQ(s.cores[2].core_throttle_count, std::nullopt);
  EXPECT_EQ(s.cores[3].core_throttle_count, std::nullopt);
  EXPECT_EQ(s.cores[0].package_throttle_count, 12);
  EXPECT_EQ(s.cores[1].package_throttle_count, std::nullopt);
  EXPECT_EQ(s.throttle_count, 3 + 0 + 12);

  // Core 0 throttles twice more: the run is flagged.
  std::vector<HostSample> run = {s};
  tree.Write("sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count",
             "5");
  tree.Write("sys/devices/system/cpu/cpu2/thermal_throttle/core_throttle_count",
             "5");
  run.push_back(probe.Sample(TestTime(1)));
  EXPECT_EQ(run.back().throttle_count, 17);
  HostStateSummary summary = SummarizeHostSamples(run);
  EXPECT_EQ(summary.throttle_count_delta, 2);
  EXPECT_THAT(summary.flags, ElementsAre(kFlagThrottled));

  // A counter that cannot be read (its CPU went offline) leaves the sum out of
  // the sample, so its return does not look like a rise.
  run.erase(run.begin());
  tree.Write(
      "sys/devices/system/cpu/cpu0/thermal_throttle/package_throttle_count",
      "");
  run.push_back(probe.Sample(TestTime(2)));
  EXPECT_EQ(run.back().throttle_count, std::nullopt);
  EXPECT_EQ(run.back().cores[0].package_throttle_count, std::nullopt);
  EXPECT_EQ(run.back().cores[0].core_throttle_count, 5);
  tree.Write(
      "sys/devices/system/cpu/cpu0/thermal_throttle/package_throttle_count",
      "12");
  run.push_back(probe.Sample(TestTime(3)));
  EXPECT_EQ(run.back().throttle_count, 17);
  summary = SummarizeHostSamples(run);
  EXPECT_EQ(summary.throttle_count_delta, 0);
  EXPECT_FALSE(summary.flagged());
}

TEST(SysfsProbeTest, UtilisationComesFromProcStatDeltas) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  probe.Sample(TestTime(0));

  ProcStat stat = IntelStat();  // 100 ticks pass on every CPU
  stat.Add(0, ProcStat::kUser, 90);
  stat.Add(0, ProcStat::kIdle, 10);
  stat.Add(1, ProcStat::kIdle, 100);
  stat.Add(2, ProcStat::kUser, 40);
  stat.Add(2, ProcStat::kSoftirq, 10);
  stat.Add(2, ProcStat::kIdle, 50);
  stat.Add(3, ProcStat::kUser, 20);
  stat.Add(3, ProcStat::kSteal, 10);
  stat.Add(3, ProcStat::kIowait, 70);
  tree.Write("proc/stat", stat.Text());
  const HostSample s = probe.Sample(TestTime(1));

  EXPECT_THAT(s.cores[0].util, Optional(DoubleEq(0.9)));
  EXPECT_THAT(s.cores[1].util, Optional(DoubleEq(0.0)));
  EXPECT_THAT(s.cores[2].util, Optional(DoubleEq(0.5)));
  EXPECT_THAT(s.cores[3].util,
              Optional(DoubleEq(0.2)));  // steal and iowait are not busy
  EXPECT_THAT(s.cpu_util, Optional(DoubleEq(160.0 / 400)));
  EXPECT_THAT(s.cpu_steal, Optional(DoubleEq(10.0 / 400)));
  // Nothing is excluded, so all 160 busy ticks in 100 ticks of time are "other"
  // CPU.
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleEq(1.6)));
}

TEST(SysfsProbeTest, SlowSettingsAreRereadEverySlowEveryNSamples) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root(), .slow_every_n = 2});
  probe.Sample(TestTime(0));
  tree.Write("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
             "performance");
  tree.Write("sys/devices/system/cpu/intel_pstate/no_turbo", "1");
  tree.Write("sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq", "4200000");
  tree.Write("proc/meminfo", "MemTotal: 16318480 kB\nMemAvailable: 1000 kB");

  HostSample s = probe.Sample(
      TestTime(1));  // not a slow sample: only fast readings change
  EXPECT_EQ(s.cores[1].governor, "powersave");
  EXPECT_EQ(s.turbo_enabled, true);
  EXPECT_EQ(s.mem_available_bytes, int64_t{11845120} * 1024);
  EXPECT_THAT(s.cores[1].cur_freq_mhz, Optional(DoubleEq(4200)));

  s = probe.Sample(TestTime(2));
  EXPECT_EQ(s.cores[1].governor, "performance");
  EXPECT_EQ(s.cores[0].governor,
            "powersave");  // intel_pstate: a policy per CPU
  EXPECT_EQ(s.turbo_enabled, false);
  EXPECT_EQ(s.mem_available_bytes, 1000 * 1024);
}

TEST(SysfsProbeTest, PerCpuFilesAndSensorsAreReadRoundRobinWithinTheBudget) {
  // 14 such files: 4 frequencies, 3 throttle counters, 7 temperatures, in that
  // order.
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root(), .sysfs_reads_per_sample = 5});
  HostSample s = probe.Sample(TestTime(0));  // the first sample reads them all
  EXPECT_THAT(MaxCpuTempC(s), Optional(DoubleEq(53)));
  tree.Write("sys/devices/system/cpu/cpu3/cpufreq/scaling_cur_freq", "900000");
  tree.Write("sys/class/hwmon/hwmon1/temp1_input", "70000");  // the 11th file

  s = probe.Sample(TestTime(1));  // files 1-5
  EXPECT_THAT(s.cores[3].cur_freq_mhz, Optional(DoubleEq(900)));
  EXPECT_THAT(MaxCpuTempC(s), Optional(DoubleEq(53)));
  EXPECT_EQ(s.throttle_count, 15);  // carried from the last reading
  s = probe.Sample(TestTime(2));    // files 6-10
  EXPECT_THAT(MaxCpuTempC(s), Optional(DoubleEq(53)));
  s = probe.Sample(TestTime(3));  // files 11-14
  EXPECT_THAT(MaxCpuTempC(s), Optional(DoubleEq(70)));
  EXPECT_EQ(s.temperatures.size(), 7u);
}

TEST(SysfsProbeTest, AmdTreeGivesBoostAndK10tempWithoutThrottleCounters) {
  FakeTree tree("amd");
  SysfsProbe probe({.root = tree.root(), .slow_every_n = 1});
  HostSample s = probe.Sample(TestTime(0));
  ASSERT_EQ(s.cores.size(), 4u);
  EXPECT_EQ(s.cpufreq_driver, "acpi-cpufreq");
  EXPECT_EQ(s.cores[0].governor, "schedutil");
  EXPECT_THAT(s.cores[2].cur_freq_mhz, Optional(DoubleEq(4650)));  // boosting
  EXPECT_THAT(MinCoreFreqMhz(s), Optional(DoubleEq(2200)));
  EXPECT_EQ(s.turbo_enabled, true);  // cpufreq/boost = 1
  EXPECT_EQ(s.throttle_count, std::nullopt);
  EXPECT_EQ(s.cores[0].core_throttle_count, std::nullopt);

  ASSERT_EQ(s.temperatures.size(),
            4u);  // no thermal zones; nvme, k10temp x2, amdgpu
  EXPECT_EQ(s.temperatures[1].name, "k10temp");
  EXPECT_EQ(s.temperatures[1].label, "Tctl");
  EXPECT_TRUE(s.temperatures[1].cpu);
  EXPECT_EQ(s.temperatures[2].source, "hwmon1/temp3");
  EXPECT_EQ(s.temperatures[2].label, "Tccd1");
  EXPECT_FALSE(FindTemp(s, "hwmon2/temp1")->cpu);  // amdgpu edge
  EXPECT_THAT(MaxCpuTempC(s), Optional(DoubleEq(61.25)));

  tree.Write("sys/devices/system/cpu/cpufreq/boost", "0");
  s = probe.Sample(TestTime(1));
  EXPECT_EQ(s.turbo_enabled, false);
}

TEST(SysfsProbeTest,
     ArmTreeSharesPolicySettingsAcrossAClusterAndReadsThermalZones) {
  FakeTree tree("arm");
  SysfsProbe probe({.root = tree.root(), .slow_every_n = 1});
  HostSample s = probe.Sample(TestTime(0));
  ASSERT_EQ(s.cores.size(), 4u);
  EXPECT_EQ(s.cpufreq_driver, "cpufreq-dt");
  EXPECT_THAT(s.cores[0].cur_freq_mhz, Optional(DoubleEq(1416)));
  EXPECT_THAT(s.cores[1].cur_freq_mhz, Optional(DoubleEq(1416)));
  EXPECT_THAT(s.cores[3].cur_freq_mhz, Optional(DoubleEq(1800)));
  EXPECT_THAT(s.cores[3].max_freq_mhz, Optional(DoubleEq(1800)));
  EXPECT_EQ(s.turbo_enabled, std::nullopt);
  EXPECT_EQ(s.throttle_count, std::nullopt);
  ASSERT_EQ(s.temperatures.size(), 2u);
  EXPECT_EQ(s.temperatures[0].name, "cpu-thermal");
  EXPECT_TRUE(s.temperatures[0].cpu);
  EXPECT_FALSE(s.temperatures[1].cpu);  // gpu-thermal
  EXPECT_THAT(MaxCpuTempC(s), Optional(DoubleNear(47.222, 1e-9)));

  // A cooling device caps the big cluster (policy2 = cpu2, cpu3): both of its
  // CPUs show it.
  tree.Write("sys/devices/system/cpu/cpufreq/policy2/scaling_max_freq",
             "1200000");
  s = probe.Sample(TestTime(1));
  EXPECT_THAT(s.cores[2].max_freq_mhz, Optional(DoubleEq(1200)));
  EXPECT_THAT(s.cores[3].max_freq_mhz, Optional(DoubleEq(1200)));
  EXPECT_THAT(s.cores[0].max_freq_mhz, Optional(DoubleEq(1416)));

  const HostFacts facts = ReadHostFacts(tree.root());
  EXPECT_EQ(facts.cpu_model, "Pine64 RockPro64 v2.1");
  EXPECT_EQ(facts.memory_bytes, int64_t{3884096} * 1024);
}

TEST(SysfsProbeTest, ContainerWithAlmostNothingGivesUtilisationAndLoadOnly) {
  FakeTree tree("container");
  SysfsProbe probe({.root = tree.root()});
  HostSample s = probe.Sample(TestTime(0));
  ASSERT_EQ(s.cores.size(), 2u);  // from /proc/stat alone
  EXPECT_THAT(s.load1, Optional(DoubleEq(3.0)));
  EXPECT_EQ(s.procs_running, 4);
  EXPECT_EQ(s.mem_total_bytes, std::nullopt);
  EXPECT_EQ(s.mem_available_bytes, std::nullopt);
  EXPECT_EQ(s.cores[0].cur_freq_mhz, std::nullopt);
  EXPECT_EQ(s.cores[0].governor, "");
  EXPECT_EQ(s.cpufreq_driver, "");
  EXPECT_EQ(s.turbo_enabled, std::nullopt);
  EXPECT_EQ(s.throttle_count, std::nullopt);
  EXPECT_THAT(s.temperatures, IsEmpty());
  EXPECT_EQ(MaxCpuTempC(s), std::nullopt);
  EXPECT_EQ(MinCoreFreqMhz(s), std::nullopt);

  ProcStat stat(
      {{100, 0, 50, 1000, 0, 0, 0, 0}, {100, 0, 50, 1000, 0, 0, 0, 0}});
  stat.Add(0, ProcStat::kUser, 25);
  stat.Add(0, ProcStat::kIdle, 75);
  stat.Add(1, ProcStat::kIdle, 100);
  tree.Write("proc/stat", stat.Text());
  s = probe.Sample(TestTime(1));
  EXPECT_THAT(s.cores[0].util, Optional(DoubleEq(0.25)));
  EXPECT_THAT(s.cpu_util, Optional(DoubleEq(0.125)));
  EXPECT_THAT(s.top_processes, IsEmpty());
}

TEST(SysfsProbeTest, MissingRootMeansNothingAvailableRatherThanAnError) {
  SysfsProbe probe({.root = "/nonexistent/benchfleet-probe-root"});
  for (int i = 0; i < 2; ++i) {
    const HostSample s = probe.Sample(TestTime(i));
    EXPECT_THAT(s.cores, IsEmpty());
    EXPECT_EQ(s.cpu_util, std::nullopt);
    EXPECT_EQ(s.load1, std::nullopt);
    EXPECT_EQ(s.mem_total_bytes, std::nullopt);
    EXPECT_EQ(s.other_cpu_cores, std::nullopt);
    EXPECT_FALSE(s.processes_scanned);
  }
  EXPECT_EQ(probe.open_files(), 0);
}

// --- The real host
// ---------------------------------------------------------------------

TEST(SysfsProbeRealHostTest, HasCpusLoadAndMemory) {
  SysfsProbe probe({});
  HostSample s = probe.Sample(TestTime(0));
  EXPECT_GT(s.cores.size(), 0u);
  EXPECT_TRUE(s.load1.has_value());
  ASSERT_TRUE(s.mem_total_bytes.has_value());
  EXPECT_GT(*s.mem_total_bytes, 0);
  EXPECT_TRUE(s.mem_available_bytes.has_value());
  EXPECT_GT(probe.process_scans(), 0);  // /proc is there to walk

  std::this_thread::sleep_for(
      std::chrono::milliseconds(50));  // the delta's interval
  s = probe.Sample(TestTime(1));
  ASSERT_TRUE(s.cpu_util.has_value());
  EXPECT_GE(*s.cpu_util, 0.0);
  EXPECT_LE(*s.cpu_util, 1.0);
  for (const CpuCoreSample& core : s.cores) {
    if (core.util) {
      EXPECT_LE(*core.util, 1.0);
    }
  }
}

// A child that spins until killed.
class BusyChild {
 public:
  BusyChild() {
    pid_ = fork();
    if (pid_ == 0) {
      volatile uint64_t n = 0;
      while (true) n = n + 1;
    }
  }
  ~BusyChild() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

TEST(SysfsProbeRealHostTest, BusyChildProcessIsSeenAsCompeting) {
  BusyChild child;
  ASSERT_GT(child.pid(), 0);
  SysfsProbe probe({.top_processes = 50});
  // The test process is excluded, its child is not (it is not excluded as a
  // descendant).
  probe.SetExclusions({.pids = {getpid()}, .descendants = false});
  probe.Sample(TestTime(0));
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::optional<double> child_cores;
  bool saw_self = false;
  for (int i = 1; std::chrono::steady_clock::now() < deadline; ++i) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(200));  // the delta's interval
    const HostSample s = probe.Sample(TestTime(i));
    for (const ProcessCpu& p : s.top_processes) {
      if (p.pid == child.pid()) child_cores = p.cpu_cores;
      if (p.pid == getpid()) saw_self = true;
    }
    // Generous: the child spins on one core, but this host is shared with other
    // work.
    if (child_cores && *child_cores > 0.2) break;
  }
  ASSERT_TRUE(child_cores.has_value())
      << "child " << child.pid() << " never seen competing";
  EXPECT_GT(*child_cores, 0.2);
  EXPECT_FALSE(saw_self);
}

}  // namespace
}  // namespace benchfleet
