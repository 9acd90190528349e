// The competing-process part of SysfsProbe (see process_accounting.h): walks of
// /proc, the excluded processes (the agent, its job and their descendants),
// the CPU not explained by them over a window of at least min_window, and
// which processes used it.
#include "agent/probe/process_accounting.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
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

namespace benchfleet::probe_internal {
namespace {

uint64_t ToU64(std::string_view token) {
  auto value = ParseInt(token);
  return value && *value > 0 ? static_cast<uint64_t>(*value) : 0;
}

// The fields of a /proc/[pid]/stat line the probe uses.
struct PidStat {
  int pid = 0;
  int ppid = 0;
  int pgrp = 0;
  bool kernel_thread = false;       // PF_KTHREAD in flags
  uint64_t cpu_ticks = 0;           // utime + stime
  uint64_t cpu_children_ticks = 0;  // cutime + cstime (reaped children)
  uint64_t start_ticks = 0;         // starttime, identifies a pid's incarnation
  std::string_view comm;
};

// "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
// cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
// ...". comm may hold spaces and parentheses, so fields are counted from the
// last ')'.
bool ParsePidStat(std::string_view line, PidStat* out) {
  const size_t open = line.find('(');
  const size_t close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos ||
      close < open) {
    return false;
  }
  auto pid = ParseInt(line.substr(0, open));
  if (!pid) return false;
  out->pid = static_cast<int>(*pid);
  out->comm = line.substr(open + 1, close - open - 1);
  std::string_view rest = line.substr(close + 1);
  std::string_view fields[20];
  for (auto& field : fields) {
    field = NextToken(&rest);
    if (field.empty()) return false;
  }
  out->ppid = static_cast<int>(ToU64(fields[1]));
  out->pgrp = static_cast<int>(ToU64(fields[2]));
  constexpr uint64_t kPfKthread = 0x00200000;  // include/linux/sched.h
  out->kernel_thread = (ToU64(fields[6]) & kPfKthread) != 0;
  out->cpu_ticks = ToU64(fields[11]) + ToU64(fields[12]);
  out->cpu_children_ticks = ToU64(fields[13]) + ToU64(fields[14]);
  out->start_ticks = ToU64(fields[19]);
  return true;
}

}  // namespace

struct ProcessAccounting::State {
  // One process seen by a /proc walk; `entries` is sorted by pid.
  struct Entry {
    int pid = 0, ppid = 0, pgrp = 0;
    bool kernel_thread = false;
    bool own_binary = false;  // one of ProcessExclusions::own_binaries
    uint64_t cpu_ticks = 0, cpu_children_ticks = 0, start_ticks = 0;
    // /proc/[pid]/schedstat's first field; -1 = not read (only competing
    // processes are) or unavailable.
    int64_t cpu_ns = -1;
    std::string comm;
    // Kept open for the next walk (up to max_kept_process_files in all).
    KernelFile stat, sched;
  };
  // An excluded process read on every sample.
  struct Tracked {
    KernelFile stat;
    uint64_t last_ticks = 0;  // cpu_ticks + cpu_children_ticks
  };
  // A slice of the recent past: the CPU not explained by the excluded
  // processes (core-ticks) over `elapsed_ticks` of time. Consecutive samples
  // add to the newest slice until it spans min_window / kSlicesPerWindow.
  struct Slice {
    double other_ticks = 0;
    double elapsed_ticks = 0;
  };
  // What a /proc walk saw of one competing process.
  struct ProcessCpuTime {
    int pid = 0;
    uint64_t start_ticks = 0;
    uint64_t cpu_ticks = 0;
    int64_t cpu_ns = -1;
  };
  // A /proc walk: when (host ticks, see ReadStat) and the competing processes'
  // CPU times, by pid.
  struct WalkSnapshot {
    double host_ticks = 0;
    std::vector<ProcessCpuTime> processes;
  };
  // The per-process reading of the latest attributing walk.
  struct Attribution {
    double walk_host_ticks = -1;  // -1 = none
    double window_ticks = 0;
    double competing_cores = 0;
    std::vector<ProcessCpu> top;
  };
  static constexpr int kSlicesPerWindow = 8;
  // SampleWithProcesses walks unless the last walk is less than a window /
  // this old (then it reports that walk's reading): a run's reading ends at
  // most 50 ms (of a 1 s window) before the run does, and a host that
  // competes costs at most 20 walks a second.
  static constexpr int kProcessReadingsPerWindow = 20;
  // Per-process readings need a walk between 1 and this many windows ago.
  static constexpr double kMaxProcessWindows = 2.0;
  // Host ticks are per-CPU averages of tick counters: a span compared with a
  // window may fall short of it by up to a tick from rounding alone.
  static constexpr double kTickSlack = 1.0;
  // Core-ticks by which rounding alone can move a window's unexplained CPU:
  // /proc/stat charges CPUs tick by tick, and each excluded process's utime
  // and stime are rounded down to a tick, at both ends of the window.
  static constexpr double kRoundingTicks = 4.0;

  SysfsProbeOptions options;
  // One clock tick in ns, and min_window in ticks.
  double tick_ns = 1e7;
  double window_ticks = 100;
  // Of the sample being taken (SysfsProbe reads them from /proc/stat).
  bool have_prev_host = false;
  double prev_host_ticks = 0;

  DIR* proc_dir = nullptr;
  std::mutex exclusions_mu;
  ProcessExclusions pending_exclusions;  // guarded by exclusions_mu
  bool exclusions_changed = false;       // guarded by exclusions_mu
  ProcessExclusions exclusions;
  std::map<int, Tracked> tracked;
  std::vector<Entry> entries, prev_entries;
  std::vector<int8_t> excluded_state;
  std::vector<int> chain;
  bool have_scan = false;
  int64_t scans = 0;
  std::vector<Slice> slices;  // oldest first, covering about min_window
  // The window reading of the sample being taken (core-ticks over ticks).
  double window_other_ticks = 0, window_elapsed_ticks = 0;
  std::deque<WalkSnapshot> walks;  // oldest first, at most 2 windows old
  Attribution attribution;

  ~State() {
    if (proc_dir != nullptr) closedir(proc_dir);
  }

  // --- Competing processes
  // -----------------------------------------------------------

  void SampleProcesses(HostSample* s, std::optional<double> busy_core_ticks,
                       std::optional<double> elapsed_ticks,
                       bool want_processes) {
    bool changed = false;
    {
      std::lock_guard<std::mutex> lock(exclusions_mu);
      if (exclusions_changed) {
        exclusions = pending_exclusions;
        exclusions_changed = false;
        changed = true;
      }
    }
    if (changed) {
      // Until the next walk resolves groups and descendants, track the pids.
      // The past was measured against other exclusions: start afresh.
      tracked.clear();
      for (int pid : exclusions.pids) Track(pid, std::nullopt);
      slices.clear();
      walks.clear();
      attribution = Attribution{};
    }
    const double excluded_ticks = ReadTracked();
    // After a change the window starts afresh at this sample: the past was
    // measured against other exclusions.
    if (!changed && busy_core_ticks && elapsed_ticks && *elapsed_ticks > 0) {
      // Clamped per sample: an excluded process's reaped children are charged
      // to it all at once (double counting what was seen of them alive), which
      // must not cancel other processes' CPU elsewhere in the window.
      AddSlice(std::max(0.0, *busy_core_ticks - excluded_ticks),
               *elapsed_ticks);
    }
    if (have_prev_host) ReadWindow(s);
    if (proc_dir == nullptr) return;

    // When to walk /proc: a baseline at the start and after the exclusions
    // change; then only while the unexplained CPU over the window exceeds the
    // trigger, once per window (each walk attributes the CPU since the walk a
    // window before), and for SampleWithProcesses as well unless a walk gave a
    // reading very recently.
    if (!have_scan || changed) {
      Walk(s, /*attribute=*/false);
      return;
    }
    if (!Triggered()) return;
    const double since_walk = walks.empty()
                                  ? window_ticks
                                  : prev_host_ticks - walks.back().host_ticks;
    if (since_walk + kTickSlack >= window_ticks) {
      Walk(s, /*attribute=*/true);
    } else if (want_processes) {
      if (since_walk >= window_ticks / kProcessReadingsPerWindow) {
        Walk(s, /*attribute=*/true);
      } else if (attribution.walk_host_ticks == walks.back().host_ticks) {
        Report(attribution, s);
      }
    }
  }

  void AddSlice(double other_ticks, double elapsed_ticks) {
    if (slices.empty() ||
        slices.back().elapsed_ticks >= window_ticks / kSlicesPerWindow) {
      slices.emplace_back();
    }
    slices.back().other_ticks += other_ticks;
    slices.back().elapsed_ticks += elapsed_ticks;
    // Forget what the newer slices make unnecessary.
    double total = 0;
    for (const Slice& slice : slices) total += slice.elapsed_ticks;
    while (slices.size() > 1 &&
           total - slices.front().elapsed_ticks >= window_ticks) {
      total -= slices.front().elapsed_ticks;
      slices.erase(slices.begin());
    }
  }

  // The unexplained CPU over the last min_window: the newest slices, and the
  // part of the oldest one needed to fill the window, at its average rate (a
  // slice that spans a pause in sampling, such as the gap between two leases,
  // stands for that pause's average). With less history, all there is.
  void ReadWindow(HostSample* s) {
    double other = 0, elapsed = 0;
    for (auto it = slices.rbegin();
         it != slices.rend() && elapsed < window_ticks; ++it) {
      if (it->elapsed_ticks <= 0) continue;
      const double part =
          std::min(1.0, (window_ticks - elapsed) / it->elapsed_ticks);
      other += part * it->other_ticks;
      elapsed += part * it->elapsed_ticks;
    }
    window_other_ticks = other;
    window_elapsed_ticks = elapsed;
    if (elapsed > 0) {
      s->other_cpu_cores = other / elapsed;
      s->other_cpu_window = TicksToNs(elapsed);
      s->other_cpu_rounding_cores = kRoundingTicks / elapsed;
    }
    if (elapsed + kTickSlack < window_ticks) {
      s->other_cpu_window_needed = TicksToNs(window_ticks - elapsed);
    }
  }

  std::chrono::nanoseconds TicksToNs(double ticks) const {
    return std::chrono::nanoseconds(std::llround(ticks * tick_ns));
  }

  bool Triggered() const {
    if (options.process_trigger_cores <= 0) return true;
    if (window_elapsed_ticks <= 0) return false;
    // Two ticks of slack: /proc/stat is charged per tick, process times are
    // rounded.
    return window_other_ticks >
           options.process_trigger_cores * window_elapsed_ticks + 2.0;
  }

  void Track(int pid, std::optional<uint64_t> ticks) {
    if (pid <= 0 || proc_dir == nullptr) return;
    auto it = tracked.find(pid);
    if (it != tracked.end()) {
      if (ticks) it->second.last_ticks = *ticks;
      return;
    }
    const std::string name = std::to_string(pid) + "/stat";
    Tracked t;
    t.stat = KernelFile::OpenAt(dirfd(proc_dir), name.c_str());
    if (!t.stat.valid()) return;
    if (ticks) {
      t.last_ticks = *ticks;
    } else {
      char buf[1024];
      PidStat st;
      auto text = t.stat.ReadSmall(buf, sizeof(buf));
      if (!text || !ParsePidStat(*text, &st)) return;
      t.last_ticks = st.cpu_ticks + st.cpu_children_ticks;
    }
    tracked.emplace(pid, std::move(t));
  }

  // CPU ticks the excluded processes used since the last sample, their reaped
  // children included (a job's short-lived children are charged to it when it
  // waits for them).
  double ReadTracked() {
    double ticks = 0;
    char buf[1024];
    for (auto it = tracked.begin(); it != tracked.end();) {
      PidStat st;
      auto text = it->second.stat.ReadSmall(buf, sizeof(buf));
      if (!text || !ParsePidStat(*text, &st)) {
        it = tracked.erase(it);  // exited
        continue;
      }
      const uint64_t now_ticks = st.cpu_ticks + st.cpu_children_ticks;
      if (now_ticks >= it->second.last_ticks)
        ticks += static_cast<double>(now_ticks - it->second.last_ticks);
      it->second.last_ticks = now_ticks;
      ++it;
    }
    return ticks;
  }

  // Reads every /proc/[pid]/stat (and the competing processes' schedstat),
  // records the readings as a snapshot for later walks, and re-resolves which
  // processes are excluded. With `attribute`, also attributes to each process
  // the CPU it used since the newest snapshot at least a window old.
  void Walk(HostSample* s, bool attribute) {
    ++scans;
    const bool skip_kernel_threads =
        exclusions.kernel_threads && scans % 10 != 1;
    std::swap(entries, prev_entries);
    size_t count = 0;
    int kept = 0;
    rewinddir(proc_dir);
    const int dir_fd = dirfd(proc_dir);
    char path[sizeof(dirent::d_name) + 16];
    char buf[2048];
    auto by_pid = [](const Entry& e, int pid) { return e.pid < pid; };
    while (dirent* d = readdir(proc_dir)) {
      const char c = d->d_name[0];
      if (c < '1' || c > '9') continue;
      int pid = 0;
      const char* end = d->d_name + std::strlen(d->d_name);
      if (std::from_chars(d->d_name, end, pid).ptr != end) continue;
      // Re-read the file kept from the last walk; a process that exited (and
      // any pid reused since) fails that read, and is opened afresh.
      KernelFile file, sched;
      auto prev = std::lower_bound(prev_entries.begin(), prev_entries.end(),
                                   pid, by_pid);
      const bool known = prev != prev_entries.end() && prev->pid == pid;
      if (known && prev->kernel_thread && skip_kernel_threads) {
        if (count == entries.size()) entries.emplace_back();
        // Excluded, so its figures do not matter: carried over unread.
        entries[count++] = std::move(*prev);
        continue;
      }
      if (known) {
        file = std::move(prev->stat);
        sched = std::move(prev->sched);
      }
      PidStat st;
      std::optional<std::string_view> text = file.ReadSmall(buf, sizeof(buf));
      if (!text || !ParsePidStat(*text, &st)) {
        std::snprintf(path, sizeof(path), "%s/stat", d->d_name);
        file = KernelFile::OpenAt(dir_fd, path);
        sched = KernelFile();
        text = file.ReadSmall(buf, sizeof(buf));
        if (!text || !ParsePidStat(*text, &st)) continue;  // exited meanwhile
      }
      if (count == entries.size()) entries.emplace_back();
      Entry& e = entries[count++];
      // exec changes comm: a process seen before its exec is looked at again.
      const bool same =
          known && prev->start_ticks == st.start_ticks && prev->comm == st.comm;
      e.own_binary =
          same ? prev->own_binary : IsOwnBinary(dir_fd, d->d_name, st.comm);
      e.pid = st.pid;
      e.ppid = st.ppid;
      e.pgrp = st.pgrp;
      e.kernel_thread = st.kernel_thread;
      e.cpu_ticks = st.cpu_ticks;
      e.cpu_children_ticks = st.cpu_children_ticks;
      e.start_ticks = st.start_ticks;
      e.cpu_ns = -1;
      e.comm.assign(st.comm);
      e.stat = kept < options.max_kept_process_files ? std::move(file)
                                                     : KernelFile();
      kept += e.stat.valid();
      e.sched = std::move(sched);
    }
    entries.resize(count);
    // The real /proc lists pids in ascending order; a fake tree's directory may
    // not.
    auto ascending = [](const Entry& a, const Entry& b) {
      return a.pid < b.pid;
    };
    if (!std::is_sorted(entries.begin(), entries.end(), ascending)) {
      std::sort(entries.begin(), entries.end(), ascending);
    }
    ResolveExcluded();

    // Re-track the excluded processes, keeping the descriptors of those already
    // tracked.
    std::map<int, Tracked> old = std::move(tracked);
    tracked.clear();
    for (size_t i = 0; i < entries.size(); ++i) {
      if (excluded_state[i] != kYes) continue;
      const Entry& e = entries[i];
      const uint64_t ticks = e.cpu_ticks + e.cpu_children_ticks;
      auto it = old.find(e.pid);
      if (it != old.end()) {
        it->second.last_ticks = ticks;
        tracked.emplace(e.pid, std::move(it->second));
      } else {
        Track(e.pid, ticks);
      }
    }

    // The competing processes' CPU times, in ns where schedstat has them.
    WalkSnapshot snapshot;
    snapshot.host_ticks = prev_host_ticks;
    for (size_t i = 0; i < entries.size(); ++i) {
      Entry& e = entries[i];
      if (excluded_state[i] != kNo) {
        e.sched = KernelFile();
        continue;
      }
      if (!e.sched.valid()) {
        std::snprintf(path, sizeof(path), "%d/schedstat", e.pid);
        e.sched = KernelFile::OpenAt(dir_fd, path);
      }
      std::optional<std::string_view> text =
          e.sched.ReadSmall(buf, sizeof(buf));
      if (text) {
        std::string_view rest = *text;
        if (auto ns = ParseInt(NextToken(&rest)); ns && *ns >= 0)
          e.cpu_ns = *ns;
      }
      if (kept < options.max_kept_process_files && e.sched.valid()) {
        ++kept;
      } else {
        e.sched = KernelFile();
      }
      snapshot.processes.push_back(
          {e.pid, e.start_ticks, e.cpu_ticks, e.cpu_ns});
    }
    if (attribute) Attribute(snapshot, s);
    walks.push_back(std::move(snapshot));
    // Keep the walks of the last window and the newest one before it (the
    // base of the next reading), none over kMaxProcessWindows old.
    auto age = [&](const WalkSnapshot& w) {
      return prev_host_ticks - w.host_ticks + kTickSlack;
    };
    while (walks.size() > 1 &&
           (age(walks[1]) >= window_ticks ||
            age(walks.front()) > kMaxProcessWindows * window_ticks)) {
      walks.pop_front();
    }
    // Close the files of the processes gone since the last walk.
    for (Entry& e : prev_entries) {
      e.stat = KernelFile();
      e.sched = KernelFile();
    }
    have_scan = true;
  }

  // Whether the process is one of benchfleet's own programs: by the base name
  // of its executable, or, where that cannot be read (another user's
  // process, a kernel thread), by comm, which the kernel cuts to 15
  // characters.
  bool IsOwnBinary(int dir_fd, const char* pid_name,
                   std::string_view comm) const {
    if (exclusions.own_binaries.empty()) return false;
    char path[sizeof(dirent::d_name) + 16];
    std::snprintf(path, sizeof(path), "%s/exe", pid_name);
    char target[PATH_MAX];
    const ssize_t n = readlinkat(dir_fd, path, target, sizeof(target));
    if (n > 0 && static_cast<size_t>(n) < sizeof(target)) {
      std::string_view exe(target, static_cast<size_t>(n));
      // A binary replaced while it runs (rebuilt) reads "/path (deleted)".
      constexpr std::string_view kDeleted = " (deleted)";
      if (exe.size() > kDeleted.size() &&
          exe.substr(exe.size() - kDeleted.size()) == kDeleted) {
        exe.remove_suffix(kDeleted.size());
      }
      if (const size_t slash = exe.rfind('/'); slash != std::string_view::npos)
        exe.remove_prefix(slash + 1);
      return std::find(exclusions.own_binaries.begin(),
                       exclusions.own_binaries.end(),
                       exe) != exclusions.own_binaries.end();
    }
    constexpr size_t kCommLength = 15;  // TASK_COMM_LEN - 1
    for (const std::string& name : exclusions.own_binaries) {
      if (std::string_view(name).substr(0, kCommLength) == comm) return true;
    }
    return false;
  }

  // CPU time in ns between two readings of a process (`before` null: since
  // it started). schedstat counts the main thread alone, in ns; stat's ticks
  // count every thread, each of utime and stime rounded down to a tick. Where
  // the two agree to within that rounding, the main thread is all there is
  // and the ns are exact; otherwise (other threads ran, or the kernel keeps no
  // schedstat: "0 0 0") the ticks are the truth.
  double CpuNs(const ProcessCpuTime* before, const ProcessCpuTime& now) const {
    const uint64_t before_ticks =
        before != nullptr ? std::min(before->cpu_ticks, now.cpu_ticks) : 0;
    const double from_ticks =
        static_cast<double>(now.cpu_ticks - before_ticks) * tick_ns;
    const int64_t before_ns = before != nullptr ? before->cpu_ns : 0;
    if (now.cpu_ns >= 0 && before_ns >= 0 && now.cpu_ns >= before_ns) {
      const double ns = static_cast<double>(now.cpu_ns - before_ns);
      // Two ticks of rounding, and the time between reading stat and
      // schedstat.
      if (std::abs(ns - from_ticks) <= 2 * tick_ns + 1e6) return ns;
    }
    return from_ticks;
  }

  // Attributes the CPU each competing process of `now` used since the newest
  // earlier walk at least a window (and at most kMaxProcessWindows) ago; no
  // such walk: `now` is only a baseline.
  void Attribute(const WalkSnapshot& now, HostSample* s) {
    const WalkSnapshot* base = nullptr;
    for (auto it = walks.rbegin(); it != walks.rend(); ++it) {
      const double age = now.host_ticks - it->host_ticks;
      if (age + kTickSlack < window_ticks) continue;
      if (age <= kMaxProcessWindows * window_ticks + kTickSlack) base = &*it;
      break;
    }
    if (base == nullptr) return;
    const double window = now.host_ticks - base->host_ticks;
    if (window <= 0) return;
    Attribution a;
    a.walk_host_ticks = now.host_ticks;
    a.window_ticks = window;
    const double window_ns = window * tick_ns;
    auto busier = [](const ProcessCpu& x, const ProcessCpu& y) {
      return x.cpu_cores > y.cpu_cores;
    };
    auto by_pid = [](const ProcessCpuTime& p, int pid) { return p.pid < pid; };
    size_t e = 0;  // index into entries, for comm
    for (const ProcessCpuTime& p : now.processes) {
      auto prev = std::lower_bound(base->processes.begin(),
                                   base->processes.end(), p.pid, by_pid);
      const bool same = prev != base->processes.end() && prev->pid == p.pid &&
                        prev->start_ticks == p.start_ticks;
      const double cores = CpuNs(same ? &*prev : nullptr, p) / window_ns;
      if (cores <= 0) continue;
      a.competing_cores += cores;
      if (options.top_processes == 0) continue;
      if (static_cast<int>(a.top.size()) == options.top_processes &&
          cores <= a.top.back().cpu_cores) {
        continue;
      }
      while (e < entries.size() && entries[e].pid < p.pid) ++e;
      ProcessCpu pc{p.pid, e < entries.size() ? entries[e].comm : "", cores};
      if (static_cast<int>(a.top.size()) == options.top_processes)
        a.top.pop_back();
      a.top.insert(std::upper_bound(a.top.begin(), a.top.end(), pc, busier),
                   std::move(pc));
    }
    attribution = std::move(a);
    Report(attribution, s);
  }

  void Report(const Attribution& a, HostSample* s) const {
    s->processes_scanned = true;
    s->process_window = TicksToNs(a.window_ticks);
    s->competing_cpu_cores = a.competing_cores;
    s->top_processes = a.top;
  }

  // kYes: excluded and tracked (read on every sample); kKernel: an excluded
  // kernel thread, not tracked (see ProcessExclusions::kernel_threads).
  static constexpr int8_t kUnknown = 0, kYes = 1, kNo = 2, kKernel = 3;

  bool OwnExcluded(const Entry& e) const {
    return std::find(exclusions.pids.begin(), exclusions.pids.end(), e.pid) !=
               exclusions.pids.end() ||
           std::find(exclusions.process_groups.begin(),
                     exclusions.process_groups.end(),
                     e.pgrp) != exclusions.process_groups.end();
  }

  void ResolveExcluded() {
    excluded_state.assign(entries.size(), kUnknown);
    auto find = [&](int pid) -> int {
      auto it =
          std::lower_bound(entries.begin(), entries.end(), pid,
                           [](const Entry& e, int p) { return e.pid < p; });
      return it != entries.end() && it->pid == pid
                 ? static_cast<int>(it - entries.begin())
                 : -1;
    };
    for (size_t i = 0; i < entries.size(); ++i) {
      chain.clear();
      int cur = static_cast<int>(i);
      int8_t result = kNo;
      while (true) {
        if (excluded_state[cur] != kUnknown) {
          result = excluded_state[cur];
          break;
        }
        if (OwnExcluded(entries[cur])) {
          result = kYes;
          break;
        }
        chain.push_back(cur);
        if (!exclusions.descendants || chain.size() > entries.size()) break;
        const int parent = entries[cur].ppid == entries[cur].pid
                               ? -1
                               : find(entries[cur].ppid);
        if (parent < 0) break;
        cur = parent;
      }
      for (int c : chain) excluded_state[c] = result;
      if (excluded_state[i] == kUnknown) excluded_state[i] = result;
    }
    // Not inherited by descendants, hence a second pass. A benchfleet
    // program's children are not its runs (the agent's are excluded by pid):
    // another agent's jobs on this host would compete.
    for (size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].own_binary) excluded_state[i] = kYes;
    }
    if (exclusions.kernel_threads) {
      for (size_t i = 0; i < entries.size(); ++i) {
        if (excluded_state[i] == kNo && entries[i].kernel_thread)
          excluded_state[i] = kKernel;
      }
    }
  }
};

ProcessAccounting::ProcessAccounting(SysfsProbeOptions options, double tick_ns,
                                     double window_ticks)
    : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  state_->tick_ns = tick_ns;
  state_->window_ticks = window_ticks;
}

ProcessAccounting::~ProcessAccounting() = default;

void ProcessAccounting::OpenProc(const std::string& proc_path) {
  if (state_->proc_dir != nullptr) closedir(state_->proc_dir);
  state_->proc_dir = opendir(proc_path.c_str());
}

void ProcessAccounting::SetExclusions(ProcessExclusions exclusions) {
  std::lock_guard<std::mutex> lock(state_->exclusions_mu);
  state_->pending_exclusions = std::move(exclusions);
  state_->exclusions_changed = true;
}

void ProcessAccounting::Sample(HostSample* s,
                               std::optional<double> busy_core_ticks,
                               std::optional<double> elapsed_ticks,
                               bool have_prev_host, double host_ticks,
                               bool want_processes) {
  state_->have_prev_host = have_prev_host;
  state_->prev_host_ticks = host_ticks;
  state_->SampleProcesses(s, busy_core_ticks, elapsed_ticks, want_processes);
}

int ProcessAccounting::OpenFiles() const {
  int n =
      static_cast<int>(state_->tracked.size()) + (state_->proc_dir != nullptr);
  for (const State::Entry& e : state_->entries)
    n += e.stat.valid() + e.sched.valid();
  return n;
}

int64_t ProcessAccounting::scans() const { return state_->scans; }

}  // namespace benchfleet::probe_internal
