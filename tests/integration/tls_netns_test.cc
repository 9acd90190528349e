// The fleet on separate "hosts" (the namespaces of netns_fleet.h): the
// controller in one network namespace, two agents and the CLI in two others,
// so that every byte is real TCP between namespaces over mutual TLS, never
// loopback, every order signed by the controller and verified by the agents.
// The real binaries: benchfleet-controller, benchfleet-agent and benchfleet.
// Root only (skipped with a message otherwise). Faults on the same fleet are
// tls_netns_faults_test.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/integration/netns_fleet.h"
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
