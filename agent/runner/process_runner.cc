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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS (fixed in 2.37): declare it C
// by hand.
extern "C" {
#include <sys/pidfd.h>
}

#include <algorithm>
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
  std::vector<char*> envp;
  envp.reserve(request.env.size() + 1);
  for (const std::string& e : request.env)
    envp.push_back(const_cast<char*>(e.c_str()));
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

  // posix_spawn has no affinity attribute; the child inherits the spawning
  // thread's affinity at clone time, so this thread borrows the requested CPUs
  // just for the spawn.
  ScopedThreadAffinity affinity;
  if (!request.cpus.empty()) {
    RETURN_IF_ERROR(affinity.Set(request.cpus, request));
  }

  // ---- Timed section: keep it to syscalls; nothing here allocates. ----
  const int64_t start_ns = MonotonicNs();
  pid_t pid = -1;
  const int spawn_rc = posix_spawn(&pid, program.c_str(), fa, &spawn_attr_,
                                   argv.data(), envp.data());
  affinity.Restore();
  if (spawn_rc != 0) {
    return ErrnoStatus(
        spawn_rc,
        absl::StrCat("cannot run ", Where(request),
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
    if (r == 0) continue;  // re-check the deadline; ppoll may wake a hair early
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
