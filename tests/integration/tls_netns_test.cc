// The fleet on separate "hosts": the controller in one network namespace, two
// agents and the CLI in two others, each with its own address on a veth pair,
// so that every byte is real TCP between namespaces over mutual TLS, never
// loopback, every order signed by the controller and verified by the
// agents. The real binaries: benchfleet-controller, benchfleet-agent and
// benchfleet. Needs root (network namespaces) and `ip`; skipped with a
// message otherwise. The namespaces (and with them the veths) are removed at
// the end, whatever happened.
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/certs.h"
#include "common/signing.h"
#include "controller/auth/tokens.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::CommandResult;
using ::benchfleet::testing::Daemon;
using ::benchfleet::testing::RunCommand;
using ::benchfleet::testing::TempDir;

class TlsNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
    if (!std::filesystem::exists("/usr/sbin/ip") &&
        !std::filesystem::exists("/sbin/ip")) {
      GTEST_SKIP() << "needs `ip` (iproute2)";
    }
    ip_ = std::filesystem::exists("/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip";
    nsenter_ = std::filesystem::exists("/usr/bin/nsenter") ? "/usr/bin/nsenter"
                                                           : "/bin/nsenter";
    if (!std::filesystem::exists(nsenter_))
      GTEST_SKIP() << "needs `nsenter` (util-linux)";
    const char* build_dir = std::getenv("BENCHFLEET_BUILD_DIR");
    ASSERT_NE(build_dir, nullptr) << "run through ctest (BENCHFLEET_BUILD_DIR)";
    build_ = build_dir;
    const std::string tag = absl::StrCat("bf", getpid());
    ctl_ns_ = tag + "c";
    a_ns_ = tag + "a";
    b_ns_ = tag + "b";
    // Setting namespaces up is the test's own scaffolding: a host (or a
    // chroot) that does not allow it skips the test, saying why.
    if (const std::string why = MakeNamespaces(); !why.empty()) {
      GTEST_SKIP() << "cannot build network namespaces on this host: " << why;
    }
    MakeCertificatesAndTokens();
  }

  void TearDown() override {
    agents_.clear();
    controller_.reset();
    for (const std::string& ns : made_) {
      Ip("", {"netns", "del", ns});
    }
  }

  // Runs `ip ARGS` inside namespace `ns` ("" = here); "" on success, else
  // the command and its output.
  std::string Ip(const std::string& ns, std::vector<std::string> args) {
    args.insert(args.begin(), ip_);
    if (!ns.empty()) args = InNs(ns, args);
    CommandResult r = RunCommand(args, dir_.path(), absl::Seconds(20));
    return r.exit_code == 0
               ? ""
               : absl::StrCat(absl::StrJoin(args, " "), ": ", r.all());
  }

  // ctl  vA 10.213.1.1/24 <-> pA 10.213.1.2/24  agent-a (and the CLI)
  // ctl  vB 10.213.2.1/24 <-> pB 10.213.2.2/24  agent-b
  // The veths are made inside the controller's namespace and their peers
  // moved straight into the agents': the host's own network is never touched.
  // "" on success, else what failed.
  std::string MakeNamespaces() {
    for (const std::string& ns : {ctl_ns_, a_ns_, b_ns_}) {
      if (std::string e = Ip("", {"netns", "add", ns}); !e.empty()) return e;
      made_.push_back(ns);
      if (std::string e = Ip(ns, {"link", "set", "lo", "up"}); !e.empty())
        return e;
    }
    struct Link {
      std::string ns, ctl_if, peer_if, ctl_addr, peer_addr;
    };
    for (const Link& l :
         {Link{a_ns_, "vA", "pA", "10.213.1.1/24", "10.213.1.2/24"},
          Link{b_ns_, "vB", "pB", "10.213.2.1/24", "10.213.2.2/24"}}) {
      for (const auto& [ns, args] :
           std::vector<std::pair<std::string, std::vector<std::string>>>{
               {ctl_ns_,
                {"link", "add", l.ctl_if, "type", "veth", "peer", "name",
                 l.peer_if, "netns", l.ns}},
               {ctl_ns_, {"addr", "add", l.ctl_addr, "dev", l.ctl_if}},
               {ctl_ns_, {"link", "set", l.ctl_if, "up"}},
               {l.ns, {"addr", "add", l.peer_addr, "dev", l.peer_if}},
               {l.ns, {"link", "set", l.peer_if, "up"}}}) {
        if (std::string e = Ip(ns, args); !e.empty()) return e;
      }
    }
    return "";
  }

  void MakeCertificatesAndTokens() {
    auto ca =
        MakeCertificateAuthority("netns CA", absl::Now() + absl::Hours(24));
    ASSERT_TRUE(ca.ok()) << ca.status();
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "ca", *ca).ok());
    CertificateRequest ctl;
    ctl.common_name = "controller";
    ctl.sans = {"10.213.1.1", "10.213.2.1"};
    ctl.server_auth = true;
    auto ctl_cert = IssueCertificate(*ca, ctl);
    ASSERT_TRUE(ctl_cert.ok()) << ctl_cert.status();
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "controller", *ctl_cert).ok());
    for (const char* name : {"agent-a", "agent-b"}) {
      CertificateRequest req;
      req.common_name = name;
      req.sans = {name};
      req.client_auth = true;
      auto cert = IssueCertificate(*ca, req);
      ASSERT_TRUE(cert.ok()) << cert.status();
      ASSERT_TRUE(WriteKeyAndCert(dir_.path(), name, *cert).ok());
    }
    ASSERT_TRUE(GenerateSigningKeyPair(dir_.path()).ok());
    store_url_ = "sqlite://" + (dir_ / "fleet.db");
    auto store = OpenStore(store_url_);
    ASSERT_TRUE(store.ok()) << store.status();
    auto token =
        IssueToken(store->get(), "alice", "submitter", "", absl::Now());
    ASSERT_TRUE(token.ok()) << token.status();
    testing::WriteFile(dir_ / "alice.token", token->text + "\n");
    std::filesystem::permissions(dir_ / "alice.token",
                                 std::filesystem::perms::owner_read |
                                     std::filesystem::perms::owner_write);
    // The quickstart, as README's tour runs it (max_cv raised: other tests
    // may share this machine's two cores).
    std::filesystem::create_directories(dir_ / "work");
    testing::CopyExamples(dir_ / "work");
    std::string quickstart = testing::ReadFile(dir_ / "work/quickstart.yaml");
    quickstart =
        absl::StrReplaceAll(quickstart, {{"max_cv: 10%", "max_cv: 30%"}});
    testing::WriteFile(dir_ / "work/quickstart.yaml", quickstart);
    // Another user's token, with too low a role.
    auto viewer = IssueToken(store->get(), "vera", "viewer", "", absl::Now());
    ASSERT_TRUE(viewer.ok()) << viewer.status();
    testing::WriteFile(dir_ / "vera.token", viewer->text + "\n");
    std::filesystem::permissions(dir_ / "vera.token",
                                 std::filesystem::perms::owner_read |
                                     std::filesystem::perms::owner_write);
    testing::WriteFile(dir_ / "wrong.token", "bft_wrong\n");
    std::filesystem::permissions(dir_ / "wrong.token",
                                 std::filesystem::perms::owner_read |
                                     std::filesystem::perms::owner_write);
  }

  std::vector<std::string> InNs(const std::string& ns,
                                std::vector<std::string> argv) {
    // nsenter only enters the network namespace (`ip netns exec` also
    // remounts /sys, which a chroot does not allow); it execs, so the pid is
    // the program's.
    argv.insert(argv.begin(), {nsenter_, "--net=/run/netns/" + ns});
    return argv;
  }

  void StartController() {
    controller_ = std::make_unique<Daemon>(
        InNs(ctl_ns_,
             {build_ + "/controller/benchfleet-controller", "--listen",
              "0.0.0.0:7070", "--store", store_url_, "--tls-cert",
              dir_ / "controller.crt", "--tls-key", dir_ / "controller.key",
              "--client-ca", dir_ / "ca.crt", "--signing-key",
              dir_ / "signing.key", "--lease-timeout", "10s"}),
        dir_ / "controller.log");
  }

  void StartAgent(const std::string& ns, const std::string& name,
                  const std::string& controller_addr) {
    agents_.push_back(std::make_unique<Daemon>(
        InNs(ns, {build_ + "/agent/benchfleet-agent", "--controller",
                  controller_addr, "--tls-cert", dir_ / (name + ".crt"),
                  "--tls-key", dir_ / (name + ".key"), "--ca", dir_ / "ca.crt",
                  "--controller-public-key", dir_ / "signing.pub", "--workdir",
                  dir_ / name, "--lock-file", dir_ / (name + ".lock"),
                  "--max-competing-cpu", "0", "--cooldown", "0s",
                  // The test runs as root; its jobs are `true`.
                  "--allow-root-jobs"}),
        dir_ / (name + ".log")));
  }

  // The CLI in agent-a's namespace, with `token`'s token file.
  CommandResult Cli(std::vector<std::string> args,
                    absl::Duration timeout = absl::Seconds(60),
                    const std::string& token = "alice") {
    std::vector<std::string> argv = {build_ + "/cli/benchfleet",
                                     "--controller",
                                     "10.213.1.1:7070",
                                     "--ca",
                                     dir_ / "ca.crt",
                                     "--token-file",
                                     dir_ / (token + ".token")};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(InNs(a_ns_, argv), dir_.path(), timeout);
  }

  TempDir dir_;
  std::string ip_, nsenter_, build_, ctl_ns_, a_ns_, b_ns_, store_url_;
  std::vector<std::string> made_;
  std::unique_ptr<Daemon> controller_;
  std::vector<std::unique_ptr<Daemon>> agents_;
};

TEST_F(TlsNetnsTest, TwoAgentsOnOtherHostsRunAnExperimentOverMutualTls) {
  StartController();
  StartAgent(a_ns_, "agent-a", "10.213.1.1:7070");
  StartAgent(b_ns_, "agent-b", "10.213.2.1:7070");

  // Both agents register (over their own links).
  CommandResult agents;
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (absl::Now() < until) {
    agents = Cli({"--json", "agents"});
    if (agents.exit_code == 0 &&
        agents.out.find("agent-a") != std::string::npos &&
        agents.out.find("agent-b") != std::string::npos)
      break;
    absl::SleepFor(absl::Milliseconds(300));
  }
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
