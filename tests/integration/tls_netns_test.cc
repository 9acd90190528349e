// The fleet on separate "hosts" (the namespaces of netns_fleet.h): the
// controller in one network namespace, two agents and the CLI in two others,
// so that every byte is real TCP between namespaces over mutual TLS, never
// loopback, every order signed by the controller and verified by the agents.
// The real binaries: benchfleet-controller, benchfleet-agent and benchfleet.
// Every refusal of tls_fleet_test (loopback) is made again here across the
// network: no client certificate, a self-signed one, an expired one, another
// agent's, a missing, wrong, revoked or too-low-role token. Root only
// (skipped with a message otherwise). Faults on the same fleet are
// tls_netns_faults_test.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/integration/netns_fleet.h"
#include "tests/testing/raw_tls.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using TlsNetnsTest = NetnsFleetTest;

TEST_F(TlsNetnsTest, TwoAgentsOnOtherHostsRunAnExperimentOverMutualTls) {
  StartController();
  StartAgent(a_ns_, "agent-a", "10.213.1.1:7070");
  StartAgent(b_ns_, "agent-b", "10.213.2.1:7070");

  // Both agents register (over their own links).
  CommandResult agents = WaitForAgents({"agent-a", "agent-b"});
  ASSERT_NE(agents.out.find("agent-a"), std::string::npos)
      << agents.all() << testing::ReadFile(dir_ / "controller.log")
      << testing::ReadFile(dir_ / "agent-a.log");
  ASSERT_NE(agents.out.find("agent-b"), std::string::npos)
      << agents.all() << testing::ReadFile(dir_ / "agent-b.log");

  CommandResult who = Cli({"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.all();
  EXPECT_NE(who.out.find("alice (submitter)"), std::string::npos) << who.all();

  CommandResult run = Cli({"submit", "--watch", dir_ / "work/quickstart.yaml"},
                          absl::Minutes(4));
  EXPECT_NE(run.out.find("Verdict: KEEP"), std::string::npos) << run.all();
  EXPECT_NE(run.out.find("Verdict: KILL"), std::string::npos) << run.all();
  EXPECT_EQ(run.exit_code, 0)
      << run.all() << testing::ReadFile(dir_ / "controller.log");
  auto store = OpenStore(store_url_);
  ASSERT_TRUE(store.ok());
  auto list = (*store)->ListExperiments(10);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].state, ExperimentState::kDone);
  EXPECT_EQ((*list)[0].submitted_by, "alice");
}

TEST_F(TlsNetnsTest, WrongIdentitiesAreRefusedAcrossTheNetwork) {
  StartController();
  // agent-b's certificate, claiming to be agent-a; a certificate from
  // another CA; each from its own namespace.
  auto rogue_ca =
      MakeCertificateAuthority("rogue", absl::Now() + absl::Hours(24));
  ASSERT_TRUE(rogue_ca.ok());
  CertificateRequest req;
  req.common_name = "agent-a";
  req.sans = {"agent-a"};
  req.client_auth = true;
  auto rogue = IssueCertificate(*rogue_ca, req);
  ASSERT_TRUE(rogue.ok());
  ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "rogue", *rogue).ok());
  auto agent = [&](const std::string& ns, const std::string& cert,
                   const std::string& id, const std::string& addr) {
    return std::make_unique<Daemon>(
        InNs(ns, {build_ + "/agent/benchfleet-agent", "--controller", addr,
                  "--tls-cert", dir_ / (cert + ".crt"), "--tls-key",
                  dir_ / (cert + ".key"), "--ca", dir_ / "ca.crt", "--id", id,
                  "--controller-public-key", dir_ / "signing.pub", "--workdir",
                  dir_ / (id + cert), "--lock-file",
                  dir_ / (id + cert + ".lock"), "--allow-root-jobs"}),
        dir_ / (cert + "-as-" + id + ".log"));
  };
  auto impostor = agent(b_ns_, "agent-b", "agent-a", "10.213.2.1:7070");
  auto stranger = agent(a_ns_, "rogue", "agent-a", "10.213.1.1:7070");

  const absl::Time until = absl::Now() + absl::Seconds(20);
  std::string log;
  while (absl::Now() < until) {
    log = testing::ReadFile(dir_ / "controller.log");
    if (log.find("certificate is for 'agent-b'") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_NE(log.find("certificate is for 'agent-b'"), std::string::npos) << log;
  EXPECT_NE(log.find("10.213.2.2"), std::string::npos)
      << "the refusal names the peer: " << log;
  CommandResult agents = Cli({"--json", "agents"});
  EXPECT_EQ(agents.exit_code, 0) << agents.all();
  EXPECT_EQ(agents.out.find("agent-a"), std::string::npos)
      << "neither impostor may register: " << agents.all();
  impostor.reset();
  stranger.reset();
  EXPECT_EQ(testing::ReadFile(dir_ / "rogue-as-agent-a.log").find("welcome"),
            std::string::npos);

  // Tokens across the network: wrong (exit 3), too low a role (exit 1).
  CommandResult wrong = Cli({"list"}, absl::Seconds(60), "wrong");
  EXPECT_EQ(wrong.exit_code, 3) << wrong.all();
  EXPECT_NE(wrong.err.find("not recognised"), std::string::npos) << wrong.all();
  CommandResult viewer =
      Cli({"submit", dir_ / "work/quickstart.yaml"}, absl::Seconds(60), "vera");
  EXPECT_EQ(viewer.exit_code, 1) << viewer.all();
  EXPECT_NE(viewer.err.find("has role viewer"), std::string::npos)
      << viewer.all();
}

// In a forked child (the test process never starts gRPC itself): enters
// network namespace `ns` and says hello on the agent stream to `address` as
// `id` once per identity in `cases`, bypassing the product's own client-side
// checks. Writes one line per case to `report`: "NAME CODE message".
pid_t HellosFrom(
    const std::string& ns, const std::string& address, const std::string& id,
    const std::string& ca_pem,
    const std::vector<std::pair<std::string, const KeyAndCert*>>& cases,
    const std::string& report) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  std::ofstream out(report);
  const int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
    out << "cannot enter " << ns << "\n";
    out.close();
    _exit(1);
  }
  for (const auto& [name, identity] : cases) {
    const grpc::Status st =
        testing::AgentHello(address, testing::RawTls(ca_pem, identity), id);
    out << name << " " << st.error_code() << " " << st.error_message() << "\n";
  }
  out.close();
  _exit(0);
}

TEST_F(TlsNetnsTest, BadCertificatesAndTokensAreRefusedAcrossTheNetwork) {
  StartController();
  CommandResult up = WaitForAgents({});
  ASSERT_EQ(up.exit_code, 0)
      << up.all() << testing::ReadFile(dir_ / "controller.log");

  // From agent-b's namespace, over its own link, claiming to be agent-b:
  // its own certificate (the control), none, a self-signed one, and one from
  // the fleet's CA that expired yesterday.
  auto self_signed =
      MakeCertificateAuthority("agent-b", absl::Now() + absl::Hours(24));
  ASSERT_TRUE(self_signed.ok()) << self_signed.status();
  CertificateRequest req;
  req.common_name = "agent-b";
  req.sans = {"agent-b"};
  req.client_auth = true;
  req.not_before = absl::Now() - absl::Hours(48);
  req.not_after = absl::Now() - absl::Hours(24);
  auto expired = IssueCertificate(ca_, req);
  ASSERT_TRUE(expired.ok()) << expired.status();
  KeyAndCert own;
  own.cert_pem = testing::ReadFile(dir_ / "agent-b.crt");
  own.key_pem = testing::ReadFile(dir_ / "agent-b.key");
  const std::string report = dir_ / "hellos.report";
  const pid_t child =
      HellosFrom(b_ns_, "10.213.2.1:7070", "agent-b", ca_.cert_pem,
                 {{"own", &own},
                  {"none", nullptr},
                  {"self-signed", &*self_signed},
                  {"expired", &*expired}},
                 report);
  ASSERT_GT(child, 0);
  ASSERT_EQ(testing::WaitFor(child, absl::Seconds(90)), 0)
      << testing::ReadFile(report);
  std::map<std::string, std::pair<int, std::string>> got;
  for (absl::string_view line :
       absl::StrSplit(testing::ReadFile(report), '\n', absl::SkipEmpty())) {
    std::vector<std::string> parts =
        absl::StrSplit(line, absl::MaxSplits(' ', 2));
    int code = -1;
    ASSERT_GE(parts.size(), 2u) << line;
    ASSERT_TRUE(absl::SimpleAtoi(parts[1], &code)) << line;
    got[parts[0]] = {code, parts.size() > 2 ? parts[2] : ""};
  }
  ASSERT_EQ(got.size(), 4u) << testing::ReadFile(report);
  EXPECT_EQ(got["own"].first, grpc::StatusCode::OK) << got["own"].second;
  // No client certificate: the handshake passes (users connect that way),
  // the agent stream does not.
  EXPECT_EQ(got["none"].first, grpc::StatusCode::UNAUTHENTICATED)
      << got["none"].second;
  EXPECT_NE(got["none"].second.find("client certificate"), std::string::npos)
      << got["none"].second;
  // The handshake itself fails for the other two.
  EXPECT_EQ(got["self-signed"].first, grpc::StatusCode::UNAVAILABLE)
      << got["self-signed"].second;
  EXPECT_EQ(got["expired"].first, grpc::StatusCode::UNAVAILABLE)
      << got["expired"].second;

  // Tokens from agent-a's namespace: none at all (exit 3, "no token").
  CommandResult none = RunCommand(
      InNs(a_ns_, {build_ + "/cli/benchfleet", "--controller",
                   "10.213.1.1:7070", "--ca", dir_ / "ca.crt", "list"}),
      dir_.path(), absl::Seconds(60));
  EXPECT_EQ(none.exit_code, 3) << none.all();
  EXPECT_NE(none.err.find("no token"), std::string::npos) << none.all();

  // Revoked by the admin: vera's token works, then stops working (within the
  // controller's token cache, 5 s), with its own error.
  CommandResult before = Cli({"list"}, absl::Seconds(60), "vera");
  EXPECT_EQ(before.exit_code, 0) << before.all();
  CommandResult revoke = Cli({"token", "revoke", absl::StrCat(vera_token_id_)},
                             absl::Seconds(60), "root");
  ASSERT_EQ(revoke.exit_code, 0) << revoke.all();
  CommandResult after;
  const absl::Time until = absl::Now() + absl::Seconds(15);
  while (absl::Now() < until) {
    after = Cli({"list"}, absl::Seconds(60), "vera");
    if (after.exit_code != 0) break;
    absl::SleepFor(absl::Milliseconds(500));
  }
  EXPECT_EQ(after.exit_code, 3) << after.all();
  EXPECT_NE(after.err.find("revoked"), std::string::npos) << after.all();
}

TEST_F(TlsNetnsTest, PlaintextToAnotherHostIsRefusedWithoutInsecure) {
  StartController();
  CommandResult agent = RunCommand(
      InNs(a_ns_, {build_ + "/agent/benchfleet-agent", "--controller",
                   "10.213.1.1:7070", "--id", "plain", "--workdir",
                   dir_ / "plain", "--lock-file", dir_ / "plain.lock",
                   // Everything but TLS is in order.
                   "--controller-public-key", dir_ / "signing.pub",
                   "--allow-root-jobs"}),
      dir_.path(), absl::Seconds(30));
  EXPECT_NE(agent.exit_code, 0) << agent.all();
  EXPECT_NE(agent.all().find("--insecure"), std::string::npos) << agent.all();

  CommandResult cli =
      RunCommand(InNs(a_ns_, {build_ + "/cli/benchfleet", "--controller",
                              "10.213.1.1:7070", "list"}),
                 dir_.path(), absl::Seconds(30));
  EXPECT_EQ(cli.exit_code, 2) << cli.all();
  EXPECT_NE(cli.err.find("--insecure"), std::string::npos) << cli.all();

  CommandResult ctl =
      RunCommand(InNs(b_ns_, {build_ + "/controller/benchfleet-controller",
                              "--listen", "10.213.2.2:7071", "--store",
                              "sqlite://" + (dir_ / "other.db")}),
                 dir_.path(), absl::Seconds(30));
  EXPECT_NE(ctl.exit_code, 0) << ctl.all();
  EXPECT_NE(ctl.err.find("--insecure"), std::string::npos) << ctl.all();
}

}  // namespace
}  // namespace benchfleet
