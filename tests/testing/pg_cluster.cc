#include "tests/testing/pg_cluster.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status_macros.h"

extern char** environ;

namespace benchfleet::testing {
namespace {

namespace fs = std::filesystem;

// In each cluster directory: the process id of the test program that made it.
constexpr char kOwnerFile[] = "owner.pid";

constexpr char kInstallHint[] =
    "install the PostgreSQL server (Debian: apt-get install postgresql; "
    "scripts/install-deps.sh does it), or set BENCHFLEET_PG_BIN to the "
    "directory holding initdb, pg_ctl and postgres";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Tail(const std::string& text, size_t max_chars = 3000) {
  return text.size() <= max_chars
             ? text
             : "..." + text.substr(text.size() - max_chars);
}

// "15" < "16", "9.6" < "10": compares dotted version numbers numerically.
bool VersionLess(const std::string& a, const std::string& b) {
  std::istringstream sa(a), sb(b);
  for (;;) {
    int na = -1, nb = -1;
    char dot;
    if (!(sa >> na)) na = -1;
    if (!(sb >> nb)) nb = -1;
    if (na != nb) return na < nb;
    if (na == -1) return false;
    sa >> dot;
    sb >> dot;
  }
}

absl::StatusOr<std::string> FindBinDir() {
  auto complete = [](const fs::path& dir) {
    for (const char* name : {"initdb", "pg_ctl", "postgres", "psql"}) {
      if (access((dir / name).c_str(), X_OK) != 0) return false;
    }
    return true;
  };
  if (const char* env = std::getenv("BENCHFLEET_PG_BIN");
      env != nullptr && *env != '\0') {
    if (!complete(env)) {
      return absl::FailedPreconditionError(
          std::string("BENCHFLEET_PG_BIN=") + env +
          " does not hold executable initdb, pg_ctl, postgres and psql; " +
          kInstallHint);
    }
    return std::string(env);
  }
  std::string best_version;
  std::string best;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const fs::path bin = entry.path() / "bin";
    const std::string version = entry.path().filename().string();
    if (complete(bin) && (best.empty() || VersionLess(best_version, version))) {
      best = bin.string();
      best_version = version;
    }
  }
  if (best.empty()) {
    return absl::FailedPreconditionError(
        "the store tests need a PostgreSQL server, but no initdb/pg_ctl/"
        "postgres/psql were found under /usr/lib/postgresql/*/bin; " +
        std::string(kInstallHint));
  }
  return best;
}

// The first directory on the way to `path` (from "/") that a process with
// `uid`/`gid` (and no supplementary groups) cannot search, or "" if there is
// none. A chroot made with `mktemp -d` has a "/" of mode 0700, for example.
std::string FirstUnsearchableDir(const fs::path& path, uid_t uid, gid_t gid) {
  fs::path dir;
  for (const fs::path& part : path) {
    dir /= part;
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    const mode_t bit = st.st_uid == uid   ? S_IXUSR
                       : st.st_gid == gid ? S_IXGRP
                                          : S_IXOTH;
    if ((st.st_mode & bit) == 0) return dir.string();
  }
  return "";
}

// Clears this process's child-subreaper bit for its lifetime, then puts it
// back. A test process that also runs an agent is a child subreaper (the
// runner's "no orphans"): the postgres server that pg_ctl leaves running
// would be re-parented to it, count as the agent's own work and be killed by
// the end-of-run sweep of the step running at that moment.
class NotASubreaper {
 public:
  NotASubreaper() {
    prctl(PR_GET_CHILD_SUBREAPER, &was_, 0, 0, 0);
    if (was_ != 0) prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  }
  ~NotASubreaper() {
    if (was_ != 0) prctl(PR_SET_CHILD_SUBREAPER, was_, 0, 0, 0);
  }
  NotASubreaper(const NotASubreaper&) = delete;
  NotASubreaper& operator=(const NotASubreaper&) = delete;

 private:
  int was_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PgCluster>> PgCluster::Start(
    const PgClusterOptions& options) {
  std::unique_ptr<PgCluster> cluster(new PgCluster());
  ASSIGN_OR_RETURN(cluster->bin_dir_, FindBinDir());

  if (geteuid() == 0) {
    // initdb and postgres refuse to run as root.
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      return absl::FailedPreconditionError(
          "running as root, the PostgreSQL test cluster must run as the "
          "`postgres` system user, which does not exist; install the Debian "
          "`postgresql` package (it creates the user) or run the tests as an "
          "unprivileged user");
    }
    cluster->drop_privileges_ = true;
    cluster->uid_ = pw->pw_uid;
    cluster->gid_ = pw->pw_gid;
  }

  std::string tmpl = (fs::temp_directory_path() / "bf-pg-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(
        "cannot create a temporary directory for the "
        "PostgreSQL test cluster: " +
        std::string(std::strerror(errno)));
  }
  cluster->dir_ = tmpl;
  cluster->data_dir_ = cluster->dir_ + "/data";
  {
    // Whose cluster this is: if that program is killed before its destructors
    // run, the server outlives it, and this file tells a person what to stop.
    std::ofstream owner(cluster->dir_ + "/" + kOwnerFile);
    owner << getpid() << "\n";
  }
  cluster->log_path_ = cluster->dir_ + "/server.log";
  if (cluster->drop_privileges_ &&
      chown(cluster->dir_.c_str(), cluster->uid_, cluster->gid_) != 0) {
    return absl::InternalError(
        "cannot hand " + cluster->dir_ +
        " to the postgres user: " + std::strerror(errno));
  }
  chmod(cluster->dir_.c_str(), 0700);
  if (cluster->drop_privileges_) {
    for (const std::string& needed : {cluster->dir_, cluster->bin_dir_}) {
      const std::string blocked =
          FirstUnsearchableDir(needed, cluster->uid_, cluster->gid_);
      if (!blocked.empty()) {
        struct stat st;
        stat(blocked.c_str(), &st);
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o",
                      static_cast<unsigned>(st.st_mode & 07777));
        return absl::FailedPreconditionError(
            "the PostgreSQL test cluster runs as the `postgres` user, which "
            "cannot reach " +
            needed + ": " + blocked + " has mode " + mode +
            " and is not searchable by it; make it searchable (chmod o+x " +
            blocked +
            "), set TMPDIR to a directory it can reach, or run the "
            "tests as an unprivileged user");
      }
    }
  }

  std::string version;
  RETURN_IF_ERROR(cluster->Run({"postgres", "--version"}, &version));
  while (!version.empty() && version.back() == '\n') version.pop_back();
  cluster->version_ = version;

  // --no-sync only skips initdb's final flush of the new files; the server
  // itself runs with its default (durable) settings.
  RETURN_IF_ERROR(cluster->Run({"initdb", "--pgdata=" + cluster->data_dir_,
                                "--username=postgres", "--auth=trust",
                                "--encoding=UTF8", "--locale=C", "--no-sync"}));
  {
    std::ofstream conf(cluster->data_dir_ + "/postgresql.conf", std::ios::app);
    conf << "\n# benchfleet test cluster: Unix socket only\n"
         << "listen_addresses = ''\n"
         << "unix_socket_directories = '" << cluster->dir_ << "'\n"
         << "port = " << cluster->port_ << "\n";
    for (const std::string& line : options.settings) conf << line << "\n";
    if (!conf) {
      return absl::InternalError("cannot write " + cluster->data_dir_ +
                                 "/postgresql.conf");
    }
  }
  {
    std::ofstream hba(cluster->data_dir_ + "/pg_hba.conf", std::ios::trunc);
    for (const std::string& line : options.hba_lines) hba << line << "\n";
    hba << "local all all trust\n";
    if (!hba) {
      return absl::InternalError("cannot write " + cluster->data_dir_ +
                                 "/pg_hba.conf");
    }
  }

  cluster->running_ = true;  // from here on the destructor stops it
  absl::Status started =
      cluster->Run({"pg_ctl", "start", "--pgdata=" + cluster->data_dir_,
                    "--log=" + cluster->log_path_, "--wait", "--timeout=120"});
  if (!started.ok()) {
    return absl::InternalError(std::string(started.message()) +
                               "\nserver log:\n" +
                               Tail(ReadAll(cluster->log_path_)));
  }
  RETURN_IF_ERROR(cluster->CreateDatabase("benchfleet").status());
  return cluster;
}

PgCluster::~PgCluster() {
  if (running_) {
    Run({"pg_ctl", "stop", "--pgdata=" + data_dir_, "--mode=immediate",
         "--wait", "--timeout=60"})
        .IgnoreError();
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

std::string PgCluster::UrlFor(const std::string& dbname,
                              const std::string& user) const {
  return "postgresql:///" + dbname + "?host=" + dir_ +
         "&port=" + std::to_string(port_) + "&user=" + user;
}

absl::StatusOr<std::string> PgCluster::CreateDatabase(const std::string& name) {
  const bool valid =
      !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '_';
      });
  if (!valid) {
    return absl::InvalidArgumentError("test database name \"" + name +
                                      "\" must be letters, digits and _");
  }
  RETURN_IF_ERROR(Psql("postgres", "CREATE DATABASE " + name).status());
  return UrlFor(name);
}

absl::StatusOr<std::string> PgCluster::Psql(const std::string& dbname,
                                            const std::string& sql) {
  std::string out;
  RETURN_IF_ERROR(
      Run({"psql", "--no-psqlrc", "--quiet", "--no-align", "--tuples-only",
           "--set=ON_ERROR_STOP=1", "--host=" + dir_,
           "--port=" + std::to_string(port_), "--username=postgres",
           "--dbname=" + dbname, "--command=" + sql},
          &out));
  return out;
}

absl::Status PgCluster::Restart(bool immediate) {
  std::vector<std::string> argv = {
      "pg_ctl", "restart",      "--pgdata=" + data_dir_, "--log=" + log_path_,
      "--wait", "--timeout=120"};
  if (immediate) argv.push_back("--mode=immediate");
  absl::Status status = Run(argv);
  if (!status.ok()) {
    return absl::InternalError(std::string(status.message()) +
                               "\nserver log:\n" + Tail(ReadAll(log_path_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<pid_t> PgCluster::PostmasterPid() const {
  std::ifstream in(data_dir_ + "/postmaster.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) {
    return absl::FailedPreconditionError("the PostgreSQL test cluster in " +
                                         dir_ +
                                         " is not running (no postmaster.pid)");
  }
  return static_cast<pid_t>(pid);
}

absl::Status PgCluster::Run(const std::vector<std::string>& argv,
                            std::string* out) {
  const NotASubreaper not_a_subreaper;
  const std::string program = bin_dir_ + "/" + argv[0];
  // Output files live in the cluster's directory, created before any command.
  const std::string base = dir_ + "/cmd-" + std::to_string(++command_count_);
  const std::string out_path = base + ".out";
  const std::string err_path = base + ".err";
  const int out_fd =
      open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err_fd =
      open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out_fd < 0 || err_fd < 0 || null_fd < 0) {
    for (int fd : {out_fd, err_fd, null_fd}) {
      if (fd >= 0) close(fd);
    }
    return absl::InternalError("cannot create output files for " + argv[0] +
                               ": " + std::strerror(errno));
  }

  // Everything the child needs is built before fork: only async-signal-safe
  // calls run between fork and exec.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view var(*e);
    // The caller's PG* settings (PGHOST, PGDATA, PGPASSWORD...) must not
    // steer the test cluster's commands.
    if (var.starts_with("PG") || var.starts_with("LC_") ||
        var.starts_with("LANG=")) {
      continue;
    }
    env_strings.emplace_back(var);
  }
  env_strings.push_back("LC_ALL=C");
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  args[0] = program;
  std::vector<char*> argp;
  for (std::string& a : args) argp.push_back(a.data());
  argp.push_back(nullptr);
  const std::string& work_dir = dir_;

  const pid_t pid = fork();
  if (pid == 0) {
    dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    if (drop_privileges_) {
      if (setgroups(0, nullptr) != 0 || setgid(gid_) != 0 ||
          setuid(uid_) != 0) {
        _exit(125);
      }
    }
    if (chdir(work_dir.c_str()) != 0) _exit(126);
    execve(program.c_str(), argp.data(), envp.data());
    _exit(127);
  }
  close(null_fd);
  close(out_fd);
  close(err_fd);
  if (pid < 0) {
    return absl::InternalError("cannot fork to run " + argv[0] + ": " +
                               std::strerror(errno));
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  const std::string stdout_text = ReadAll(out_path);
  const std::string stderr_text = ReadAll(err_path);
  unlink(out_path.c_str());
  unlink(err_path.c_str());
  if (out != nullptr) *out = stdout_text;
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return absl::OkStatus();

  std::string command;
  for (const std::string& a : args) command += (command.empty() ? "" : " ") + a;
  std::string why =
      WIFEXITED(wstatus)
          ? "exited with status " + std::to_string(WEXITSTATUS(wstatus))
          : "was killed by signal " + std::to_string(WTERMSIG(wstatus));
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 125) {
    why += " (could not switch to the postgres user)";
  } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 126) {
    why += " (could not enter " + work_dir + ")";
  } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127) {
    why += std::string(" (could not execute it; ") + kInstallHint + ")";
  }
  return absl::InternalError("PostgreSQL test cluster: `" + command + "` " +
                             why + "\n" + Tail(stdout_text) +
                             Tail(stderr_text));
}

}  // namespace benchfleet::testing
