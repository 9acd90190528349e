// Faults on the fleet across network namespaces (tests/integration/
// netns_fleet.h), with the real binaries over mutual TLS and signed orders:
// a job run as the job user cannot read the agent's key (EACCES); an order
// the agent cannot verify is refused and nothing is spawned; an agent
// SIGKILLed mid-run leaves no process behind once restarted; an oversized
// message from one agent connection ends only that stream while another
// agent's experiment completes. Root only (skipped with a message otherwise).
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "agent/runner/job_user.h"
#include "benchfleet/v1/agent.grpc.pb.h"
#include "common/credentials.h"
#include "common/signing.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/integration/netns_fleet.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

// A short A/A experiment; SETUP and COMMAND are replaced per test.
constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: NAME
setup: "SETUP"
benchmark:
  command: "COMMAND"
  inputs: [{name: one, path: inputs/tiny.txt}]
  warmup: 0
  runs: RUNS
  max_runs: RUNS
  timeout: 2m
correctness: {compare: none}
variants:
  - {name: base}
  - {name: same}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

std::string Spec(const std::string& name, const std::string& setup,
                 const std::string& command, int runs) {
  return absl::StrReplaceAll(kSpec, {{"NAME", name},
                                     {"SETUP", setup},
                                     {"COMMAND", command},
                                     {"RUNS", absl::StrCat(runs)}});
}

bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() &&
         line[paren + 2] != 'Z';
}

// The pid written in `path`, or 0 while there is none.
pid_t PidIn(const std::string& path) {
  int pid = 0;
  const std::string text = testing::ReadFile(path);
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid) ? pid : 0;
}

// In a forked child (the test process never starts gRPC itself): enters
// network namespace `ns`, opens an agent stream to `address` over mutual TLS
// as agent `name`, says hello, sends one message of kMaxMessageBytes + 1 and
// reads until the controller ends the stream. Writes the stream's status to
// `report` ("CODE message"); exits 0 when it could say hello, 1 otherwise.
pid_t SendOversizedFrom(const std::string& ns, const std::string& address,
                        const std::string& name, const std::string& dir,
                        const std::string& report) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  auto done = [&](int code, const std::string& text) {
    std::ofstream(report) << text;
    _exit(code);
  };
  const int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) done(1, "cannot enter " + ns);
  TransportOptions tls;
  tls.cert_file = dir + "/" + name + ".crt";
  tls.key_file = dir + "/" + name + ".key";
  tls.ca_file = dir + "/ca.crt";
  auto creds = MakeChannelCredentials(address, tls);
  if (!creds.ok()) done(1, std::string(creds.status().message()));
  // Our own send limit is above what the controller accepts.
  grpc::ChannelArguments args = MakeChannelArguments(tls);
  args.SetMaxSendMessageSize(64 << 20);
  auto stub = v1::AgentService::NewStub(
      grpc::CreateCustomChannel(address, *creds, args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->Connect(&ctx);
  v1::AgentMessage hello;
  hello.mutable_hello()->set_agent_id(name);
  v1::ControllerMessage in;
  if (!stream->Write(hello) || !stream->Read(&in) || !in.has_welcome()) {
    const grpc::Status st = stream->Finish();
    done(1, absl::StrCat("no welcome: ", st.error_code(), " ",
                         st.error_message()));
  }
  v1::AgentMessage big;
  big.mutable_heartbeat()->set_status(std::string(kMaxMessageBytes + 1, 'x'));
  stream->Write(big);
  while (stream->Read(&in)) {
  }
  const grpc::Status st = stream->Finish();
  done(0, absl::StrCat(st.error_code(), " ", st.error_message()));
  return 0;
}

class TlsNetnsFaultsTest : public NetnsFleetTest {
 protected:
  void TearDown() override {
    NetnsFleetTest::TearDown();
    // Whatever a failed test left running (each pid file names a sleeper).
    for (const std::string& file : pid_files_) {
      if (const pid_t pid = PidIn(file); pid > 0 && Alive(pid))
        kill(pid, SIGKILL);
    }
    if (!open_dir_.empty()) std::filesystem::remove_all(open_dir_);
  }

  // A directory under /tmp that other users (the job user) can enter; removed
  // at the end.
  std::string OpenDir() {
    std::string tmpl = "/tmp/bf_netns_faults_XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) return "";
    chmod(tmpl.c_str(), 0755);
    open_dir_ = tmpl;
    return tmpl;
  }

  // Writes `spec` into `work` (with the example inputs) and submits it from
  // agent-a's namespace, retrying while the controller does not listen yet.
  // The experiment's id, 0 on failure.
  int64_t Submit(const std::string& work, const std::string& spec) {
    if (!std::filesystem::exists(work + "/inputs")) {
      std::filesystem::create_directories(work);
      testing::CopyExamples(work);
    }
    testing::WriteFile(work + "/spec.yaml", spec);
    CommandResult r;
    const absl::Time until = absl::Now() + absl::Seconds(30);
    while (absl::Now() < until) {
      r = Cli({"submit", work + "/spec.yaml"});
      if (r.exit_code != 3) break;  // 3: not listening yet
      absl::SleepFor(absl::Milliseconds(200));
    }
    EXPECT_EQ(r.exit_code, 0) << r.all();
    // "submitted experiment ID (number NNN)"
    const std::string said = "submitted experiment ";
    const size_t at = r.out.find(said);
    if (at == std::string::npos) return 0;
    const std::string rest = r.out.substr(at + said.size());
    int64_t id = 0;
    return absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &id) ? id : 0;
  }

  // Waits (at most `timeout`) until experiment `id` is no longer queued or
  // running; its last record.
  ExperimentRecord WaitForEnd(int64_t id, absl::Duration timeout) {
    auto store = OpenStore(store_url_);
    EXPECT_TRUE(store.ok()) << store.status();
    ExperimentRecord e;
    const absl::Time until = absl::Now() + timeout;
    while (store.ok() && absl::Now() < until) {
      auto got = (*store)->GetExperiment(id);
      if (got.ok()) {
        e = *got;
        if (e.state != ExperimentState::kQueued &&
            e.state != ExperimentState::kRunning)
          break;
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
    return e;
  }

  std::string open_dir_;
  std::vector<std::string> pid_files_;
};

TEST_F(TlsNetnsFaultsTest, JobAsTheJobUserCannotReadTheAgentsKey) {
  auto nobody = LookUpJobUser("nobody");
  if (!nobody.ok()) GTEST_SKIP() << "needs user nobody: " << nobody.status();
  const std::string shared = OpenDir();
  ASSERT_FALSE(shared.empty());
  // The agent's TLS files in a directory everyone may enter: only the key's
  // own mode (0600, root) keeps the job from it.
  const std::string tls = shared + "/tls";
  std::filesystem::create_directories(tls);
  chmod(tls.c_str(), 0755);
  for (const char* ext : {".crt", ".key"}) {
    std::filesystem::copy_file(dir_ / (std::string("agent-a") + ext),
                               tls + "/agent-a" + ext);
  }
  ASSERT_EQ(chmod((tls + "/agent-a.key").c_str(), 0600), 0);
  const std::string work = shared + "/work";
  std::filesystem::create_directories(work);
  testing::CopyExamples(work);
  ASSERT_EQ(chmod(work.c_str(), 0777), 0);

  StartController();
  std::vector<std::string> argv =
      AgentArgv(a_ns_, "agent-a", "10.213.1.1:7070", {"--job-user", "nobody"});
  for (std::string& arg : argv) {
    if (arg == dir_ / "agent-a.crt") arg = tls + "/agent-a.crt";
    if (arg == dir_ / "agent-a.key") arg = tls + "/agent-a.key";
  }
  agents_.push_back(std::make_unique<Daemon>(argv, dir_ / "agent-a.log"));

  const std::string key = tls + "/agent-a.key";
  const int64_t id =
      Submit(work, Spec("job-user",
                        absl::StrCat("id -u > uid.txt; cat ", key,
                                     " > got.txt 2> err.txt; echo $? > rc.txt"),
                        "true", 10));
  ASSERT_NE(id, 0);
  const ExperimentRecord e = WaitForEnd(id, absl::Seconds(60));
  EXPECT_EQ(e.state, ExperimentState::kDone)
      << e.state_reason << testing::ReadFile(dir_ / "agent-a.log");
  // The job ran, as nobody, on the agent's host, and was refused the key.
  EXPECT_EQ(absl::StripAsciiWhitespace(testing::ReadFile(work + "/uid.txt")),
            absl::StrCat(nobody->uid))
      << testing::ReadFile(dir_ / "agent-a.log");
  EXPECT_EQ(absl::StripAsciiWhitespace(testing::ReadFile(work + "/rc.txt")),
            "1");
  EXPECT_NE(testing::ReadFile(work + "/err.txt").find("Permission denied"),
            std::string::npos)
      << testing::ReadFile(work + "/err.txt");
  EXPECT_EQ(testing::ReadFile(work + "/got.txt").find("PRIVATE KEY"),
            std::string::npos)
      << "the job read the agent's key";
}

TEST_F(TlsNetnsFaultsTest, AnOrderTheAgentCannotVerifyIsRefusedAndRunsNothing) {
  // agent-b trusts another controller's key: every order it receives fails
  // verification, as a tampered one would.
  ASSERT_TRUE(GenerateSigningKeyPair(dir_ / "other").ok());
  StartController();
  std::vector<std::string> argv =
      AgentArgv(b_ns_, "agent-b", "10.213.2.1:7070");
  for (std::string& arg : argv) {
    if (arg == dir_ / "signing.pub") arg = dir_ / "other/signing.pub";
  }
  agents_.push_back(std::make_unique<Daemon>(argv, dir_ / "agent-b.log"));

  const std::string marker = dir_ / "setup-ran";
  const int64_t id =
      Submit(dir_ / "work", Spec("tampered", "touch " + marker, "true", 10));
  ASSERT_NE(id, 0);
  auto store = OpenStore(store_url_);
  ASSERT_TRUE(store.ok()) << store.status();
  std::optional<AttemptRecord> refused;
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (!refused && absl::Now() < until) {
    auto attempts = (*store)->ListAttempts(id);
    ASSERT_TRUE(attempts.ok()) << attempts.status();
    for (const AttemptRecord& a : *attempts) {
      if (a.state != AttemptState::kRunning) refused = a;
    }
    if (!refused) absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(refused.has_value()) << "no attempt ended within 30s: "
                                   << testing::ReadFile(dir_ / "agent-b.log");
  EXPECT_EQ(refused->agent_id, "agent-b");
  EXPECT_EQ(refused->state, AttemptState::kLost);
  EXPECT_NE(refused->reason.find("signature"), std::string::npos)
      << refused->reason;
  EXPECT_NE(refused->reason.find("nothing was run"), std::string::npos)
      << refused->reason;
  EXPECT_FALSE(std::filesystem::exists(marker))
      << "the setup of a refused order ran";
}

TEST_F(TlsNetnsFaultsTest, AgentKilledMidRunLeavesNoProcessAfterItsRestart) {
  StartController();
  // Not a Daemon: the test kills and reaps it itself (nsenter execs the
  // agent, so the pid is the agent's).
  const pid_t agent =
      testing::Spawn(AgentArgv(a_ns_, "agent-a", "10.213.1.1:7070"),
                     dir_ / "agent-a-first.log");
  ASSERT_GT(agent, 0);
  const std::string daemon_file = dir_ / "daemon.pid";
  const std::string job_file = dir_ / "job.pid";
  pid_files_ = {daemon_file, job_file};
  // The job leaves its session with a daemon, then sleeps; each writes its
  // pid (exec keeps it).
  const int64_t id =
      Submit(dir_ / "work",
             Spec("killed-agent", "true",
                  absl::StrCat("setsid -f sh -c 'echo $$ > ", daemon_file,
                               "; exec sleep 3071'; echo $$ > ", job_file,
                               "; exec sleep 3072"),
                  10));
  ASSERT_NE(id, 0);
  pid_t daemon = 0, job = 0;
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (absl::Now() < until && (daemon == 0 || job == 0)) {
    daemon = PidIn(daemon_file);
    job = PidIn(job_file);
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_NE(daemon, 0) << testing::ReadFile(dir_ / "agent-a-first.log");
  ASSERT_NE(job, 0);
  // Both outlive the agent's SIGKILL: what the restart must clean up (so the
  // test can fail).
  ASSERT_EQ(kill(agent, SIGKILL), 0);
  EXPECT_EQ(testing::WaitFor(agent, absl::Seconds(30)), 128 + SIGKILL);
  EXPECT_TRUE(Alive(daemon));
  EXPECT_TRUE(Alive(job));

  // The restart in the same namespace, same id, same data directory.
  StartAgent(a_ns_, "agent-a", "10.213.1.1:7070");
  const absl::Time gone_by = absl::Now() + absl::Seconds(30);
  while (absl::Now() < gone_by && (Alive(daemon) || Alive(job))) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_FALSE(Alive(daemon)) << "the job's daemon survived the restart";
  EXPECT_FALSE(Alive(job)) << "the job survived the restart";
  std::string log;
  const absl::Time logged_by = absl::Now() + absl::Seconds(10);
  while (absl::Now() < logged_by &&
         log.find("left by jobs of a previous run") == std::string::npos) {
    log = testing::ReadFile(dir_ / "agent-a.log");
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_NE(log.find(absl::StrCat(daemon, " sleep 3071")), std::string::npos)
      << log;
  EXPECT_NE(log.find(absl::StrCat(job, " sleep 3072")), std::string::npos)
      << log;
  Cli({"cancel", absl::StrCat(id)});
}

TEST_F(TlsNetnsFaultsTest, AnOversizedMessageEndsOnlyItsOwnStream) {
  StartController();
  StartAgent(a_ns_, "agent-a", "10.213.1.1:7070");
  CommandResult agents = WaitForAgents({"agent-a"});
  ASSERT_NE(agents.out.find("agent-a"), std::string::npos)
      << agents.all() << testing::ReadFile(dir_ / "agent-a.log");
  // Long enough (40 runs of 50 ms) to be in flight while the other stream
  // is refused.
  const int64_t id =
      Submit(dir_ / "work", Spec("oversized", "true", "sleep 0.05", 20));
  ASSERT_NE(id, 0);
  auto store = OpenStore(store_url_);
  ASSERT_TRUE(store.ok()) << store.status();
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (absl::Now() < until) {
    auto attempts = (*store)->ListAttempts(id);
    if (attempts.ok() && !attempts->empty()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }

  // agent-b's certificate, from agent-b's namespace, over its own link.
  const std::string report = dir_ / "oversized.report";
  const pid_t sender = SendOversizedFrom(b_ns_, "10.213.2.1:7070", "agent-b",
                                         dir_.path(), report);
  ASSERT_GT(sender, 0);
  EXPECT_EQ(testing::WaitFor(sender, absl::Seconds(60)), 0)
      << testing::ReadFile(report);
  // "CODE message": gRPC's own refusal of a message over the receive limit.
  const std::string status = testing::ReadFile(report);
  EXPECT_EQ(status.substr(0, status.find(' ')),
            absl::StrCat(grpc::StatusCode::RESOURCE_EXHAUSTED))
      << status;

  const ExperimentRecord e = WaitForEnd(id, absl::Seconds(60));
  EXPECT_EQ(e.state, ExperimentState::kDone) << e.state_reason;
  auto attempts = (*store)->ListAttempts(id);
  ASSERT_TRUE(attempts.ok());
  for (const AttemptRecord& a : *attempts) {
    EXPECT_EQ(a.agent_id, "agent-a") << "attempt " << a.id << ": " << a.reason;
    EXPECT_EQ(a.state, AttemptState::kDone) << a.reason;
  }
  // The controller's log names the peer whose stream ended.
  const std::string log = testing::ReadFile(dir_ / "controller.log");
  EXPECT_NE(log.find("agent stream from ipv4:10.213.2.2"), std::string::npos)
      << log;
  agents = Cli({"--json", "agents"});
  EXPECT_NE(agents.out.find("agent-a"), std::string::npos) << agents.all();
}

}  // namespace
}  // namespace benchfleet
