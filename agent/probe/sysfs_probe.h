// SysfsProbe: the host probe. Reads CPU utilisation (/proc/stat deltas), load
// (/proc/loadavg), memory (/proc/meminfo), per-core frequency, governor and
// policy limits (cpufreq), turbo/boost state (intel_pstate/no_turbo,
// cpufreq/boost), thermal zones, hwmon temperatures (coretemp, k10temp, ...),
// thermal-throttle counters and the CPU use of competing processes
// (/proc/[pid]/stat), all under a configurable root so tests point it at a fake
// tree; GPUs come from an optional GpuProbe (NvmlProbe). Used by the agent's
// sampler thread (10 Hz while a step runs), by its gates, and by the
// benchfleet-probe tool.
//
// Cost is the design constraint (docs/perf/probe-cost.md): the files are found
// once, at construction, and kept open; each sample re-reads them with pread
// into reused buffers (and a /proc walk keeps the processes' stat files open
// for the next walk). Slowly changing settings (governor, policy limits, turbo,
// memory) are re-read every `slow_every_n` samples, per-CPU files and sensors
// round-robin within a budget of reads per sample. Per-process CPU needs a
// walk of /proc, so it is done only when needed: every sample measures the CPU
// used by everything except the excluded processes (from /proc/stat and the
// excluded processes' own stat files); only while that exceeds
// `process_trigger_cores` over the window does the probe walk /proc and
// attribute the CPU to processes.
//
// Competing CPU is always judged over a window of at least `min_window` (1 s):
// /proc CPU times advance in clock ticks of 10 ms, so over the 2 ms between a
// run's closing sample and the next gate one tick reads as 5 cores. The probe
// keeps a small ring of past readings (the unexplained CPU per slice of time,
// and the per-process CPU of recent /proc walks), so on a host that is sampled
// continuously (10 Hz during runs, gate polls between them) every reading
// covers the last min_window without extra waiting. Per-process CPU comes from
// /proc/[pid]/schedstat (nanoseconds on CPU) where it agrees with
// /proc/[pid]/stat's ticks, else from the ticks (schedstat counts only a
// process's main thread, and some kernels do not keep it).
//
// Missing files mean "not available" (nullopt / empty), never an error: a
// container with only /proc/stat gives utilisation and nothing else. CPUs,
// sensors and policies that appear after construction are not seen (the agent
// constructs a probe per lease).
//
// Thread-safety: not thread-safe, except SetExclusions, which may be called
// from any thread while another thread samples (the agent's runner sets the
// job's process group while the sampler runs).
#ifndef BENCHFLEET_AGENT_PROBE_SYSFS_PROBE_H_
#define BENCHFLEET_AGENT_PROBE_SYSFS_PROBE_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "agent/probe/host_sample.h"
#include "agent/probe/probe.h"

namespace benchfleet {

struct SysfsProbeOptions {
  // Prepended to every /proc and /sys path; "" = the real system.
  std::string root;
  // Governor, scaling limits, turbo state and /proc/meminfo are re-read on
  // every n-th sample (and on the first); in between, a sample repeats the last
  // values. 1 = always.
  int slow_every_n = 10;
  // The shortest window over which competing CPU is judged
  // (HostSample::other_cpu_cores) and attributed to processes (a process's
  // cpu_cores is its CPU time over the window divided by the window). /proc
  // CPU times have a resolution of one clock tick (10 ms): over 1 s a tick is
  // 0.01 cores, over 2 ms it is 5. Longer windows are finer grained and cheaper
  // (while something competes, one /proc walk per window, plus at most one
  // per min_window / 20 for SampleWithProcesses) but react later. A pause
  // between two samples (between two leases) counts at that pause's average.
  // For min_window after the first sample, and after SetExclusions changes
  // them (the past was measured against other exclusions), the reading covers
  // what there is and says how much it lacks
  // (HostSample::other_cpu_window_needed) and how far rounding could move it
  // (other_cpu_rounding_cores); the gates rely on it only where that could
  // not change their answer, and the agent takes a first sample when it
  // starts.
  std::chrono::nanoseconds min_window = std::chrono::seconds(1);
  // Processes are attributed only while the CPU not explained by the excluded
  // processes exceeds this many cores over the window (plus two clock ticks of
  // rounding): an idle host or one running only the job costs no /proc walk.
  // <= 0: walk /proc once per min_window regardless.
  double process_trigger_cores = 0.05;
  // Per-CPU and per-sensor files (scaling_cur_freq, throttle counters,
  // temperatures) are read round-robin, at most this many per sample (the first
  // sample reads them all); a sample carries the latest reading of each. This
  // bounds the cost on hosts with many CPUs: a 64-thread Intel host has ~135
  // such files, each then refreshed every 6th sample. <= 0: all, every sample.
  int sysfs_reads_per_sample = 24;
  // How many processes HostSample::top_processes keeps.
  int top_processes = 5;
  // A /proc walk keeps up to this many /proc/[pid]/stat files open for the next
  // walk (re-reading an open file costs about a third of opening it again).
  // Capped at a quarter of RLIMIT_NOFILE's soft limit, so the probe never
  // starves its process of descriptors.
  int max_kept_process_files = 1024;
};

// benchfleet's own programs (ProcessExclusions::own_binaries): the CLI, the
// controller and the agent.
std::vector<std::string> DefaultOwnBinaries();

// Processes whose CPU use is not "competing": the agent and its job, and
// benchfleet's other programs on the host.
struct ProcessExclusions {
  std::vector<int> pids;
  std::vector<int> process_groups;  // e.g. the job's process group
  // Programs excluded wherever they run: a process whose /proc/[pid]/exe has
  // one of these base names, or, where exe cannot be read (another user's
  // process), whose comm is the name cut to 15 characters as the kernel cuts
  // it ("benchfleet-controller" -> "benchfleet-cont"). The process itself
  // only: its children are not this agent's runs (those are excluded by pid
  // and `descendants`), and another agent's jobs on the host do compete.
  // Found by /proc walks, so a new one is excluded from the first walk after
  // it starts (if it alone uses CPU, within a sample or two).
  std::vector<std::string> own_binaries = DefaultOwnBinaries();
  // Also exclude every descendant of an excluded process (a job that moves
  // children to new process groups stays excluded).
  bool descendants = true;
  // Exclude kernel threads (kworker, ksoftirqd, kswapd...): they mostly work on
  // behalf of the job (I/O, interrupts, reclaim), and their CPU still shows in
  // other_cpu_cores. Also the cheaper choice: a /proc walk then re-reads a
  // known kernel thread only every tenth walk (to notice its pid being reused),
  // and most processes of a server are kernel threads. Their children (usermode
  // helpers) are not excluded by this.
  bool kernel_threads = true;
};

class SysfsProbe : public Probe {
 public:
  // Finds the files under `options.root` and opens them. Never fails; `gpus`
  // (not owned, may be null, must outlive the probe) supplies HostSample::gpus.
  explicit SysfsProbe(SysfsProbeOptions options, GpuProbe* gpus = nullptr);
  ~SysfsProbe() override;
  SysfsProbe(const SysfsProbe&) = delete;
  SysfsProbe& operator=(const SysfsProbe&) = delete;

  HostSample Sample(SampleTime now) override;
  // Also walks /proc for a per-process reading ending now when the CPU not
  // explained by the excluded processes exceeds process_trigger_cores over the
  // window, unless a walk less than min_window / 20 ago already gave one
  // (which the sample then carries). The agent takes each run's closing sample
  // this way.
  HostSample SampleWithProcesses(SampleTime now) override;

  // Replaces the set of excluded processes; takes effect from the next sample
  // (which walks /proc to find the members of the excluded groups and their
  // descendants). Thread-safe.
  void SetExclusions(ProcessExclusions exclusions);

  // How many /proc walks the probe has done (for tests and the cost benchmark).
  int64_t process_scans() const;
  // How many files the probe keeps open.
  int open_files() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_PROBE_SYSFS_PROBE_H_
