#include "agent/runner/job_tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace benchfleet {
namespace {

// Reads a whole (small) file with plain syscalls; nullopt when it cannot be
// opened. /proc files report size 0, so read until EOF.
std::optional<std::string> ReadSmallFile(const std::string& path,
                                         size_t limit = 1 << 20) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() >= limit) break;
  }
  close(fd);
  return out;
}

// O_CREAT is harmless on cgroupfs (the files exist) and lets a fake tree in
// a plain directory stand in for it in tests; files whose existence is a
// feature test (cgroup.kill, cgroup.freeze) are written with `create` false.
bool WriteSmallFile(const std::string& path, absl::string_view text,
                    bool create = true) {
  const int fd =
      open(path.c_str(),
           O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
  if (fd < 0) return false;
  const ssize_t n = write(fd, text.data(), text.size());
  close(fd);
  return n == static_cast<ssize_t>(text.size());
}

std::vector<pid_t> ListPids(const std::string& proc_root) {
  std::vector<pid_t> pids;
  DIR* d = opendir(proc_root.c_str());
  if (d == nullptr) return pids;
  while (dirent* e = readdir(d)) {
    int pid = 0;
    if (absl::SimpleAtoi(e->d_name, &pid) && pid > 0) pids.push_back(pid);
  }
  closedir(d);
  return pids;
}

bool Alive(const std::string& proc_root, pid_t pid) {
  const std::optional<ProcStat> st = ReadProcStat(proc_root, pid);
  return st.has_value() && st->state != 'Z' && st->state != 'X';
}

// Reaps `pid` if it is our child and has exited; true when it is gone for us
// (reaped now, or not our child).
bool ReapIfDone(pid_t pid) {
  int status;
  const pid_t r = waitpid(pid, &status, WNOHANG);
  return r == pid || (r < 0 && errno == ECHILD);
}

void PauseBriefly() {
  const timespec ts = {0, 2'000'000};  // 2 ms between rounds of a sweep
  nanosleep(&ts, nullptr);
}

// The children that the job's orphans can be among. The kernel re-parents an
// orphan to the first live thread of the subreaper, its main thread, so one
// file says it all (a process of many threads, like the agent, need not read
// one file per thread after every run: this is the whole cost of a run that
// left nothing, three system calls). Every thread's list only when the main
// thread's cannot be read.
std::vector<pid_t> OrphanTargets(const std::string& proc_root, pid_t self) {
  const std::optional<std::string> text = ReadSmallFile(
      absl::StrCat(proc_root, "/", self, "/task/", self, "/children"));
  if (!text.has_value()) return ChildrenOf(proc_root, self);
  std::vector<pid_t> out;
  for (absl::string_view word : absl::StrSplit(*text, ' ', absl::SkipEmpty())) {
    int child = 0;
    if (absl::SimpleAtoi(word, &child) && child > 0) out.push_back(child);
  }
  return out;
}

}  // namespace

std::optional<ProcStat> ReadProcStat(const std::string& proc_root, pid_t pid) {
  const std::optional<std::string> text =
      ReadSmallFile(absl::StrCat(proc_root, "/", pid, "/stat"), 4096);
  if (!text.has_value()) return std::nullopt;
  // "pid (comm) state ppid pgrp ..."; comm may contain spaces and ')'.
  const size_t open_paren = text->find('(');
  const size_t close_paren = text->rfind(')');
  if (open_paren == std::string::npos || close_paren == std::string::npos ||
      close_paren < open_paren) {
    return std::nullopt;
  }
  ProcStat st;
  st.pid = pid;
  st.comm = text->substr(open_paren + 1, close_paren - open_paren - 1);
  const std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(*text).substr(close_paren + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); start time is field 22.
  if (fields.size() < 20 || fields[0].empty()) return std::nullopt;
  st.state = fields[0][0];
  int ppid = 0, pgid = 0;
  if (!absl::SimpleAtoi(fields[1], &ppid) ||
      !absl::SimpleAtoi(fields[2], &pgid) ||
      !absl::SimpleAtoi(fields[19], &st.start_ticks)) {
    return std::nullopt;
  }
  st.ppid = ppid;
  st.pgid = pgid;
  return st;
}

std::optional<std::string> ReadJobCookie(const std::string& proc_root,
                                         pid_t pid) {
  const std::optional<std::string> env =
      ReadSmallFile(absl::StrCat(proc_root, "/", pid, "/environ"));
  if (!env.has_value()) return std::nullopt;
  const std::string key = absl::StrCat(kJobCookieVar, "=");
  for (absl::string_view kv : absl::StrSplit(*env, '\0')) {
    if (absl::ConsumePrefix(&kv, key)) return std::string(kv);
  }
  return std::nullopt;
}

std::string ReadCommandLine(const std::string& proc_root, pid_t pid) {
  std::optional<std::string> cmd =
      ReadSmallFile(absl::StrCat(proc_root, "/", pid, "/cmdline"), 256);
  if (cmd.has_value()) {
    while (!cmd->empty() && cmd->back() == '\0') cmd->pop_back();
    std::replace(cmd->begin(), cmd->end(), '\0', ' ');
    if (cmd->size() > 200) cmd->resize(200);
  }
  if (cmd.has_value() && !cmd->empty()) return *cmd;
  const std::optional<ProcStat> st = ReadProcStat(proc_root, pid);
  return st.has_value() ? absl::StrCat("[", st->comm, "]") : "[gone]";
}

uint64_t BootTicksNow() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  const uint64_t hz = static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  return static_cast<uint64_t>(ts.tv_sec) * hz +
         static_cast<uint64_t>(ts.tv_nsec) / (1'000'000'000 / hz);
}

std::vector<pid_t> ChildrenOf(const std::string& proc_root, pid_t pid) {
  std::vector<pid_t> out;
  const std::string task_dir = absl::StrCat(proc_root, "/", pid, "/task");
  DIR* d = opendir(task_dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::optional<std::string> text =
        ReadSmallFile(absl::StrCat(task_dir, "/", e->d_name, "/children"));
    if (!text.has_value()) continue;
    for (absl::string_view word :
         absl::StrSplit(*text, ' ', absl::SkipEmpty())) {
      int child = 0;
      if (absl::SimpleAtoi(word, &child) && child > 0) out.push_back(child);
    }
  }
  closedir(d);
  return out;
}

std::string MakeJobCookie(absl::string_view job, pid_t owner_pid,
                          uint64_t owner_start_ticks, uint64_t serial) {
  return absl::StrCat(job, "@", owner_pid, ".", owner_start_ticks, ".", serial);
}

std::optional<CookieOwner> ParseCookieOwner(absl::string_view cookie) {
  const size_t at = cookie.rfind('@');
  if (at == absl::string_view::npos) return std::nullopt;
  const std::vector<absl::string_view> parts =
      absl::StrSplit(cookie.substr(at + 1), '.');
  CookieOwner owner;
  int pid = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &pid) ||
      !absl::SimpleAtoi(parts[1], &owner.start_ticks) ||
      !absl::SimpleAtoi(parts[2], &owner.serial)) {
    return std::nullopt;
  }
  owner.pid = pid;
  return owner;
}

bool CookieOwnerAlive(const std::string& proc_root, const CookieOwner& owner) {
  const std::optional<ProcStat> st = ReadProcStat(proc_root, owner.pid);
  return st.has_value() && st->state != 'Z' &&
         st->start_ticks == owner.start_ticks;
}

bool BecomeChildSubreaper() {
  return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
}

// ---- cgroup v2 ----

bool ParseByteSize(const std::string& text, int64_t* out) {
  if (text.empty()) return true;
  absl::string_view digits = text;
  int64_t scale = 1;
  switch (digits.back()) {
    case 'T':
      scale <<= 10;
      [[fallthrough]];
    case 'G':
      scale <<= 10;
      [[fallthrough]];
    case 'M':
      scale <<= 10;
      [[fallthrough]];
    case 'K':
      scale <<= 10;
      digits.remove_suffix(1);
      break;
    default:
      break;
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(digits, &value) || value <= 0 ||
      value > INT64_MAX / scale) {
    return false;
  }
  *out = value * scale;
  return true;
}

std::optional<std::string> JobCgroup::Parent(const CgroupOptions& options) {
  struct stat st;
  if (stat(absl::StrCat(options.root, "/cgroup.controllers").c_str(), &st) !=
      0) {
    return std::nullopt;  // not cgroup v2 (or not mounted there)
  }
  std::string relative = options.parent;
  if (relative.empty()) {
    const std::optional<std::string> self =
        ReadSmallFile(options.self_cgroup_file, 64 * 1024);
    if (!self.has_value()) return std::nullopt;
    for (absl::string_view line : absl::StrSplit(*self, '\n')) {
      if (absl::ConsumePrefix(&line, "0::")) relative = std::string(line);
    }
    if (relative.empty()) return std::nullopt;
  }
  absl::string_view trimmed = relative;
  absl::ConsumePrefix(&trimmed, "/");
  const std::string parent =
      trimmed.empty() ? options.root : absl::StrCat(options.root, "/", trimmed);
  if (access(parent.c_str(), W_OK) != 0) return std::nullopt;
  return parent;
}

absl::StatusOr<std::unique_ptr<JobCgroup>> JobCgroup::Create(
    const std::string& parent, const std::string& name,
    const CgroupOptions& options) {
  const std::string path = absl::StrCat(parent, "/", name);
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create the job's cgroup ", path, ": ", strerror(errno)));
  }
  auto limit = [&](const char* file, int64_t value,
                   const char* controller) -> absl::Status {
    if (value <= 0) return absl::OkStatus();
    // The parent must hand the controller down; enabling it is harmless when
    // it already is.
    WriteSmallFile(absl::StrCat(parent, "/cgroup.subtree_control"),
                   absl::StrCat("+", controller));
    const std::string target = absl::StrCat(path, "/", file);
    if (!WriteSmallFile(target, absl::StrCat(value))) {
      const int e = errno;
      rmdir(path.c_str());
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot set ", file, " of the job's cgroup (", target,
          "): ", strerror(e), "; the cgroup parent ", parent, " must have the ",
          controller,
          " controller delegated (set cgroup_parent to such a cgroup) or "
          "leave the job limits unset"));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = limit("memory.max", options.memory_max_bytes, "memory");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = limit("pids.max", options.pids_max, "pids"); !s.ok()) {
    return s;
  }
  const int fd = open(absl::StrCat(path, "/cgroup.procs").c_str(),
                      O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int e = errno;
    rmdir(path.c_str());
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, "/cgroup.procs: ", strerror(e)));
  }
  return std::unique_ptr<JobCgroup>(new JobCgroup(path, fd));
}

JobCgroup::~JobCgroup() {
  if (procs_fd_ >= 0) close(procs_fd_);
}

absl::Status JobCgroup::KillAndRemove(const std::string& path,
                                      absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  const std::string procs = absl::StrCat(path, "/cgroup.procs");
  auto members = [&]() {
    std::vector<pid_t> pids;
    const std::optional<std::string> text = ReadSmallFile(procs);
    if (!text.has_value()) return pids;
    for (absl::string_view w : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      int pid = 0;
      if (absl::SimpleAtoi(w, &pid) && pid > 0 && Alive("/proc", pid))
        pids.push_back(pid);
    }
    return pids;
  };
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::OkStatus();  // already gone
  const bool has_kill =
      WriteSmallFile(absl::StrCat(path, "/cgroup.kill"), "1", false);
  std::set<pid_t> signalled;
  for (;;) {
    std::vector<pid_t> left = members();
    if (left.empty()) break;
    signalled.insert(left.begin(), left.end());
    if (!has_kill) {
      // Frozen, no member can fork while we signal them one by one.
      WriteSmallFile(absl::StrCat(path, "/cgroup.freeze"), "1", false);
      for (pid_t pid : left) kill(pid, SIGKILL);
      WriteSmallFile(absl::StrCat(path, "/cgroup.freeze"), "0", false);
    }
    for (pid_t pid : left) ReapIfDone(pid);
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the job's cgroup ", path, " still has ", left.size(),
                       " process(es) after SIGKILL"));
    }
    PauseBriefly();
  }
  for (pid_t pid : signalled) ReapIfDone(pid);  // those that were ours
  // rmdir can fail with EBUSY for a moment after the last member left.
  while (rmdir(path.c_str()) != 0 && absl::Now() < deadline) {
    if (errno == ENOTEMPTY) {
      // A fake tree (tests) holds plain files; cgroupfs never gets here
      // (its interface files do not count, and cannot be unlinked).
      if (DIR* d = opendir(path.c_str())) {
        while (dirent* e = readdir(d)) {
          if (e->d_name[0] != '.')
            unlink(absl::StrCat(path, "/", e->d_name).c_str());
        }
        closedir(d);
      }
      if (rmdir(path.c_str()) == 0) break;
    }
    if (errno != EBUSY && errno != ENOTEMPTY) break;
    PauseBriefly();
  }
  if (stat(path.c_str(), &st) == 0) {
    return absl::InternalError(absl::StrCat("cannot remove the job's cgroup ",
                                            path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

// ---- sweeps ----

LeftoverResult KillJobLeftovers(const LeftoverSweep& sweep) {
  LeftoverResult result;
  const pid_t self = getpid();
  const pid_t own_pgid = getpgrp();
  const absl::Time deadline = absl::Now() + sweep.timeout;
  std::set<pid_t> signalled;
  bool scan = sweep.scan_all;
  auto note_kill = [&](pid_t pid) {
    if (signalled.insert(pid).second) {
      result.killed.push_back({pid, ReadCommandLine(sweep.proc_root, pid)});
    }
  };
  for (;;) {
    bool left = false;
    // Our children: the subreaper brings a job's orphans here.
    for (pid_t child : OrphanTargets(sweep.proc_root, self)) {
      const std::optional<ProcStat> st = ReadProcStat(sweep.proc_root, child);
      if (!st.has_value()) continue;
      const bool zombie = st->state == 'Z';
      const std::optional<std::string> cookie =
          zombie ? std::nullopt : ReadJobCookie(sweep.proc_root, child);
      if (sweep.spare && sweep.spare(child, cookie)) continue;
      const bool ours = cookie.has_value() && *cookie == sweep.cookie;
      if (!ours && st->start_ticks < sweep.started_ticks) continue;
      // A child the agent's own code started (it stays in our process group;
      // every job process is in the job's group or one it made) is its
      // starter's to wait for, not an orphan.
      if (!ours && st->pgid == own_pgid) continue;
      if (!zombie) {
        if (sweep.leader_pgid == 0 || st->pgid != sweep.leader_pgid) {
          note_kill(child);
          scan = true;  // it escaped the group: look for its kin too
        }
        // Its own group first (a daemon that called setsid leads one).
        if (st->pgid == child) kill(-child, SIGKILL);
        kill(child, SIGKILL);
      }
      // Reaped or not, look again: the orphans of a process are ours from
      // the moment it exits, so a pass that reaped one may have new ones.
      ReapIfDone(child);
      left = true;
    }
    // Anything else carrying the cookie (only when something escaped the
    // group: on the common path the children list is all there is to read).
    if (scan) {
      for (pid_t pid : ListPids(sweep.proc_root)) {
        if (pid == self) continue;
        const std::optional<std::string> cookie =
            ReadJobCookie(sweep.proc_root, pid);
        if (!cookie.has_value() || *cookie != sweep.cookie) continue;
        if (!Alive(sweep.proc_root, pid)) continue;
        note_kill(pid);
        kill(pid, SIGKILL);
        left = true;
      }
    }
    if (!left) break;
    if (absl::Now() >= deadline) {
      for (pid_t pid : signalled) {
        if (Alive(sweep.proc_root, pid)) result.survivors.push_back(pid);
      }
      break;
    }
    PauseBriefly();
  }
  return result;
}

std::string FormatJobRecord(const JobRecord& r) {
  return absl::StrCat(
      "agent_pid ", r.agent_pid, "\nagent_start_ticks ", r.agent_start_ticks,
      "\ncookie ", r.cookie, "\ncgroup ", r.cgroup, "\n",
      r.leader_pid > 0
          ? absl::StrCat("leader_pid ", r.leader_pid, "\nleader_start_ticks ",
                         r.leader_start_ticks, "\n")
          : "");
}

JobRecord ParseJobRecord(absl::string_view text) {
  JobRecord r;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t sp = line.find(' ');
    if (sp == absl::string_view::npos) continue;
    const absl::string_view key = line.substr(0, sp);
    const absl::string_view value = line.substr(sp + 1);
    int pid = 0;
    if (key == "agent_pid" && absl::SimpleAtoi(value, &pid)) r.agent_pid = pid;
    if (key == "agent_start_ticks")
      (void)absl::SimpleAtoi(value, &r.agent_start_ticks);
    if (key == "cookie") r.cookie = std::string(value);
    if (key == "cgroup") r.cgroup = std::string(value);
    if (key == "leader_pid" && absl::SimpleAtoi(value, &pid))
      r.leader_pid = pid;
    if (key == "leader_start_ticks")
      (void)absl::SimpleAtoi(value, &r.leader_start_ticks);
  }
  return r;
}

std::string JobRecordPath(const std::string& agent_workdir) {
  return absl::StrCat(agent_workdir, "/running-job");
}

StartupSweepResult SweepLeftoverJobs(const StartupSweep& sweep) {
  StartupSweepResult result;
  const pid_t self = getpid();
  std::optional<JobRecord> record;
  if (!sweep.record_path.empty()) {
    if (std::optional<std::string> text = ReadSmallFile(sweep.record_path)) {
      record = ParseJobRecord(*text);
      result.had_record = true;
      if (record->agent_pid == self ||
          CookieOwnerAlive(sweep.proc_root,
                           {record->agent_pid, record->agent_start_ticks, 0})) {
        record.reset();  // a live agent's job: not ours to touch
      }
    }
  }
  if (record.has_value() && !record->cgroup.empty()) {
    absl::Status s = JobCgroup::KillAndRemove(record->cgroup, sweep.timeout);
    if (s.ok()) {
      result.cgroup_removed = record->cgroup;
    } else {
      result.cgroup_error = std::string(s.message());
    }
  }
  const absl::Time deadline = absl::Now() + sweep.timeout;
  std::set<pid_t> signalled;
  for (;;) {
    bool left = false;
    auto take = [&](pid_t pid) {
      if (signalled.insert(pid).second) {
        result.killed.push_back({pid, ReadCommandLine(sweep.proc_root, pid)});
      }
      kill(pid, SIGKILL);
      ReapIfDone(pid);  // re-parented to us if we are a subreaper
      left = true;
    };
    if (record.has_value() && record->leader_pid > 0) {
      const std::optional<ProcStat> st =
          ReadProcStat(sweep.proc_root, record->leader_pid);
      if (st.has_value() && st->state != 'Z' &&
          st->start_ticks == record->leader_start_ticks) {
        take(record->leader_pid);
      }
    }
    for (pid_t pid : ListPids(sweep.proc_root)) {
      if (pid == self) continue;
      const std::optional<std::string> cookie =
          ReadJobCookie(sweep.proc_root, pid);
      if (!cookie.has_value()) continue;
      const bool recorded = record.has_value() && *cookie == record->cookie;
      if (!recorded && (sweep.cookie_prefix.empty() ||
                        cookie->rfind(sweep.cookie_prefix, 0) != 0)) {
        continue;
      }
      const std::optional<CookieOwner> owner = ParseCookieOwner(*cookie);
      if (!recorded && owner.has_value() &&
          (owner->pid == self || CookieOwnerAlive(sweep.proc_root, *owner))) {
        continue;  // a job of a running agent
      }
      if (!Alive(sweep.proc_root, pid)) continue;
      take(pid);
    }
    if (!left) break;
    if (absl::Now() >= deadline) {
      for (pid_t pid : signalled) {
        if (Alive(sweep.proc_root, pid)) result.survivors.push_back(pid);
      }
      break;
    }
    PauseBriefly();
  }
  if (result.had_record && result.survivors.empty() &&
      result.cgroup_error.empty() && record.has_value()) {
    unlink(sweep.record_path.c_str());
  }
  return result;
}

}  // namespace benchfleet
