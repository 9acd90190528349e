// ProcessAccounting: the competing-process part of SysfsProbe. Each sample it
// reads the CPU time of the excluded processes (the agent, its job and their
// descendants), keeps the CPU they do not explain over a window of at least
// SysfsProbeOptions::min_window, and walks /proc to attribute that CPU to the
// processes that used it when it exceeds the trigger (or for
// SampleWithProcesses). SysfsProbe owns one and calls it from Sample with what
// it read from /proc/stat. Internal to agent/probe.
//
// Not thread-safe (SysfsProbe's sampling is externally synchronized), except
// SetExclusions, which may be called from any thread.
#ifndef BENCHFLEET_AGENT_PROBE_PROCESS_ACCOUNTING_H_
#define BENCHFLEET_AGENT_PROBE_PROCESS_ACCOUNTING_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "agent/probe/host_sample.h"
#include "agent/probe/kernel_file.h"
#include "agent/probe/sysfs_probe.h"

namespace benchfleet::probe_internal {

class ProcessAccounting {
 public:
  // `options` as SysfsProbe normalized them; `tick_ns` is one clock tick and
  // `window_ticks` min_window in ticks.
  ProcessAccounting(SysfsProbeOptions options, double tick_ns,
                    double window_ticks);
  ~ProcessAccounting();
  ProcessAccounting(const ProcessAccounting&) = delete;
  ProcessAccounting& operator=(const ProcessAccounting&) = delete;

  // Opens the /proc directory to walk (a missing one disables the walks).
  void OpenProc(const std::string& proc_path);
  // Takes effect at the next Sample, which starts the window afresh.
  void SetExclusions(ProcessExclusions exclusions);
  // One sample: `busy_core_ticks` and `elapsed_ticks` are /proc/stat's deltas
  // since the previous sample (unset on the first), `host_ticks` this
  // sample's per-CPU tick count; fills the competing-CPU fields of `s`.
  void Sample(HostSample* s, std::optional<double> busy_core_ticks,
              std::optional<double> elapsed_ticks, bool have_prev_host,
              double host_ticks, bool want_processes);
  // Files held open (tracked processes, kept /proc/[pid] files, /proc).
  int OpenFiles() const;
  // Walks of /proc so far.
  int64_t scans() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace benchfleet::probe_internal

#endif  // BENCHFLEET_AGENT_PROBE_PROCESS_ACCOUNTING_H_
