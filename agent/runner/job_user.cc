#include "agent/runner/job_user.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace benchfleet {

absl::StatusOr<JobUser> LookUpJobUser(const std::string& name) {
  std::vector<char> buf(16384);
  passwd pw;
  passwd* found = nullptr;
  int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  uid_t numeric = 0;
  if (found == nullptr && absl::SimpleAtoi(name, &numeric)) {
    rc = getpwuid_r(numeric, &pw, buf.data(), buf.size(), &found);
  }
  if (found == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "job_user '", name, "' is not a user on this host",
        rc != 0 ? absl::StrCat(" (", strerror(rc), ")") : "",
        "; create it (e.g. useradd --system --no-create-home benchfleet-job) "
        "or set job_user to an existing unprivileged user"));
  }
  JobUser user;
  user.name = pw.pw_name;
  user.uid = pw.pw_uid;
  user.gid = pw.pw_gid;
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  while (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n) * 2);
    n = static_cast<int>(groups.size());
  }
  groups.resize(static_cast<size_t>(n));
  user.groups = std::move(groups);
  return user;
}

absl::Status CheckUnreadableBy(const JobUser& user,
                               const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    if (path.empty()) continue;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;
    const bool is_dir = S_ISDIR(st.st_mode);
    // fork, not a thread: credentials are per process, and the child only
    // makes raw system calls before _exit (async-signal-safe in a threaded
    // parent). Exit code 0: readable; 1: not readable; 2: could not switch.
    const pid_t pid = fork();
    if (pid < 0) {
      return absl::InternalError(absl::StrCat("cannot check ", path,
                                              " for job_user '", user.name,
                                              "': fork: ", strerror(errno)));
    }
    if (pid == 0) {
      if (syscall(SYS_setgroups, user.groups.size(), user.groups.data()) != 0 ||
          syscall(SYS_setresgid, user.gid, user.gid, user.gid) != 0 ||
          syscall(SYS_setresuid, user.uid, user.uid, user.uid) != 0) {
        _exit(2);
      }
      const int fd =
          open(path.c_str(), (is_dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
      // A directory the user may search is as good as readable: files with
      // known names inside are reachable.
      _exit(fd >= 0 || (is_dir && access(path.c_str(), X_OK) == 0) ? 0 : 1);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
    if (code == 2) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot take the identity of job_user '", user.name,
          "' to check who can read ", path,
          ": the agent must run as root to run jobs as another user"));
    }
    if (code == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job_user '", user.name, "' can read ", path,
          is_dir ? " (a directory of the agent's)"
                 : " (a secret of the agent's)",
          "; jobs must not read the agent's keys, tokens or data: run `chmod ",
          is_dir ? "700 " : "600 ", path,
          "` (owned by the agent's user) and start the agent again"));
    }
  }
  return absl::OkStatus();
}

// The rule: jobs never run as root by accident when the agent takes orders
// from another machine. An agent that dials a controller elsewhere runs
// whatever that controller (or whoever got into it) sends, so root jobs need
// the explicit allow_root_jobs. With the controller on this host (local mode,
// where `benchfleet run` starts the agent in its own process, and the
// quickstart's benchfleet-agent on 127.0.0.1), whoever can submit already has
// a shell here: a warning, not a refusal, so that they keep working as root.
RootJobsDecision DecideRootJobs(bool agent_is_root, bool has_job_user,
                                bool allow_root_jobs,
                                bool controller_is_loopback) {
  RootJobsDecision d;
  if (!agent_is_root || has_job_user || allow_root_jobs) return d;
  if (controller_is_loopback) {
    d.verdict = RootJobsVerdict::kWarn;
    d.message =
        "jobs run as root (the agent runs as root and no job_user is set); "
        "fine for a controller on this host, but set job_user: USER (or "
        "--job-user USER) to run them as an unprivileged user";
    return d;
  }
  d.verdict = RootJobsVerdict::kRefuse;
  d.message =
      "refusing to run jobs as root for a controller on another host: set "
      "job_user: USER in the agent config (or --job-user USER) to run jobs "
      "as an unprivileged user, or allow_root_jobs: true (--allow-root-jobs) "
      "to run them as root knowingly";
  return d;
}

}  // namespace benchfleet
