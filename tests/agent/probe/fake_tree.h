// Helpers of the probe tests: a private copy of a fake /proc+/sys tree from
// tests/agent/probe/trees/ that a test can change between samples, and writers
// for the /proc files whose numbers the tests compute (/proc/stat,
// /proc/[pid]/stat, /proc/[pid]/schedstat). Not thread-safe.
#ifndef BENCHFLEET_TESTS_AGENT_PROBE_FAKE_TREE_H_
#define BENCHFLEET_TESTS_AGENT_PROBE_FAKE_TREE_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent/probe/host_sample.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet::testing {

inline SampleTime TestTime(int seconds) {
  return SampleTime(std::chrono::seconds(1'700'000'000 + seconds));
}

class FakeTree {
 public:
  // Copies trees/<name> ("intel", "amd", "arm", "container"); symlinks stay
  // symlinks.
  explicit FakeTree(const std::string& name) : root_(dir_ / name) {
    std::filesystem::copy(std::string(BF_PROBE_TREES) + "/" + name, root_,
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::copy_symlinks);
  }
  const std::string& root() const { return root_; }

  // Rewrites a file in place (same inode), as the kernel regenerates one: the
  // probe keeps files open and must see the new content.
  void Write(const std::string& rel, const std::string& text) const {
    const std::filesystem::path path = root_ + "/" + rel;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::trunc);
    out << text << "\n";
    ASSERT_TRUE(out.good()) << path;
  }
  void Remove(const std::string& rel) const {
    std::filesystem::remove_all(root_ + "/" + rel);
  }
  // A symlink, such as /proc/[pid]/exe (whose target need not exist).
  void Symlink(const std::string& rel, const std::string& target) const {
    const std::filesystem::path path = root_ + "/" + rel;
    std::filesystem::create_directories(path.parent_path());
    std::filesystem::remove(path);
    std::filesystem::create_symlink(target, path);
  }

 private:
  TempDir dir_;
  std::string root_;
};

// /proc/stat with consistent per-CPU and aggregate lines. Fields per CPU, as in
// the file: user nice system idle iowait irq softirq steal.
class ProcStat {
 public:
  enum Field { kUser, kNice, kSystem, kIdle, kIowait, kIrq, kSoftirq, kSteal };
  using Cpu = std::array<uint64_t, 8>;
  explicit ProcStat(std::vector<Cpu> cpus) : cpus_(std::move(cpus)) {}

  void Add(int cpu, Field field, uint64_t ticks) { cpus_[cpu][field] += ticks; }
  std::string Text() const {
    Cpu total{};
    for (const Cpu& c : cpus_) {
      for (size_t i = 0; i < total.size(); ++i) total[i] += c[i];
    }
    std::string text = "cpu  " + Line(total) + "\n";
    for (size_t i = 0; i < cpus_.size(); ++i) {
      text += "cpu" + std::to_string(i) + " " + Line(cpus_[i]) + "\n";
    }
    return text +
           "intr 1149301 9 0 0\nctxt 19904730\nbtime 1700000000\nprocs_running "
           "2";
  }

 private:
  static std::string Line(const Cpu& c) {
    std::string line;
    for (uint64_t v : c) line += std::to_string(v) + " ";
    return line + "0 0";  // guest, guest_nice
  }
  std::vector<Cpu> cpus_;
};

// A /proc/[pid]/stat line with the fields the probe reads. `flags` 0x200000
// (PF_KTHREAD) makes it a kernel thread.
inline std::string PidStatLine(int pid, const std::string& comm, int ppid,
                               int pgrp, uint64_t utime, uint64_t stime,
                               uint64_t start_ticks, uint64_t cutime = 0,
                               uint64_t flags = 0x400100) {
  std::string line = std::to_string(pid) + " (" + comm + ") R " +
                     std::to_string(ppid) + " " + std::to_string(pgrp) + " " +
                     std::to_string(pgrp) + " 0 -1 " + std::to_string(flags) +
                     " 1500 0 0 0 " + std::to_string(utime) + " " +
                     std::to_string(stime) + " " + std::to_string(cutime) +
                     " 0 20 0 1 0 " + std::to_string(start_ticks);
  for (int i = 0; i < 30; ++i) line += " 0";
  return line;
}

// A /proc/[pid]/schedstat line: ns on CPU (of the main thread), ns waiting to
// run, times scheduled.
inline std::string SchedstatLine(uint64_t cpu_ns) {
  return std::to_string(cpu_ns) + " 1000 10";
}

// trees/intel/proc/stat.
inline ProcStat IntelStat() {
  return ProcStat({{1393, 32, 187, 896, 6, 12, 0, 0},
                   {1062, 111, 141, 922, 4, 4, 0, 0},
                   {1216, 105, 130, 936, 7, 4, 0, 0},
                   {1034, 108, 126, 945, 6, 3, 0, 0}});
}

}  // namespace benchfleet::testing

#endif  // BENCHFLEET_TESTS_AGENT_PROBE_FAKE_TREE_H_
