// PosixProcessRunner and the runner's helpers (digests, metric extraction).
// Longer than ~700 lines on purpose: spawn, pipes, drain, timeout/cancel kill
// and reap of one process group are one state machine over the same file
// descriptors and pids, and its invariants (no fd leaked into a concurrent
// spawn, every child reaped, the drain bounded) are easier to keep in one
// file than across several.
#include "agent/runner/process_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS (fixed in 2.37): declare it C
// by hand.
extern "C" {
#include <sys/pidfd.h>
}

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/metric_regex.h"
#include "common/status_macros.h"
#include "re2/re2.h"

namespace benchfleet {
namespace {

constexpr size_t kHeadBytes = 64 * 1024;
constexpr size_t kReadChunk = 64 * 1024;
constexpr char kDefaultPath[] =
    "/bin:/usr/bin";  // what execvp uses without PATH

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t TimevalNs(const timeval& tv) {
  return int64_t{tv.tv_sec} * 1'000'000'000 + int64_t{tv.tv_usec} * 1000;
}

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r: returns a pointer that may or may not be `buf`.
  return strerror_r(err, buf, sizeof buf);
}

// Closes its descriptor on destruction; the way every fd in a run is held, so
// no early return leaks one.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  void Reset(int fd = -1) {
    if (fd_ >= 0)
      close(fd_);  // Linux closes the fd even on EINTR: never retry close.
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// The calling thread's posix_spawn file actions, freed on scope exit.
// The file actions of a spawn: stdin <- /dev/null (or the pre-opened fd),
// stdout/stderr <- the pipes' write ends, chdir, close everything above 2.
// glibc validates every fd added (a getrlimit syscall each, ~9 us per run on
// the benchmark VM), yet a run loop gets the same fd numbers run after run: so
// each thread keeps the actions it built last and reuses them while the
// numbers and the cwd are the same. Only the numbers are recorded, and they
// name this run's descriptors when posix_spawn executes the actions, so a
// reused entry is exactly what a fresh one would be. Not thread-safe: one per
// thread (see ThreadFileActions).
class SpawnFileActions {
 public:
  SpawnFileActions() = default;
  SpawnFileActions(const SpawnFileActions&) = delete;
  SpawnFileActions& operator=(const SpawnFileActions&) = delete;
  ~SpawnFileActions() { Clear(); }

  // Returns actions for these descriptors and cwd, or nullptr when building
  // them failed (out of memory, or an fd beyond RLIMIT_NOFILE).
  const posix_spawn_file_actions_t* Get(int devnull_fd, int out_w, int err_w,
                                        const std::string& cwd) {
    if (valid_ && devnull_fd == devnull_fd_ && out_w == out_w_ &&
        err_w == err_w_ && cwd == cwd_) {
      return &actions_;
    }
    Clear();
    if (posix_spawn_file_actions_init(&actions_) != 0) return nullptr;
    valid_ = true;
    posix_spawn_file_actions_t* fa = &actions_;
    int rc = 0;
    if (!cwd.empty())
      rc |= posix_spawn_file_actions_addchdir_np(fa, cwd.c_str());
    rc |= devnull_fd >= 0
              ? posix_spawn_file_actions_adddup2(fa, devnull_fd, STDIN_FILENO)
              : posix_spawn_file_actions_addopen(fa, STDIN_FILENO, "/dev/null",
                                                 O_RDONLY, 0);
    rc |= posix_spawn_file_actions_adddup2(fa, out_w, STDOUT_FILENO);
    rc |= posix_spawn_file_actions_adddup2(fa, err_w, STDERR_FILENO);
    // Descriptors other libraries in the agent opened without O_CLOEXEC must
    // not reach the benchmark (one could hold another run's pipe open).
    rc |= posix_spawn_file_actions_addclosefrom_np(fa, STDERR_FILENO + 1);
    if (rc != 0) {
      Clear();
      return nullptr;
    }
    devnull_fd_ = devnull_fd;
    out_w_ = out_w;
    err_w_ = err_w;
    cwd_ = cwd;
    return &actions_;
  }

 private:
  void Clear() {
    if (valid_) posix_spawn_file_actions_destroy(&actions_);
    valid_ = false;
  }

  posix_spawn_file_actions_t actions_;
  bool valid_ = false;
  int devnull_fd_ = -1, out_w_ = -1, err_w_ = -1;
  std::string cwd_;
};

SpawnFileActions& ThreadFileActions() {
  thread_local SpawnFileActions actions;
  return actions;
}

class DigestCtx {
 public:
  DigestCtx() : ctx_(EVP_MD_CTX_new()) {}
  ~DigestCtx() { EVP_MD_CTX_free(ctx_); }
  DigestCtx(const DigestCtx&) = delete;
  DigestCtx& operator=(const DigestCtx&) = delete;
  EVP_MD_CTX* get() const { return ctx_; }

 private:
  EVP_MD_CTX* ctx_;
};

std::string Hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

std::string FinalHex(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, md, &len) != 1) return "";
  return Hex(md, len);
}

absl::Status ErrnoStatus(int err, std::string message) {
  absl::StatusCode code;
  switch (err) {
    case ENOENT:
      code = absl::StatusCode::kNotFound;
      break;
    case EACCES:
    case EPERM:
      code = absl::StatusCode::kPermissionDenied;
      break;
    case ENOTDIR:
    case ENOEXEC:
    case E2BIG:
    case ENAMETOOLONG:
    case ELOOP:
    case EINVAL:
      code = absl::StatusCode::kInvalidArgument;
      break;
    case EMFILE:
    case ENFILE:
    case EAGAIN:
    case ENOMEM:
      code = absl::StatusCode::kResourceExhausted;
      break;
    default:
      code = absl::StatusCode::kInternal;
  }
  return absl::Status(code, absl::StrCat(message, ": ", ErrnoText(err)));
}

// "program 'x' (cwd '/y')" — the tail every error message of a run ends with.
std::string Where(const RunRequest& request) {
  return absl::StrCat("program '", request.argv.empty() ? "" : request.argv[0],
                      "' (cwd '", request.cwd.empty() ? "." : request.cwd,
                      "')");
}

std::string JoinCwd(const std::string& cwd, const std::string& path) {
  if (cwd.empty() || (!path.empty() && path[0] == '/')) return path;
  return absl::StrCat(cwd, "/", path);
}

// execvp-style lookup of argv[0] in the PATH of the child's environment. The
// returned path is what execve gets; a relative one resolves in the child's
// cwd, after the chdir.
absl::StatusOr<std::string> ResolveProgram(const RunRequest& request) {
  const std::string& program = request.argv[0];
  if (program.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty argv[0]; cwd '", request.cwd, "'"));
  }
  if (program.find('/') != std::string::npos) return program;
  absl::string_view path_var = kDefaultPath;
  for (const std::string& kv : request.env) {
    if (kv.rfind("PATH=", 0) == 0) path_var = absl::string_view(kv).substr(5);
  }
  bool saw_not_executable = false;
  for (absl::string_view dir : absl::StrSplit(path_var, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", program);
    const std::string check = JoinCwd(request.cwd, candidate);
    struct stat st;
    if (stat(check.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (access(check.c_str(), X_OK) == 0) return candidate;
    saw_not_executable = true;
  }
  if (saw_not_executable) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot run ", Where(request), ": found in PATH '",
                     path_var, "' but not executable"));
  }
  return absl::NotFoundError(
      absl::StrCat("cannot run ", Where(request), ": not found in PATH '",
                   path_var, "'; give a path or fix PATH in the step's env"));
}

absl::Status ValidateCwd(const RunRequest& request) {
  if (request.cwd.empty()) return absl::OkStatus();
  struct stat st;
  if (stat(request.cwd.c_str(), &st) != 0) {
    return ErrnoStatus(
        errno, absl::StrCat("cannot run ", Where(request), ": bad cwd"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot run ", Where(request), ": cwd is not a directory"));
  }
  return absl::OkStatus();
}

// One output stream of the child: pipe read end -> digest, bounded capture
// file, head. Lives on Run's stack; the poll loop only calls Read(), which does
// not allocate except for the one-time growth of the head string.
struct Stream {
  Fd pipe;  // parent's read end; reset at EOF
  Fd file;  // capture file, or -1
  DigestCtx digest;
  std::string* head = nullptr;  // stdout only
  size_t head_limit = 0;
  int64_t max_keep = 0;
  int64_t bytes = 0;
  int64_t kept = 0;
  int file_errno = 0;

  bool open() const { return pipe.get() >= 0; }

  void Consume(const char* data, size_t n) {
    EVP_DigestUpdate(digest.get(), data, n);
    bytes += static_cast<int64_t>(n);
    if (kept >= max_keep) return;
    const size_t keep =
        static_cast<size_t>(std::min<int64_t>(n, max_keep - kept));
    kept += static_cast<int64_t>(keep);
    if (head != nullptr && head->size() < head_limit) {
      head->append(data, std::min(keep, head_limit - head->size()));
    }
    if (file.get() < 0 || file_errno != 0) return;
    for (size_t off = 0; off < keep;) {
      const ssize_t w = write(file.get(), data + off, keep - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        file_errno = errno;
        return;
      }
      off += static_cast<size_t>(w);
    }
  }

  // One read after poll reported the pipe ready; never blocks.
  void Read(char* buf, size_t size) {
    ssize_t n;
    do {
      n = read(pipe.get(), buf, size);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      Consume(buf, static_cast<size_t>(n));
    } else {
      pipe.Reset();  // EOF, or an error that no later read would fix
    }
  }
};

// Drains the still-open pipes until EOF or until `deadline_ns`. Returns false
// if a pipe was still open at the deadline (a process outside the group holds
// it).
bool Drain(Stream* streams[2], int64_t deadline_ns, char* buf, size_t size) {
  while (streams[0]->open() || streams[1]->open()) {
    const int64_t left_ns = deadline_ns - MonotonicNs();
    if (left_ns <= 0) return false;
    pollfd fds[2] = {{streams[0]->pipe.get(), POLLIN, 0},
                     {streams[1]->pipe.get(), POLLIN, 0}};
    const timespec ts = {static_cast<time_t>(left_ns / 1'000'000'000),
                         static_cast<long>(left_ns % 1'000'000'000)};
    const int r = ppoll(fds, 2, &ts, nullptr);
    if (r < 0 && errno != EINTR) return false;
    for (int i = 0; i < 2; ++i) {
      if (r > 0 && fds[i].revents != 0) streams[i]->Read(buf, size);
    }
  }
  return true;
}

absl::Status OpenCapture(const std::string& path, const RunRequest& request,
                         Fd* out) {
  if (path.empty()) return absl::OkStatus();
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return ErrnoStatus(
        errno, absl::StrCat("cannot run ", Where(request),
                            ": cannot create capture file '", path, "'"));
  }
  out->Reset(fd);
  return absl::OkStatus();
}

// Moves `fd` above stderr if it landed on 0..2 (an agent that runs detached
// may have closed its standard streams): the spawn's dup2 onto 0..2 must never
// clobber one of its own sources. Keeps O_CLOEXEC.
int AboveStdio(int fd) {
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  const int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  close(fd);
  return moved;
}

absl::Status MakePipe(const RunRequest& request, Fd* read_end, Fd* write_end) {
  int fds[2];
  // O_CLOEXEC on both ends, atomically: a spawn on another thread never
  // inherits them; the child gets its write end through dup2, which clears the
  // flag on the copy.
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return ErrnoStatus(errno,
                       absl::StrCat("cannot run ", Where(request), ": pipe2"));
  }
  read_end->Reset(AboveStdio(fds[0]));
  write_end->Reset(AboveStdio(fds[1]));
  if (read_end->get() < 0 || write_end->get() < 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot run ", Where(request),
                                           ": moving pipe above stderr"));
  }
  return absl::OkStatus();
}

// Restores the calling thread's CPU affinity when it leaves scope.
class ScopedThreadAffinity {
 public:
  ScopedThreadAffinity() = default;
  ScopedThreadAffinity(const ScopedThreadAffinity&) = delete;
  ScopedThreadAffinity& operator=(const ScopedThreadAffinity&) = delete;
  ~ScopedThreadAffinity() { Restore(); }

  absl::Status Set(const std::vector<int>& cpus, const RunRequest& request) {
    cpu_set_t want;
    CPU_ZERO(&want);
    for (int cpu : cpus) {
      if (cpu < 0 || cpu >= CPU_SETSIZE) {
        return absl::InvalidArgumentError(absl::StrCat(
            "cannot run ", Where(request), ": cpu ", cpu, " out of range"));
      }
      CPU_SET(cpu, &want);
    }
    if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) {
      return ErrnoStatus(errno, absl::StrCat("cannot run ", Where(request),
                                             ": sched_getaffinity"));
    }
    if (sched_setaffinity(0, sizeof want, &want) != 0) {
      return ErrnoStatus(errno,
                         absl::StrCat("cannot run ", Where(request), ": cpus {",
                                      absl::StrJoin(cpus, ","),
                                      "} not usable (sched_setaffinity)"));
    }
    active_ = true;
    return absl::OkStatus();
  }

  void Restore() {
    if (active_) sched_setaffinity(0, sizeof saved_, &saved_);
    active_ = false;
  }

 private:
  cpu_set_t saved_;
  bool active_ = false;
};

// Reaps `pid`, retrying on EINTR. Returns false only if the child is not ours
// to reap (e.g. the agent set SIGCHLD to SIG_IGN, which makes the kernel reap
// it).
bool Reap(pid_t pid, int* status, rusage* usage) {
  for (;;) {
    const pid_t r = wait4(pid, status, 0, usage);
    if (r == pid) return true;
    if (r < 0 && errno == EINTR) continue;
    return false;
  }
}

// ---- Runs in flight, process-wide ----
// The subreaper makes every orphan of every job a child of this process, so
// the end-of-run sweep looks at all of this process's children: it must
// never reap the leader of another run still in flight (that run's wait4
// would fail), nor kill another live run's escaped daemon. A process-wide
// table (the subreaper is process-wide too) of fixed size, lock-free, so a
// spawn in the timed section only stores a pid.
constexpr int kMaxRunsInFlight = 256;
struct InFlight {
  std::atomic<uint64_t> serial{0};  // 0 = free slot
  std::atomic<pid_t> leader{0};
};
InFlight g_in_flight[kMaxRunsInFlight];
// Spawns between clone and registering their leader: a sweep leaves
// unregistered zombies alone while this is non-zero (checked before it looks
// up the table, so a leader it saw is registered by then).
std::atomic<int> g_spawning{0};
std::atomic<uint64_t> g_next_serial{1};

// A slot for one run; released in the destructor.
class InFlightSlot {
 public:
  InFlightSlot() {
    serial_ = g_next_serial.fetch_add(1);
    for (int i = 0; i < kMaxRunsInFlight; ++i) {
      uint64_t free_slot = 0;
      if (g_in_flight[i].serial.compare_exchange_strong(free_slot, serial_)) {
        slot_ = &g_in_flight[i];
        return;
      }
    }
  }
  ~InFlightSlot() {
    if (slot_ != nullptr) {
      slot_->leader.store(0);
      slot_->serial.store(0);
    }
  }
  InFlightSlot(const InFlightSlot&) = delete;
  InFlightSlot& operator=(const InFlightSlot&) = delete;
  bool ok() const { return slot_ != nullptr; }
  uint64_t serial() const { return serial_; }
  void SetLeader(pid_t pid) {
    if (slot_ != nullptr) slot_->leader.store(pid);
  }

 private:
  uint64_t serial_ = 0;
  InFlight* slot_ = nullptr;
};

// True for a child the sweep of run `my_serial` must leave alone: a leader of
// another run in flight (or any unregistered child while a spawn is under
// way), or a process carrying the cookie of another run of ours in flight.
bool SpareForOtherRuns(pid_t pid, const std::optional<std::string>& cookie,
                       uint64_t my_serial, pid_t self, uint64_t self_start) {
  if (g_spawning.load() != 0) return true;
  for (const InFlight& f : g_in_flight) {
    if (f.leader.load() == pid) return true;
  }
  if (!cookie.has_value()) return false;
  const std::optional<CookieOwner> owner = ParseCookieOwner(*cookie);
  if (!owner.has_value() || owner->pid != self ||
      owner->start_ticks != self_start || owner->serial == my_serial) {
    return false;
  }
  for (const InFlight& f : g_in_flight) {
    if (f.serial.load() == owner->serial) return true;
  }
  return false;
}

// ---- The clone child (user switch, cgroup) ----
// What the child of CloneSpawn does, in order; reported with its errno when
// a step fails (the child then exits 127 without exec).
enum ChildStage {
  kStageNone = 0,
  kStagePgid,
  kStageCgroup,
  kStageUser,
  kStageChdir,
  kStageStdio,
  kStageExec,
};

// Everything the child needs. It shares the parent's memory (CLONE_VM) and
// the parent is suspended until exec or exit (CLONE_VFORK), so it reads this
// from the parent's stack and writes `stage`/`err` back.
struct CloneChildArgs {
  const char* program;
  char* const* argv;
  char* const* envp;
  const char* cwd;  // nullptr: stay
  int stdin_fd;     // -1: open /dev/null
  int out_fd, err_fd;
  int cgroup_fd;        // cgroup.procs, or -1
  const JobUser* user;  // nullptr: no switch
  int stage = kStageNone;
  int err = 0;
};

// Runs in the vfork-style child: only raw system calls and async-signal-safe
// functions. The credentials change through syscall(), not glibc's setresuid:
// glibc would broadcast it to the parent's threads, whose memory this child
// shares.
int CloneChildMain(void* arg) {
  CloneChildArgs* a = static_cast<CloneChildArgs*>(arg);
  auto fail = [a](int stage) {
    a->err = errno;
    a->stage = stage;
    _exit(127);
  };
  // Default dispositions first: a handler of the agent must never run in
  // this child (the parent blocked all signals around the clone).
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  if (setpgid(0, 0) != 0) fail(kStagePgid);
  if (a->cgroup_fd >= 0) {
    char digits[24];
    int n = 0;
    for (long v = syscall(SYS_getpid); v > 0; v /= 10) {
      digits[n++] = static_cast<char>('0' + v % 10);
    }
    char text[24];
    for (int i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
    if (write(a->cgroup_fd, text, static_cast<size_t>(n)) != n)
      fail(kStageCgroup);
  }
  if (a->user != nullptr) {
    if (syscall(SYS_setgroups, a->user->groups.size(),
                a->user->groups.data()) != 0 ||
        syscall(SYS_setresgid, a->user->gid, a->user->gid, a->user->gid) != 0 ||
        syscall(SYS_setresuid, a->user->uid, a->user->uid, a->user->uid) != 0) {
      fail(kStageUser);
    }
  }
  if (a->cwd != nullptr && chdir(a->cwd) != 0) fail(kStageChdir);
  const int in_fd =
      a->stdin_fd >= 0 ? a->stdin_fd : open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (in_fd < 0 || dup2(in_fd, STDIN_FILENO) < 0 ||
      dup2(a->out_fd, STDOUT_FILENO) < 0 ||
      dup2(a->err_fd, STDERR_FILENO) < 0) {
    fail(kStageStdio);
  }
  close_range(STDERR_FILENO + 1, ~0U, 0);
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  execve(a->program, a->argv, a->envp);
  fail(kStageExec);
  return 127;
}

// Writes the job record file (before the spawn) and, once the run has lasted
// a while, the leader's pid (never inside a short run's timed window).
class RecordFile {
 public:
  RecordFile() = default;
  RecordFile(const RecordFile&) = delete;
  RecordFile& operator=(const RecordFile&) = delete;
  ~RecordFile() { Remove(); }

  // Best effort: a record that cannot be written only weakens the restart
  // sweep (the cookie scan still finds the job).
  void Write(const std::string& path, const JobRecord& record) {
    path_ = path;
    fd_.Reset(
        open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd_.get() < 0) return;
    const std::string text = FormatJobRecord(record);
    if (write(fd_.get(), text.data(), text.size()) !=
        static_cast<ssize_t>(text.size())) {
      fd_.Reset();
    }
  }
  bool wants_leader() const { return fd_.get() >= 0 && !leader_written_; }
  void AddLeader(pid_t pid) {
    leader_written_ = true;
    const std::optional<ProcStat> st = ReadProcStat("/proc", pid);
    if (!st.has_value()) return;
    const std::string text = absl::StrCat(
        "leader_pid ", pid, "\nleader_start_ticks ", st->start_ticks, "\n");
    (void)!write(fd_.get(), text.data(), text.size());
  }
  // Leaves the file in place (something survived: the next start-up sweep
  // tries again).
  void Keep() {
    fd_.Reset();
    path_.clear();
  }
  void Remove() {
    fd_.Reset();
    if (!path_.empty()) unlink(path_.c_str());
    path_.clear();
  }

 private:
  std::string path_;
  Fd fd_;
  bool leader_written_ = false;
};

}  // namespace

PosixProcessRunner::PosixProcessRunner(PosixProcessRunnerOptions options)
    : options_(std::move(options)) {
  // Opened once so a child's stdin is a dup2, not a path lookup, in the timed
  // spawn. Close-on-exec: it only reaches a child through that dup2.
  devnull_fd_ = AboveStdio(open("/dev/null", O_RDONLY | O_CLOEXEC));

  // Signal state is reset for the child: empty mask, every disposition default
  // (the agent may ignore SIGPIPE, for example; exec only resets caught
  // signals). glibc's spawn already makes one sigaction call per signal in the
  // child, so SETSIGDEF for all of them costs nothing extra. The attributes
  // are plain data, built once and only read by posix_spawn afterwards.
  posix_spawnattr_init(&spawn_attr_);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setflags(&spawn_attr_, POSIX_SPAWN_SETPGROUP |
                                             POSIX_SPAWN_SETSIGMASK |
                                             POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&spawn_attr_, 0);  // own process group, pgid = pid
  posix_spawnattr_setsigmask(&spawn_attr_, &empty);
  posix_spawnattr_setsigdefault(&spawn_attr_, &all);

  // Orphans of the jobs come to us, not to init (see job_tree.h).
  subreaper_ = BecomeChildSubreaper();
  self_pid_ = getpid();
  if (const std::optional<ProcStat> st = ReadProcStat("/proc", self_pid_)) {
    self_start_ticks_ = st->start_ticks;
  }
  if (options_.use_cgroups) {
    cgroup_parent_ = JobCgroup::Parent(options_.cgroup).value_or("");
  }

  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (md != nullptr) {
    sha256_md_ = md;
    sha256_md_owned_ = true;
  } else {
    sha256_md_ = EVP_sha256();
  }
}

PosixProcessRunner::~PosixProcessRunner() {
  if (devnull_fd_ >= 0) close(devnull_fd_);
  posix_spawnattr_destroy(&spawn_attr_);
  if (sha256_md_owned_)
    EVP_MD_free(static_cast<EVP_MD*>(const_cast<void*>(sha256_md_)));
}

absl::Status PosixProcessRunner::CheckLimitsApply() const {
  if (cgroup_parent_.empty() &&
      (options_.cgroup.memory_max_bytes > 0 || options_.cgroup.pids_max > 0)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job_memory_max/job_pids_max need a writable cgroup v2 (",
        options_.cgroup.root,
        "/cgroup.controllers and the cgroup parent must exist and be "
        "writable by the agent): set cgroup_parent to a delegated cgroup, "
        "or remove the limits"));
  }
  return absl::OkStatus();
}

int PosixProcessRunner::CloneSpawn(char* stack_top, const char* program,
                                   char* const* argv, char* const* envp,
                                   const std::string& cwd, int out_w, int err_w,
                                   int cgroup_fd, pid_t* pid, int* stage) {
  CloneChildArgs args{
      program,
      argv,
      envp,
      cwd.empty() ? nullptr : cwd.c_str(),
      devnull_fd_,
      out_w,
      err_w,
      cgroup_fd,
      options_.job_user.name.empty() ? nullptr : &options_.job_user};
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t child =
      clone(CloneChildMain, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  const int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (child < 0) {
    *stage = kStageNone;
    return clone_errno;
  }
  *pid = child;
  if (args.stage != kStageNone) {
    int status;
    Reap(child, &status, nullptr);
    *stage = args.stage;
    *pid = -1;
    return args.err;
  }
  return 0;
}

absl::StatusOr<RunResult> PosixProcessRunner::Run(const RunRequest& request) {
  if (request.argv.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot run: empty argv (cwd '", request.cwd, "')"));
  }
  if (request.max_capture_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot run ", Where(request), ": negative max_capture_bytes"));
  }
  RETURN_IF_ERROR(ValidateCwd(request));
  ASSIGN_OR_RETURN(const std::string program, ResolveProgram(request));

  std::vector<char*> argv;
  argv.reserve(request.argv.size() + 1);
  for (const std::string& a : request.argv)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // The job's cookie: every process it starts inherits it (job_tree.h).
  InFlightSlot slot;
  if (!slot.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot run ", Where(request), ": more than ",
                     kMaxRunsInFlight, " runs in flight"));
  }
  const std::string cookie =
      MakeJobCookie(request.job.empty() ? "run" : request.job, self_pid_,
                    self_start_ticks_, slot.serial());
  const std::string cookie_var = absl::StrCat(kJobCookieVar, "=", cookie);
  const std::string cookie_key = absl::StrCat(kJobCookieVar, "=");
  std::vector<char*> envp;
  envp.reserve(request.env.size() + 2);
  for (const std::string& e : request.env) {
    if (e.rfind(cookie_key, 0) == 0) continue;  // ours replaces an outer one
    envp.push_back(const_cast<char*>(e.c_str()));
  }
  envp.push_back(const_cast<char*>(cookie_var.c_str()));
  envp.push_back(nullptr);

  RunResult result;
  Stream out, err;
  Fd out_w, err_w;
  RETURN_IF_ERROR(OpenCapture(request.stdout_path, request, &out.file));
  RETURN_IF_ERROR(OpenCapture(request.stderr_path, request, &err.file));
  RETURN_IF_ERROR(MakePipe(request, &out.pipe, &out_w));
  RETURN_IF_ERROR(MakePipe(request, &err.pipe, &err_w));
  const EVP_MD* md = static_cast<const EVP_MD*>(sha256_md_);
  if (out.digest.get() == nullptr || err.digest.get() == nullptr ||
      EVP_DigestInit_ex(out.digest.get(), md, nullptr) != 1 ||
      EVP_DigestInit_ex(err.digest.get(), md, nullptr) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot run ", Where(request), ": SHA-256 init"));
  }
  out.max_keep = err.max_keep = request.max_capture_bytes;
  out.head = &result.stdout_head;
  out.head_limit = kHeadBytes;

  const posix_spawn_file_actions_t* fa = ThreadFileActions().Get(
      devnull_fd_, out_w.get(), err_w.get(), request.cwd);
  if (fa == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot run ", Where(request), ": posix_spawn_file_actions"));
  }

  // A cgroup for this run, where the host has cgroup v2 for us.
  std::unique_ptr<JobCgroup> cgroup;
  if (!cgroup_parent_.empty()) {
    std::string name = absl::StrCat("benchfleet-job-",
                                    request.job.empty() ? "run" : request.job,
                                    "-", self_pid_, "-", slot.serial());
    std::replace(name.begin(), name.end(), '/', '-');
    absl::StatusOr<std::unique_ptr<JobCgroup>> made =
        JobCgroup::Create(cgroup_parent_, name, options_.cgroup);
    if (!made.ok()) {
      return absl::Status(made.status().code(),
                          absl::StrCat("cannot run ", Where(request), ": ",
                                       made.status().message()));
    }
    cgroup = std::move(*made);
  }
  const bool clone_path = cgroup != nullptr || !options_.job_user.name.empty();
  // The clone child runs on this while the spawning thread is suspended.
  constexpr size_t kCloneStackBytes = 64 * 1024;
  std::unique_ptr<char[]> clone_stack;
  if (clone_path) clone_stack = std::make_unique<char[]>(kCloneStackBytes);

  // Recorded before the spawn (a restarted agent reads it), unsynced.
  RecordFile record;
  if (!request.record_path.empty()) {
    JobRecord r;
    r.agent_pid = self_pid_;
    r.agent_start_ticks = self_start_ticks_;
    r.cookie = cookie;
    r.cgroup = cgroup != nullptr ? cgroup->path() : "";
    record.Write(request.record_path, r);
  }
  const uint64_t started_ticks = BootTicksNow();

  // posix_spawn has no affinity attribute; the child inherits the spawning
  // thread's affinity at clone time, so this thread borrows the requested CPUs
  // just for the spawn.
  ScopedThreadAffinity affinity;
  if (!request.cpus.empty()) {
    RETURN_IF_ERROR(affinity.Set(request.cpus, request));
  }

  // ---- Timed section: keep it to syscalls; nothing here allocates. ----
  g_spawning.fetch_add(1);
  const int64_t start_ns = MonotonicNs();
  pid_t pid = -1;
  int stage = kStageNone;
  const int spawn_rc =
      clone_path
          ? CloneSpawn(clone_stack.get() + kCloneStackBytes, program.c_str(),
                       argv.data(), envp.data(), request.cwd, out_w.get(),
                       err_w.get(), cgroup != nullptr ? cgroup->procs_fd() : -1,
                       &pid, &stage)
          : posix_spawn(&pid, program.c_str(), fa, &spawn_attr_, argv.data(),
                        envp.data());
  if (spawn_rc == 0) slot.SetLeader(pid);
  g_spawning.fetch_sub(1);
  affinity.Restore();
  if (spawn_rc != 0) {
    if (cgroup != nullptr) {
      (void)JobCgroup::KillAndRemove(cgroup->path(), options_.kill_timeout);
    }
    const std::string as_user =
        options_.job_user.name.empty()
            ? ""
            : absl::StrCat(" as job user '", options_.job_user.name, "'");
    switch (stage) {
      case kStageChdir:
        return ErrnoStatus(
            spawn_rc,
            absl::StrCat("cannot run ", Where(request), as_user,
                         ": cannot enter the work directory",
                         as_user.empty()
                             ? ""
                             : absl::StrCat("; it and its parents must be "
                                            "searchable (and writable, if the "
                                            "job writes there) by '",
                                            options_.job_user.name, "'")));
      case kStageUser:
        return ErrnoStatus(spawn_rc,
                           absl::StrCat("cannot run ", Where(request), as_user,
                                        ": switching user failed (the agent "
                                        "must run as root to use job_user)"));
      case kStageCgroup:
        return ErrnoStatus(
            spawn_rc, absl::StrCat("cannot run ", Where(request),
                                   ": cannot enter cgroup ", cgroup->path()));
      case kStagePgid:
      case kStageStdio:
        return ErrnoStatus(spawn_rc, absl::StrCat("cannot run ", Where(request),
                                                  ": setting up the child"));
      default:
        break;
    }
    return ErrnoStatus(
        spawn_rc,
        absl::StrCat("cannot run ", Where(request), as_user,
                     program != request.argv[0]
                         ? absl::StrCat(" (resolved to '", program, "')")
                         : ""));
  }
  Fd pidfd(pidfd_open(pid, 0));
  if (pidfd.get() < 0) {
    const int e = errno;
    kill(-pid, SIGKILL);
    int status;
    Reap(pid, &status, nullptr);
    if (cgroup != nullptr) {
      (void)JobCgroup::KillAndRemove(cgroup->path(), options_.kill_timeout);
    }
    return ErrnoStatus(
        e, absl::StrCat("cannot watch ", Where(request), ": pidfd_open"));
  }

  const bool has_deadline = request.timeout != absl::InfiniteDuration();
  int64_t deadline_ns = INT64_MAX;
  if (has_deadline) {
    const int64_t timeout_ns =
        std::max<int64_t>(0, absl::ToInt64Nanoseconds(request.timeout));
    deadline_ns =
        timeout_ns > INT64_MAX - start_ns ? INT64_MAX : start_ns + timeout_ns;
  }
  char buf[kReadChunk];
  Stream* streams[2] = {&out, &err};
  pollfd fds[3] = {{pidfd.get(), POLLIN, 0},
                   {out.pipe.get(), POLLIN, 0},
                   {err.pipe.get(), POLLIN, 0}};
  int64_t end_ns = 0;
  // The loop still holds the pipes' write ends, so a pipe becomes readable only
  // when there is data, never with a hang-up at the child's exit: a child that
  // writes nothing costs a single wake-up (the pidfd), as in a bare wait4, and
  // no extra wake-up competes with the exiting child for its CPU.
  bool cancelled = false;
  for (;;) {
    timespec ts;
    timespec* tsp = nullptr;
    int64_t left_ns = INT64_MAX;
    if (has_deadline) {
      left_ns = deadline_ns - MonotonicNs();
      if (left_ns <= 0) break;
    }
    if (request.cancel != nullptr) {
      if (request.cancel->load(std::memory_order_relaxed)) {
        cancelled = true;
        break;
      }
      // Look at the cancel flag at least this often while the step runs.
      constexpr int64_t kCancelPollNs = 50'000'000;
      left_ns = std::min(left_ns, kCancelPollNs);
    }
    // The leader's pid goes into the record once the run has lasted this
    // long: a short run never pays for it inside its timed window.
    constexpr int64_t kRecordLeaderAfterNs = 50'000'000;
    if (record.wants_leader())
      left_ns = std::min(left_ns, kRecordLeaderAfterNs);
    if (left_ns != INT64_MAX) {
      ts = {static_cast<time_t>(left_ns / 1'000'000'000),
            static_cast<long>(left_ns % 1'000'000'000)};
      tsp = &ts;
    }
    const int r = ppoll(fds, 3, tsp, nullptr);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;  // cannot wait any more (EINVAL/ENOMEM): end the run as if the
              // deadline passed
    }
    if (r == 0) {
      if (record.wants_leader()) record.AddLeader(pid);
      continue;  // re-check the deadline; ppoll may wake a hair early
    }
    if (fds[0].revents != 0) {
      end_ns = MonotonicNs();
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i + 1].revents != 0) {
        streams[i]->Read(buf, sizeof buf);
        fds[i + 1].fd = streams[i]->pipe.get();  // -1 at EOF: ppoll ignores it
      }
    }
  }
  // ---- End of timed section. ----

  // Only now let go of our write ends (see the comment at the poll loop), so
  // the drain below ends at EOF once the child and its kin are gone.
  out_w.Reset();
  err_w.Reset();

  // The leader is exited-but-unreaped (or still running at the deadline), so
  // its pid cannot be reused yet and -pid still names its group: kill the whole
  // group before reaping.
  kill(-pid, SIGKILL);
  int status = 0;
  rusage usage{};
  if (!Reap(pid, &status, &usage)) {
    return absl::InternalError(
        absl::StrCat("lost ", Where(request),
                     ": wait4 failed (is SIGCHLD ignored in the agent?)"));
  }
  if (end_ns == 0) {
    end_ns = MonotonicNs();
    if (cancelled) {
      result.cancelled = true;
    } else {
      result.timed_out = true;
    }
  }
  slot.SetLeader(0);

  // Everything else the job started: its cgroup, then what the subreaper
  // brought to us and what carries its cookie (job_tree.h). Before the drain,
  // so a daemon that kept a pipe does not hold the drain for its grace.
  if (cgroup != nullptr) {
    absl::Status killed =
        JobCgroup::KillAndRemove(cgroup->path(), options_.kill_timeout);
    if (!killed.ok()) {
      absl::StrAppend(&result.capture_error,
                      result.capture_error.empty() ? "" : "; ",
                      killed.message());
    }
  }
  LeftoverSweep sweep;
  sweep.cookie = cookie;
  sweep.started_ticks = started_ticks;
  sweep.scan_all = !subreaper_;
  sweep.leader_pgid = pid;
  sweep.timeout = options_.kill_timeout;
  const uint64_t my_serial = slot.serial();
  const pid_t self = self_pid_;
  const uint64_t self_start = self_start_ticks_;
  sweep.spare = [my_serial, self, self_start](
                    pid_t p, const std::optional<std::string>& c) {
    return SpareForOtherRuns(p, c, my_serial, self, self_start);
  };
  const LeftoverResult leftovers = KillJobLeftovers(sweep);
  for (const KilledProcess& k : leftovers.killed) {
    result.leftovers.push_back(absl::StrCat(k.pid, " ", k.command));
  }
  if (!leftovers.survivors.empty()) {
    absl::StrAppend(&result.capture_error,
                    result.capture_error.empty() ? "" : "; ",
                    "processes of the job survived SIGKILL: ",
                    absl::StrJoin(leftovers.survivors, " "));
    record.Keep();  // for the next start-up sweep
  }
  if (!Drain(streams,
             MonotonicNs() + absl::ToInt64Nanoseconds(options_.drain_grace),
             buf, sizeof buf)) {
    for (Stream* s : streams) {
      if (s->open()) {
        absl::StrAppend(&result.capture_error,
                        result.capture_error.empty() ? "" : "; ",
                        s == &out ? "stdout" : "stderr",
                        " still open after the drain grace (a process left the "
                        "process group "
                        "and kept it); capture incomplete");
        s->pipe.Reset();
      }
    }
  }

  result.wall_ns = end_ns - start_ns;
  result.user_ns = TimevalNs(usage.ru_utime);
  result.sys_ns = TimevalNs(usage.ru_stime);
  result.max_rss_bytes = int64_t{usage.ru_maxrss} * 1024;
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
  }
  result.stdout_sha256 = FinalHex(out.digest.get());
  result.stderr_sha256 = FinalHex(err.digest.get());
  result.stdout_bytes = out.bytes;
  result.stderr_bytes = err.bytes;
  const bool keeps_all_stdout = out.file.get() < 0 || out.file_errno == 0;
  const bool keeps_all_stderr = err.file.get() < 0 || err.file_errno == 0;
  result.stdout_truncated = out.bytes > out.kept || !keeps_all_stdout;
  result.stderr_truncated = err.bytes > err.kept || !keeps_all_stderr;
  for (const Stream* s : streams) {
    if (s->file_errno != 0) {
      absl::StrAppend(&result.capture_error,
                      result.capture_error.empty() ? "" : "; ", "writing ",
                      s == &out ? request.stdout_path : request.stderr_path,
                      ": ", ErrnoText(s->file_errno));
    }
  }
  return result;
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot hash '", path, "'"));
  }
  DigestCtx ctx;
  if (ctx.get() == nullptr ||
      EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot hash '", path, "': SHA-256 init"));
  }
  std::vector<char> buf(kReadChunk);
  for (;;) {
    const ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("cannot hash '", path, "'"));
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  return FinalHex(ctx.get());
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) !=
      1)
    return "";
  return Hex(md, len);
}

std::map<std::string, double> ExtractMetrics(
    std::string_view text,
    const std::vector<std::pair<std::string, std::string>>& name_regex) {
  std::map<std::string, double> out;
  const re2::StringPiece input(text.data(), text.size());
  for (const auto& [name, pattern] : name_regex) {
    // RE2: linear time on untrusted output; compiled the way the spec loader
    // validated it.
    const std::unique_ptr<RE2> re = CompileMetricRegex(pattern);
    if (!re->ok() || re->NumberOfCapturingGroups() < 1) continue;
    re2::StringPiece group;
    if (!RE2::PartialMatch(input, *re, &group)) continue;
    double value;
    if (absl::SimpleAtod(absl::string_view(group.data(), group.size()),
                         &value)) {
      out[name] = value;
    }
  }
  return out;
}

std::vector<std::string> ShellArgv(const std::string& command) {
  return {"/bin/sh", "-c", command};
}

}  // namespace benchfleet
