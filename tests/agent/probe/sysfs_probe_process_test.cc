// Tests of SysfsProbe's competing-process accounting against the fake Intel
// tree: which processes compete, exclusions, and the CPU over a window of at
// least min_window.
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
#include "agent/probe/sysfs_probe.h"
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

// --- Competing processes on the Intel tree
// ------------------------------------------------- Processes: 1 systemd, 500
// the agent, 600/601 its job (process group 600), 701 g++ that the agent ran in
// its own process group, 700 "stress", 800 "my (odd) proc", and the kernel
// threads 2 (kthreadd) and 40 (a kworker) with 41, a modprobe the kworker
// started.

TEST(SysfsProbeTest,
     CompetingProcessIsAttributedWhileTheAgentAndItsJobAreExcluded) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  probe.SetExclusions({.pids = {500}});  // and, by default, its descendants
  HostSample s = probe.Sample(TestTime(0));
  EXPECT_FALSE(s.processes_scanned);  // the baseline walk
  EXPECT_EQ(probe.process_scans(), 1);

  ProcStat stat = IntelStat();
  stat.Add(0, ProcStat::kUser, 80);  // stress
  stat.Add(0, ProcStat::kIdle, 20);
  stat.Add(1, ProcStat::kUser, 100);  // the job's worker
  stat.Add(2, ProcStat::kUser, 7);    // the agent (5) and the odd process (2)
  stat.Add(2, ProcStat::kIdle, 93);
  stat.Add(3, ProcStat::kIrq, 3);
  stat.Add(3, ProcStat::kIdle, 97);
  tree.Write("proc/stat", stat.Text());
  tree.Write("proc/700/stat",
             PidStatLine(700, "stress", 1, 700, 4080, 0, 3000));
  tree.Write("proc/601/stat",
             PidStatLine(601, "bench-worker", 600, 600, 2100, 20, 5001));
  tree.Write("proc/500/stat",
             PidStatLine(500, "benchfleet-agen", 1, 500, 305, 100, 900));
  tree.Write("proc/800/stat",
             PidStatLine(800, "my (odd) proc", 1, 800, 12, 0, 3100));
  s = probe.Sample(TestTime(1));

  // 190 busy ticks, 105 of them the agent's and the job's, in 100 ticks of
  // time.
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.85, 1e-9)));
  // That is above the trigger, and the baseline is within a window: attributed
  // now.
  EXPECT_EQ(probe.process_scans(), 2);
  ASSERT_TRUE(s.processes_scanned);
  ASSERT_EQ(s.top_processes.size(), 2u);
  EXPECT_EQ(s.top_processes[0].pid, 700);
  EXPECT_EQ(s.top_processes[0].comm, "stress");
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(0.8, 1e-9));
  EXPECT_EQ(s.top_processes[1].comm, "my (odd) proc");
  EXPECT_THAT(s.top_processes[1].cpu_cores, DoubleNear(0.02, 1e-9));
  EXPECT_THAT(s.competing_cpu_cores, Optional(DoubleNear(0.82, 1e-9)));
  EXPECT_THAT(MaxProcessCpuCores(s), Optional(DoubleNear(0.8, 1e-9)));

  const HostStateSummary summary =
      SummarizeHostSamples(std::vector<HostSample>{s});
  EXPECT_THAT(summary.flags, ElementsAre(kFlagContended));
  EXPECT_THAT(summary.reasons[0],
              ::testing::HasSubstr("pid 700 (stress) used 0.80 cores"));
}

TEST(SysfsProbeTest, NoProcWalkWhileOnlyExcludedProcessesUseCpu) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  probe.SetExclusions({.pids = {500}});
  probe.Sample(TestTime(0));
  ASSERT_EQ(probe.process_scans(), 1);

  ProcStat stat = IntelStat();
  stat.Add(1, ProcStat::kUser, 100);  // the job
  stat.Add(0, ProcStat::kSoftirq, 1);
  stat.Add(0, ProcStat::kIdle, 99);
  stat.Add(2, ProcStat::kIdle, 100);
  stat.Add(3, ProcStat::kIdle, 100);
  tree.Write("proc/stat", stat.Text());
  tree.Write("proc/601/stat",
             PidStatLine(601, "bench-worker", 600, 600, 2100, 20, 5001));
  HostSample s = probe.Sample(TestTime(1));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.01, 1e-9)));
  EXPECT_FALSE(s.processes_scanned);
  EXPECT_EQ(probe.process_scans(), 1);

  // Then "stress" takes 80 ticks: the walk attributes them over the window
  // since the baseline (two samples, 200 ticks).
  stat.Add(0, ProcStat::kUser, 80);
  stat.Add(0, ProcStat::kIdle, 20);
  for (int cpu = 1; cpu < 4; ++cpu) stat.Add(cpu, ProcStat::kIdle, 100);
  tree.Write("proc/stat", stat.Text());
  tree.Write("proc/700/stat",
             PidStatLine(700, "stress", 1, 700, 4080, 0, 3000));
  s = probe.Sample(TestTime(2));
  EXPECT_EQ(probe.process_scans(), 2);
  ASSERT_TRUE(s.processes_scanned);
  ASSERT_FALSE(s.top_processes.empty());
  EXPECT_EQ(s.top_processes[0].pid, 700);
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(0.4, 1e-9));
}

TEST(SysfsProbeTest, ProcessGroupExclusionWithoutDescendants) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root(), .process_trigger_cores = 0});
  // Not even benchfleet's own programs: the agent (500) is measured here.
  probe.SetExclusions(
      {.process_groups = {600}, .own_binaries = {}, .descendants = false});
  probe.Sample(TestTime(0));

  ProcStat stat = IntelStat();
  stat.Add(0, ProcStat::kUser, 100);  // the job (group 600): excluded
  // g++ (group 701, child of the agent): not excluded.
  stat.Add(1, ProcStat::kUser, 30);
  stat.Add(1, ProcStat::kSystem, 10);  // the agent itself: not excluded
  stat.Add(1, ProcStat::kIdle, 60);
  stat.Add(2, ProcStat::kIdle, 100);
  stat.Add(3, ProcStat::kIdle, 100);
  tree.Write("proc/stat", stat.Text());
  tree.Write("proc/600/stat",
             PidStatLine(600, "bench", 500, 600, 1050, 10, 5000));
  tree.Write("proc/601/stat",
             PidStatLine(601, "bench-worker", 600, 600, 2050, 20, 5001));
  tree.Write("proc/701/stat", PidStatLine(701, "g++", 500, 701, 80, 5, 5100));
  tree.Write("proc/500/stat",
             PidStatLine(500, "benchfleet-agen", 1, 500, 300, 110, 900));
  const HostSample s = probe.Sample(TestTime(1));
  ASSERT_TRUE(s.processes_scanned);
  ASSERT_EQ(s.top_processes.size(), 2u);
  EXPECT_EQ(s.top_processes[0].pid, 701);
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(0.3, 1e-9));
  EXPECT_EQ(s.top_processes[1].pid, 500);
  EXPECT_THAT(s.top_processes[1].cpu_cores, DoubleNear(0.1, 1e-9));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.4, 1e-9)));
}

TEST(SysfsProbeTest, NewExitedAndReusedPidsAreAttributedCorrectly) {
  FakeTree tree("intel");
  SysfsProbe probe(
      {.root = tree.root(), .process_trigger_cores = 0, .top_processes = 10});
  probe.Sample(TestTime(0));

  ProcStat stat = IntelStat();
  stat.Add(0, ProcStat::kUser, 40);
  stat.Add(0, ProcStat::kIdle, 60);
  for (int cpu = 1; cpu < 4; ++cpu) stat.Add(cpu, ProcStat::kIdle, 100);
  tree.Write("proc/stat", stat.Text());
  tree.Remove("proc/800");  // exited
  tree.Write("proc/900/stat",
             PidStatLine(900, "newcomer", 1, 900, 25, 5, 9000));  // started
  // pid 700 exited and was reused: its 4000 old ticks must not be subtracted
  // from the new process's 10.
  tree.Write("proc/700/stat", PidStatLine(700, "reused", 1, 700, 10, 0, 9100));
  const HostSample s = probe.Sample(TestTime(1));
  ASSERT_TRUE(s.processes_scanned);
  ASSERT_EQ(s.top_processes.size(), 2u);
  EXPECT_EQ(s.top_processes[0].comm, "newcomer");
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(0.3, 1e-9));
  EXPECT_EQ(s.top_processes[1].comm, "reused");
  EXPECT_THAT(s.top_processes[1].cpu_cores, DoubleNear(0.1, 1e-9));
}

TEST(SysfsProbeTest, TopProcessesKeepsOnlyTheBusiest) {
  FakeTree tree("intel");
  SysfsProbe probe(
      {.root = tree.root(), .process_trigger_cores = 0, .top_processes = 1});
  probe.Sample(TestTime(0));
  ProcStat stat = IntelStat();
  stat.Add(0, ProcStat::kUser, 100);
  stat.Add(1, ProcStat::kUser, 30);
  stat.Add(1, ProcStat::kIdle, 70);
  stat.Add(2, ProcStat::kIdle, 100);
  stat.Add(3, ProcStat::kIdle, 100);
  tree.Write("proc/stat", stat.Text());
  tree.Write("proc/800/stat",
             PidStatLine(800, "my (odd) proc", 1, 800, 40, 0, 3100));
  tree.Write("proc/700/stat",
             PidStatLine(700, "stress", 1, 700, 4100, 0, 3000));
  const HostSample s = probe.Sample(TestTime(1));
  ASSERT_EQ(s.top_processes.size(), 1u);
  EXPECT_EQ(s.top_processes[0].pid, 700);
  EXPECT_THAT(s.competing_cpu_cores, Optional(DoubleNear(1.3, 1e-9)));
}

TEST(SysfsProbeTest, ChangingExclusionsTakesANewBaseline) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  probe.Sample(TestTime(0));
  EXPECT_EQ(probe.process_scans(), 1);
  probe.Sample(TestTime(1));
  EXPECT_EQ(probe.process_scans(), 1);  // nothing changed: no walk
  probe.SetExclusions({.process_groups = {600}});
  const HostSample s = probe.Sample(TestTime(2));
  EXPECT_EQ(probe.process_scans(), 2);
  EXPECT_FALSE(s.processes_scanned);
}

TEST(SysfsProbeTest, KeptProcessFilesAreBounded) {
  FakeTree tree("intel");  // 10 processes, 2 of them kernel threads
  auto open_files_with = [&](int max_kept) {
    SysfsProbe probe({.root = tree.root(),
                      .process_trigger_cores = 0,
                      .max_kept_process_files = max_kept});
    // A walk per window: a second of ticks passes between samples.
    ProcStat stat = IntelStat();
    for (int i = 0; i < 3; ++i) {
      for (int cpu = 0; cpu < 4; ++cpu) stat.Add(cpu, ProcStat::kIdle, 100);
      tree.Write("proc/stat", stat.Text());
      probe.Sample(TestTime(i));
    }
    EXPECT_EQ(probe.process_scans(), 3);
    return probe.open_files();
  };
  const int without = open_files_with(0);
  EXPECT_EQ(open_files_with(3), without + 3);
  EXPECT_EQ(open_files_with(100), without + 10);
}

TEST(SysfsProbeTest,
     KernelThreadsAreExcludedByDefaultButNotTheProcessesTheyStart) {
  auto sample_after_kworker_and_modprobe_run =
      [](ProcessExclusions exclusions) {
        FakeTree tree("intel");
        SysfsProbe probe({.root = tree.root(), .process_trigger_cores = 0});
        probe.SetExclusions(exclusions);
        probe.Sample(TestTime(0));
        ProcStat stat = IntelStat();
        stat.Add(0, ProcStat::kSystem, 50);  // the kworker
        stat.Add(0, ProcStat::kIdle, 50);
        stat.Add(1, ProcStat::kUser, 20);  // modprobe
        stat.Add(1, ProcStat::kIdle, 80);
        stat.Add(2, ProcStat::kIdle, 100);
        stat.Add(3, ProcStat::kIdle, 100);
        tree.Write("proc/stat", stat.Text());
        tree.Write("proc/40/stat", PidStatLine(40, "kworker/0:1-events", 2, 0,
                                               0, 350, 10, 0, 0x4208060));
        tree.Write("proc/41/stat",
                   PidStatLine(41, "modprobe", 40, 0, 40, 10, 6000));
        return probe.Sample(TestTime(1));
      };
  HostSample s = sample_after_kworker_and_modprobe_run({});
  ASSERT_TRUE(s.processes_scanned);
  ASSERT_EQ(s.top_processes.size(), 1u);
  EXPECT_EQ(s.top_processes[0].comm, "modprobe");
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(0.2, 1e-9));
  EXPECT_THAT(s.other_cpu_cores,
              Optional(DoubleNear(0.7, 1e-9)));  // the kworker's CPU is here

  s = sample_after_kworker_and_modprobe_run({.kernel_threads = false});
  ASSERT_EQ(s.top_processes.size(), 2u);
  EXPECT_EQ(s.top_processes[0].comm, "kworker/0:1-events");
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(0.5, 1e-9));
}

// --- Competing CPU over a window of at least min_window
// ---------------------------------

// Adds `ticks` of idle time to every CPU of `stat` but the ones given busy
// ticks, which get the rest of the interval as idle.
void Advance(ProcStat* stat, uint64_t ticks,
             const std::vector<std::pair<int, uint64_t>>& busy = {}) {
  for (int cpu = 0; cpu < 4; ++cpu) {
    uint64_t used = 0;
    for (const auto& [busy_cpu, busy_ticks] : busy) {
      if (busy_cpu == cpu) used += busy_ticks;
    }
    stat->Add(cpu, ProcStat::kUser, used);
    stat->Add(cpu, ProcStat::kIdle, ticks > used ? ticks - used : 0);
  }
}

SampleTime At(std::chrono::microseconds t) { return TestTime(0) + t; }

TEST(SysfsProbeWindowTest, AQuietHostIsNotReadAsBusyWhenSamplesAreMsApart) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  probe.SetExclusions({.pids = {500}});
  ProcStat stat = IntelStat();
  probe.Sample(At(std::chrono::milliseconds(0)));
  // A second of a quiet host sampled at 10 Hz, as during runs.
  HostSample s;
  for (int i = 1; i <= 10; ++i) {
    Advance(&stat, 10);
    tree.Write("proc/stat", stat.Text());
    s = probe.Sample(At(std::chrono::milliseconds(100 * i)));
  }
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleEq(0)));
  EXPECT_EQ(s.other_cpu_window, std::chrono::seconds(1));
  EXPECT_EQ(s.other_cpu_window_needed, std::chrono::nanoseconds(0));

  // The next gate samples 2.5 ms later (a quarter tick of each CPU), and some
  // process got one tick meanwhile. Between those two samples alone that
  // reads as 4 cores; over the last second it is one tick in 100.
  stat.Add(0, ProcStat::kUser, 1);
  tree.Write("proc/stat", stat.Text());
  s = probe.Sample(At(std::chrono::microseconds(1'002'500)));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.01, 1e-12)));
  EXPECT_EQ(s.other_cpu_window, std::chrono::seconds(1));
  EXPECT_EQ(probe.process_scans(), 1);  // far below the walk trigger
}

TEST(SysfsProbeWindowTest, AYoungProbeSaysHowMuchOfItsWindowItLacks) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  ProcStat stat = IntelStat();
  HostSample s = probe.Sample(TestTime(0));
  EXPECT_EQ(s.other_cpu_cores, std::nullopt);  // no reading yet
  EXPECT_EQ(s.other_cpu_window_needed, std::chrono::seconds(1));

  Advance(&stat, 30, {{1, 6}});
  tree.Write("proc/stat", stat.Text());
  s = probe.Sample(TestTime(0) + std::chrono::milliseconds(300));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.2, 1e-12)));
  EXPECT_EQ(s.other_cpu_window, std::chrono::milliseconds(300));
  EXPECT_EQ(s.other_cpu_window_needed, std::chrono::milliseconds(700));
  // Rounding could move 30 ticks' worth by 4 ticks.
  EXPECT_THAT(s.other_cpu_rounding_cores,
              Optional(DoubleNear(4.0 / 30, 1e-12)));

  Advance(&stat, 70);
  tree.Write("proc/stat", stat.Text());
  s = probe.Sample(TestTime(1));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.06, 1e-12)));
  EXPECT_EQ(s.other_cpu_window, std::chrono::seconds(1));
  EXPECT_EQ(s.other_cpu_window_needed, std::chrono::nanoseconds(0));
  EXPECT_THAT(s.other_cpu_rounding_cores, Optional(DoubleNear(0.04, 1e-12)));
}

TEST(SysfsProbeWindowTest, AfterNewExclusionsTheReadingSaysWhatItStillLacks) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  ProcStat stat = IntelStat();
  probe.Sample(TestTime(0));
  Advance(&stat, 100);
  tree.Write("proc/stat", stat.Text());
  probe.Sample(TestTime(1));

  // The past was measured against other exclusions: it starts afresh.
  probe.SetExclusions({.pids = {500}});
  Advance(&stat, 50, {{1, 10}});
  tree.Write("proc/stat", stat.Text());
  HostSample s = probe.Sample(TestTime(1) + std::chrono::milliseconds(500));
  EXPECT_EQ(s.other_cpu_cores, std::nullopt);
  EXPECT_EQ(s.other_cpu_window_needed, std::chrono::seconds(1));

  Advance(&stat, 50, {{1, 10}});
  tree.Write("proc/stat", stat.Text());
  s = probe.Sample(TestTime(2));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.2, 1e-12)));
  EXPECT_EQ(s.other_cpu_window, std::chrono::milliseconds(500));
  EXPECT_EQ(s.other_cpu_window_needed, std::chrono::milliseconds(500));

  Advance(&stat, 50);
  tree.Write("proc/stat", stat.Text());
  s = probe.Sample(TestTime(2) + std::chrono::milliseconds(500));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.1, 1e-12)));
  EXPECT_EQ(s.other_cpu_window, std::chrono::seconds(1));
  EXPECT_EQ(s.other_cpu_window_needed, std::chrono::nanoseconds(0));

  // The busy half second falls out of the window.
  Advance(&stat, 50);
  tree.Write("proc/stat", stat.Text());
  s = probe.Sample(TestTime(3));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.0, 1e-12)));
}

TEST(SysfsProbeWindowTest, APauseInSamplingStandsInAtItsAverageRate) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  ProcStat stat = IntelStat();
  probe.Sample(TestTime(0));
  Advance(&stat, 100);
  tree.Write("proc/stat", stat.Text());
  probe.Sample(TestTime(1));
  // Five minutes without samples (between two leases), in which others used
  // 0.1 cores on average.
  Advance(&stat, 30'000, {{0, 3'000}});
  tree.Write("proc/stat", stat.Text());
  HostSample s = probe.Sample(TestTime(301));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.1, 1e-12)));
  EXPECT_EQ(s.other_cpu_window, std::chrono::seconds(1));
  // 0.3 s later, after a whole core's worth of other work: the window is
  // those 0.3 s plus 0.7 s of the pause's average.
  Advance(&stat, 30, {{1, 30}});
  tree.Write("proc/stat", stat.Text());
  s = probe.Sample(TestTime(301) + std::chrono::milliseconds(300));
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.37, 1e-12)));
}

TEST(SysfsProbeWindowTest, BenchfleetsOwnProgramsAreNotCompetitors) {
  FakeTree tree("intel");
  // The controller, run by another user: its exe cannot be read, its comm is
  // cut to 15 characters.
  tree.Write("proc/900/stat",
             PidStatLine(900, "benchfleet-cont", 1, 900, 100, 0, 8000));
  // A program that one of them started is not one of benchfleet's runs
  // (those are the agent's, excluded by pid): it competes.
  tree.Write("proc/903/stat", PidStatLine(903, "stress", 900, 903, 0, 0, 8300));
  // `benchfleet watch`, whose binary was rebuilt while it runs.
  tree.Write("proc/901/stat",
             PidStatLine(901, "benchfleet", 1, 901, 100, 0, 8100));
  tree.Symlink("proc/901/exe", "/usr/local/bin/benchfleet (deleted)");
  // A script that calls itself benchfleet: its exe says otherwise.
  tree.Write("proc/902/stat",
             PidStatLine(902, "benchfleet", 1, 902, 100, 0, 8200));
  tree.Symlink("proc/902/exe", "/usr/bin/python3.11");
  SysfsProbe probe({.root = tree.root(), .process_trigger_cores = 0});
  probe.SetExclusions({.pids = {500}});
  probe.Sample(TestTime(0));

  ProcStat stat = IntelStat();
  Advance(&stat, 100, {{0, 40}, {1, 30}, {2, 20}, {3, 10}});
  tree.Write("proc/stat", stat.Text());
  tree.Write("proc/900/stat",
             PidStatLine(900, "benchfleet-cont", 1, 900, 140, 0, 8000));
  tree.Write("proc/901/stat",
             PidStatLine(901, "benchfleet", 1, 901, 130, 0, 8100));
  tree.Write("proc/902/stat",
             PidStatLine(902, "benchfleet", 1, 902, 120, 0, 8200));
  tree.Write("proc/903/stat",
             PidStatLine(903, "stress", 900, 903, 10, 0, 8300));
  const HostSample s = probe.Sample(TestTime(1));
  ASSERT_TRUE(s.processes_scanned);
  ASSERT_EQ(s.top_processes.size(), 2u);
  EXPECT_EQ(s.top_processes[0].pid, 902);
  EXPECT_EQ(s.top_processes[1].pid, 903);
  EXPECT_THAT(s.competing_cpu_cores, Optional(DoubleNear(0.3, 1e-12)));
  // The cheap reading leaves them out too (they are read on every sample).
  EXPECT_THAT(s.other_cpu_cores, Optional(DoubleNear(0.3, 1e-12)));
}

TEST(SysfsProbeWindowTest, SchedstatNanosecondsCountWhereTheyAgreeWithTicks) {
  FakeTree tree("intel");
  tree.Write("proc/700/schedstat", SchedstatLine(40'003'000'000));
  tree.Write("proc/800/schedstat", SchedstatLine(50'000'000));
  SysfsProbe probe({.root = tree.root(), .process_trigger_cores = 0});
  probe.SetExclusions({.pids = {500}});
  probe.Sample(TestTime(0));

  ProcStat stat = IntelStat();
  Advance(&stat, 100, {{0, 34}, {1, 50}});
  tree.Write("proc/stat", stat.Text());
  // stress: 33 ticks; its one thread ran 334.5 ms, which rounds down to them.
  tree.Write("proc/700/stat",
             PidStatLine(700, "stress", 1, 700, 4033, 0, 3000));
  tree.Write("proc/700/schedstat", SchedstatLine(40'337'500'000));
  // A process whose worker threads ran: 50 ticks, 10 ms of them its main
  // thread's. schedstat cannot speak for it.
  tree.Write("proc/800/stat",
             PidStatLine(800, "my (odd) proc", 1, 800, 60, 0, 3100));
  tree.Write("proc/800/schedstat", SchedstatLine(60'000'000));
  const HostSample s = probe.Sample(TestTime(1));
  ASSERT_TRUE(s.processes_scanned);
  ASSERT_EQ(s.top_processes.size(), 2u);
  EXPECT_EQ(s.top_processes[0].pid, 800);
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(0.5, 1e-12));
  EXPECT_EQ(s.top_processes[1].pid, 700);
  EXPECT_THAT(s.top_processes[1].cpu_cores, DoubleNear(0.3345, 1e-12));
}

TEST(SysfsProbeWindowTest, SampleWithProcessesEndsARunsReadingAtItsEnd) {
  FakeTree tree("intel");
  SysfsProbe probe({.root = tree.root()});
  probe.SetExclusions({.pids = {500}});
  ProcStat stat = IntelStat();
  uint64_t stress = 4000;
  int64_t ms = 0;
  auto step = [&](int ticks, bool with_processes) {
    // stress uses 0.2 cores throughout.
    Advance(&stat, ticks, {{0, static_cast<uint64_t>(ticks / 5)}});
    stress += ticks / 5;
    ms += ticks * 10;
    tree.Write("proc/stat", stat.Text());
    tree.Write("proc/700/stat",
               PidStatLine(700, "stress", 1, 700, stress, 0, 3000));
    const SampleTime t = At(std::chrono::milliseconds(ms));
    return with_processes ? probe.SampleWithProcesses(t) : probe.Sample(t);
  };
  probe.Sample(At(std::chrono::milliseconds(0)));
  ASSERT_EQ(probe.process_scans(), 1);
  // 10 Hz for a second: a walk once the window is full.
  HostSample s;
  for (int i = 0; i < 10; ++i) s = step(10, false);
  EXPECT_EQ(probe.process_scans(), 2);
  ASSERT_TRUE(s.processes_scanned);
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(0.2, 1e-12));

  // A 150 ms run: its periodic sample does not walk, its closing one does,
  // over the walk a window before (the baseline, 1.15 s back).
  s = step(10, false);
  EXPECT_FALSE(s.processes_scanned);
  s = step(5, true);
  EXPECT_EQ(probe.process_scans(), 3);
  ASSERT_TRUE(s.processes_scanned);
  EXPECT_EQ(s.process_window, std::chrono::milliseconds(1150));
  EXPECT_THAT(s.top_processes[0].cpu_cores, DoubleNear(23.0 / 115, 1e-12));

  // Another run ending 10 ms later gets that reading without a walk.
  s = step(1, true);
  EXPECT_EQ(probe.process_scans(), 3);
  ASSERT_TRUE(s.processes_scanned);
  EXPECT_EQ(s.process_window, std::chrono::milliseconds(1150));
}

TEST(SysfsProbeWindowTest, AShortRunIsJudgedOnTheWindowThatEndsWithIt) {
  // A 50 ms run on a host where "stress" used `ticks_per_second` in the
  // second before it, and gets one tick during the run.
  auto summarize_run = [](uint64_t ticks_per_second) {
    FakeTree tree("intel");
    SysfsProbe probe({.root = tree.root()});
    probe.SetExclusions({.pids = {500}});
    ProcStat stat = IntelStat();
    probe.Sample(TestTime(0));
    uint64_t stress = 4000;
    for (uint64_t i = 1; i <= 10; ++i) {
      const uint64_t per_step =
          ticks_per_second / 10 + (i <= ticks_per_second % 10 ? 1 : 0);
      Advance(&stat, 10, {{0, per_step}});
      stress += per_step;
      tree.Write("proc/stat", stat.Text());
      tree.Write("proc/700/stat",
                 PidStatLine(700, "stress", 1, 700, stress, 0, 3000));
      probe.Sample(At(std::chrono::milliseconds(100 * i)));
    }
    std::vector<HostSample> run;
    // The run's first sample, 2.5 ms after the gate's: stress got a tick.
    stat.Add(0, ProcStat::kUser, 1);
    tree.Write("proc/stat", stat.Text());
    tree.Write("proc/700/stat",
               PidStatLine(700, "stress", 1, 700, ++stress, 0, 3000));
    run.push_back(probe.Sample(At(std::chrono::microseconds(1'002'500))));
    Advance(&stat, 5);
    tree.Write("proc/stat", stat.Text());
    run.push_back(
        probe.SampleWithProcesses(At(std::chrono::microseconds(1'052'500))));
    return SummarizeHostSamples(run, {.contended_process_cpu_cores = 0.1});
  };
  // 0.03 cores: below the walk trigger, so no per-process reading at all;
  // the run's own 52.5 ms would have read one tick as 0.19 cores.
  HostStateSummary quiet = summarize_run(3);
  EXPECT_FALSE(quiet.flagged()) << quiet.reasons[0];
  EXPECT_EQ(quiet.max_process_cpu_cores, std::nullopt);
  // 0.3 cores: flagged, on the window that ends at the run's end.
  HostStateSummary busy = summarize_run(30);
  EXPECT_THAT(busy.flags, ElementsAre(kFlagContended));
  ASSERT_TRUE(busy.max_process_cpu_cores.has_value());
  EXPECT_THAT(*busy.max_process_cpu_cores, DoubleNear(31.0 / 105.25, 1e-9));
  EXPECT_THAT(busy.reasons[0],
              ::testing::HasSubstr("used 0.29 cores over 1.05 s"));
}

}  // namespace
}  // namespace benchfleet
