// Tests of the job user (agent/runner/job_user.h): jobs run as `nobody` cannot
// read a root-only key, the start-up checks and their messages. Switching
// users needs root: those tests skip, saying so, when not run as root (CI
// runs as root).
#include "agent/runner/job_user.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

#define SKIP_UNLESS_ROOT()                                                 \
  do {                                                                     \
    if (geteuid() != 0) {                                                  \
      GTEST_SKIP() << "needs root (to switch to user nobody); CI runs as " \
                      "root";                                              \
    }                                                                      \
  } while (0)

// A fresh directory that `nobody` can enter (mkdtemp makes 0700 ones).
std::string MakeOpenDir() {
  std::string tmpl = ::testing::TempDir() + "/job_user_test_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  chmod(tmpl.c_str(), 0755);
  return tmpl;
}

std::string MakeFile(const std::string& path, mode_t mode) {
  std::ofstream(path) << "-----BEGIN PRIVATE KEY-----\nsecret\n";
  chmod(path.c_str(), mode);
  return path;
}

RunRequest Shell(const std::string& command, const std::string& cwd) {
  RunRequest r;
  r.argv = ShellArgv(command);
  r.env = {"PATH=/usr/bin:/bin"};
  r.cwd = cwd;
  return r;
}

PosixProcessRunnerOptions AsNobody() {
  PosixProcessRunnerOptions options;
  absl::StatusOr<JobUser> nobody = LookUpJobUser("nobody");
  EXPECT_TRUE(nobody.ok()) << nobody.status();
  if (nobody.ok()) options.job_user = *nobody;
  return options;
}

TEST(JobUserTest, LooksUpUsersByNameOrUid) {
  absl::StatusOr<JobUser> nobody = LookUpJobUser("nobody");
  ASSERT_TRUE(nobody.ok()) << nobody.status();
  EXPECT_EQ(nobody->name, "nobody");
  EXPECT_NE(nobody->uid, 0u);
  absl::StatusOr<JobUser> by_uid = LookUpJobUser(std::to_string(nobody->uid));
  ASSERT_TRUE(by_uid.ok());
  EXPECT_EQ(by_uid->name, "nobody");
  absl::StatusOr<JobUser> missing = LookUpJobUser("no-such-user-bf");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no-such-user-bf"));
}

TEST(JobUserTest, JobRunsAsTheJobUser) {
  SKIP_UNLESS_ROOT();
  PosixProcessRunner runner(AsNobody());
  auto r = runner.Run(Shell("id -u; id -g", MakeOpenDir()));
  ASSERT_TRUE(r.ok()) << r.status();
  const JobUser nobody = *LookUpJobUser("nobody");
  EXPECT_EQ(r->stdout_head, absl::StrCat(nobody.uid, "\n", nobody.gid, "\n"));
}

TEST(JobUserTest, JobCannotReadARootOnlyKey) {
  SKIP_UNLESS_ROOT();
  const std::string dir = MakeOpenDir();
  const std::string key = MakeFile(dir + "/agent.key", 0600);
  PosixProcessRunner runner(AsNobody());
  RunRequest req = Shell("cat " + key, dir);
  req.stderr_path = dir + "/stderr";
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_EQ(r->stdout_bytes, 0);
  std::ifstream err(dir + "/stderr");
  std::string text((std::istreambuf_iterator<char>(err)), {});
  EXPECT_THAT(text, HasSubstr("Permission denied"));  // EACCES
  // The same job as the agent's own user reads it: the test can fail.
  PosixProcessRunner as_root;
  auto own = as_root.Run(Shell("cat " + key, dir));
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->exit_code, 0);
}

TEST(JobUserTest, JobUserDaemonIsKilledAtTheEndOfTheRun) {
  SKIP_UNLESS_ROOT();
  PosixProcessRunner runner(AsNobody());
  const std::string dir = MakeOpenDir();
  chmod(dir.c_str(), 0777);  // the job writes its daemon's pid there
  // The job waits until its daemon has surely left the group.
  auto r =
      runner.Run(Shell("setsid -f sh -c 'echo $$ > d.pid; exec sleep 30';"
                       " while [ ! -s d.pid ]; do sleep 0.01; done",
                       dir));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->leftovers.size(), 1u);
  EXPECT_THAT(r->leftovers[0], HasSubstr("sleep"));
}

TEST(JobUserTest, WorkDirectoryTheJobUserCannotEnterIsAClearError) {
  SKIP_UNLESS_ROOT();
  std::string closed = ::testing::TempDir() + "/job_user_closed_XXXXXX";
  ASSERT_NE(mkdtemp(closed.data()), nullptr);  // 0700, owned by root
  PosixProcessRunner runner(AsNobody());
  auto r = runner.Run(Shell("true", closed));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(r.status().message(), HasSubstr("as job user 'nobody'"));
  EXPECT_THAT(r.status().message(),
              HasSubstr("cannot enter the work directory"));
  EXPECT_THAT(r.status().message(), HasSubstr(closed));
}

TEST(JobUserTest, ReadableSecretsAreNamedWithTheChmodToRun) {
  SKIP_UNLESS_ROOT();
  const JobUser nobody = *LookUpJobUser("nobody");
  const std::string dir = MakeOpenDir();
  const std::string closed_key = MakeFile(dir + "/closed.key", 0600);
  const std::string open_key = MakeFile(dir + "/open.key", 0644);
  EXPECT_TRUE(CheckUnreadableBy(nobody, {closed_key, dir + "/missing"}).ok());
  absl::Status st = CheckUnreadableBy(nobody, {closed_key, open_key});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(),
              HasSubstr("job_user 'nobody' can read " + open_key));
  EXPECT_THAT(st.message(), HasSubstr("chmod 600 " + open_key));
  // A data directory others may enter is readable too.
  st = CheckUnreadableBy(nobody, {dir});
  EXPECT_THAT(st.message(), HasSubstr("chmod 700 " + dir));
  chmod(dir.c_str(), 0700);
  EXPECT_TRUE(CheckUnreadableBy(nobody, {dir, open_key}).ok())
      << "a file in a closed directory is out of reach";
}

TEST(JobUserTest, RootJobsRule) {
  // Not root, or a job user, or explicitly allowed: nothing to say.
  EXPECT_EQ(DecideRootJobs(false, false, false, false).verdict,
            RootJobsVerdict::kOk);
  EXPECT_EQ(DecideRootJobs(true, true, false, false).verdict,
            RootJobsVerdict::kOk);
  EXPECT_EQ(DecideRootJobs(true, false, true, false).verdict,
            RootJobsVerdict::kOk);
  // Root with a controller on this host (local mode, quickstart): a warning.
  RootJobsDecision local = DecideRootJobs(true, false, false, true);
  EXPECT_EQ(local.verdict, RootJobsVerdict::kWarn);
  EXPECT_THAT(local.message, HasSubstr("job_user"));
  // Root for a controller elsewhere: refused, saying exactly what to set.
  RootJobsDecision remote = DecideRootJobs(true, false, false, false);
  EXPECT_EQ(remote.verdict, RootJobsVerdict::kRefuse);
  EXPECT_THAT(remote.message, HasSubstr("job_user: USER"));
  EXPECT_THAT(remote.message, HasSubstr("--job-user USER"));
  EXPECT_THAT(remote.message, HasSubstr("allow_root_jobs: true"));
  EXPECT_THAT(remote.message, HasSubstr("--allow-root-jobs"));
}

AgentOptions TestAgentOptions(const std::string& dir) {
  AgentOptions o;
  o.id = "job-user-test";
  o.workdir = dir + "/work";
  o.lock_file = dir + "/lock";
  o.toolchain.clear();
  o.sample_interval = absl::ZeroDuration();
  return o;
}

TEST(JobUserTest, AgentAsRootRefusesARemoteControllerWithoutJobUser) {
  SKIP_UNLESS_ROOT();
  std::string dir = MakeOpenDir();
  chmod(dir.c_str(), 0700);
  AgentOptions o = TestAgentOptions(dir);
  o.controller = "ctl.example.invalid:7070";
  o.insecure = true;  // unsigned orders: only the job-user rule is tested
  PosixProcessRunner runner;
  auto agent = Agent::Create(o, &runner);
  ASSERT_FALSE(agent.ok());
  EXPECT_THAT(agent.status().message(), HasSubstr("job_user: USER"));
  EXPECT_THAT(agent.status().message(), HasSubstr("allow_root_jobs: true"));
  o.allow_root_jobs = true;
  auto allowed = Agent::Create(o, &runner);
  EXPECT_TRUE(allowed.ok()) << allowed.status();
}

TEST(JobUserTest, AgentRefusesAKeyTheJobUserCanRead) {
  SKIP_UNLESS_ROOT();
  std::string dir = MakeOpenDir();
  AgentOptions o = TestAgentOptions(dir);
  o.controller = "ctl.example.invalid:7070";
  o.insecure = true;  // unsigned orders: only the job-user rule is tested
  o.job_user = "nobody";
  const std::string key = MakeFile(dir + "/agent.key", 0644);
  o.secret_files = {key};
  PosixProcessRunner runner(AsNobody());
  auto agent = Agent::Create(o, &runner);
  ASSERT_FALSE(agent.ok());
  EXPECT_THAT(agent.status().message(), HasSubstr(key));
  EXPECT_THAT(agent.status().message(), HasSubstr("chmod 600 " + key));
  chmod(key.c_str(), 0600);
  // The work directory the agent made itself is its own (0700).
  auto ok = Agent::Create(o, &runner);
  EXPECT_TRUE(ok.ok()) << ok.status();
  ok->reset();
  // One that others may read is refused, naming the chmod.
  chmod(o.workdir.c_str(), 0755);
  auto open_workdir = Agent::Create(o, &runner);
  ASSERT_FALSE(open_workdir.ok());
  EXPECT_THAT(open_workdir.status().message(),
              HasSubstr("chmod 700 " + o.workdir));
}

}  // namespace
}  // namespace benchfleet
