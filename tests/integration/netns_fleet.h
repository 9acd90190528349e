// The network-namespace fleet shared by tls_netns_test and
// tls_netns_faults_test: the controller in one network namespace, two agents
// (and the CLI) in two others, each with its own address on a veth pair, so
// that every byte is real TCP between namespaces over mutual TLS, never
// loopback; every order signed by the controller and verified by the agents.
// The real binaries: benchfleet-controller, benchfleet-agent and benchfleet.
// Needs root (network namespaces), `ip` and `nsenter`; the fixture skips the
// test saying why otherwise. The namespaces (and with them the veths) are
// removed at the end, whatever happened. Not thread-safe (one per test).
#ifndef BENCHFLEET_TESTS_INTEGRATION_NETNS_FLEET_H_
#define BENCHFLEET_TESTS_INTEGRATION_NETNS_FLEET_H_

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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

using ::benchfleet::testing::CommandResult;
using ::benchfleet::testing::Daemon;
using ::benchfleet::testing::RunCommand;
using ::benchfleet::testing::TempDir;

class NetnsFleetTest : public ::testing::Test {
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
    ca_ = *ca;
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
    // The quickstart, as README's tour runs it, with max_cv and the load
    // gate raised: other tests and builds may share this machine's two cores.
    std::filesystem::create_directories(dir_ / "work");
    testing::CopyExamples(dir_ / "work");
    std::string quickstart = testing::ReadFile(dir_ / "work/quickstart.yaml");
    quickstart = absl::StrReplaceAll(
        quickstart,
        {{"max_cv: 10%", "max_cv: 30%"}, {"max_load: 8", "max_load: 64"}});
    testing::WriteFile(dir_ / "work/quickstart.yaml", quickstart);
    // Another user's token, with too low a role.
    auto viewer = IssueToken(store->get(), "vera", "viewer", "", absl::Now());
    ASSERT_TRUE(viewer.ok()) << viewer.status();
    testing::WriteFile(dir_ / "vera.token", viewer->text + "\n");
    std::filesystem::permissions(dir_ / "vera.token",
                                 std::filesystem::perms::owner_read |
                                     std::filesystem::perms::owner_write);
    vera_token_id_ = viewer->record.id;
    // An admin's, to manage tokens.
    auto admin = IssueToken(store->get(), "root", "admin", "", absl::Now());
    ASSERT_TRUE(admin.ok()) << admin.status();
    testing::WriteFile(dir_ / "root.token", admin->text + "\n");
    std::filesystem::permissions(dir_ / "root.token",
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

  // benchfleet-agent `name` in namespace `ns`, with its own certificate, the
  // controller's public key and `extra` flags (by default the test runs as
  // root and its jobs are harmless, hence --allow-root-jobs).
  std::vector<std::string> AgentArgv(const std::string& ns,
                                     const std::string& name,
                                     const std::string& controller_addr,
                                     const std::vector<std::string>& extra = {
                                         "--allow-root-jobs"}) {
    std::vector<std::string> argv =
        InNs(ns, {build_ + "/agent/benchfleet-agent", "--controller",
                  controller_addr, "--tls-cert", dir_ / (name + ".crt"),
                  "--tls-key", dir_ / (name + ".key"), "--ca", dir_ / "ca.crt",
                  "--controller-public-key", dir_ / "signing.pub", "--workdir",
                  dir_ / name, "--lock-file", dir_ / (name + ".lock"),
                  "--max-competing-cpu", "0", "--cooldown", "0s"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  void StartAgent(const std::string& ns, const std::string& name,
                  const std::string& controller_addr,
                  const std::vector<std::string>& extra = {
                      "--allow-root-jobs"}) {
    agents_.push_back(std::make_unique<Daemon>(
        AgentArgv(ns, name, controller_addr, extra), dir_ / (name + ".log")));
  }

  // Waits (30 s at most) until the controller lists every one of `names` as
  // registered; the last `agents` listing.
  CommandResult WaitForAgents(const std::vector<std::string>& names) {
    CommandResult agents;
    const absl::Time until = absl::Now() + absl::Seconds(30);
    while (absl::Now() < until) {
      agents = Cli({"--json", "agents"});
      bool all = agents.exit_code == 0;
      for (const std::string& name : names)
        all = all && agents.out.find(name) != std::string::npos;
      if (all) break;
      absl::SleepFor(absl::Milliseconds(300));
    }
    return agents;
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
  KeyAndCert ca_;
  int64_t vera_token_id_ = 0;
  std::string ip_, nsenter_, build_, ctl_ns_, a_ns_, b_ns_, store_url_;
  std::vector<std::string> made_;
  std::unique_ptr<Daemon> controller_;
  std::vector<std::unique_ptr<Daemon>> agents_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_TESTS_INTEGRATION_NETNS_FLEET_H_
