// A controller on TLS (DESIGN.md §7), over real gRPC and real handshakes on
// loopback: agents authenticate with client certificates (none, self-signed,
// another agent's and expired ones are refused), users with tokens (missing,
// wrong, revoked and too-low-role tokens each get their own error), an
// experiment runs end to end over mutual TLS with `submitted_by` taken from
// the token, the CLI maps the errors to its exit codes, and a replaced
// certificate is picked up without a restart. The same over separate network
// namespaces is tls_netns_test.
#include <grpcpp/create_channel.h>

#include <filesystem>
#include <thread>

#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "benchfleet/v1/agent.grpc.pb.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/certs.h"
#include "common/credentials.h"
#include "controller/auth/tokens.h"
#include "controller/controller.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/testing/fleet_client.h"
#include "tests/testing/raw_tls.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::RawTls;
using ::benchfleet::testing::TempDir;

constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: tls-aa
benchmark:
  command: "true"
  inputs: [{name: one, path: inputs/tiny.txt}]
  warmup: 0
  runs: 10
variants:
  - {name: baseline}
  - {name: same}
verdict: {max_cv: 1000%}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

class TlsFleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Time now = absl::Now();
    auto ca = MakeCertificateAuthority("test CA", now + absl::Hours(48));
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *ca;
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "ca", ca_).ok());
    controller_cert_ = Issue(ca_, "controller", {"127.0.0.1", "localhost"},
                             true, false, now + absl::Hours(24));
    ASSERT_TRUE(
        WriteKeyAndCert(dir_.path(), "controller", controller_cert_).ok());
    agent_a_ =
        Issue(ca_, "agent-a", {"agent-a"}, false, true, now + absl::Hours(24));
    agent_b_ =
        Issue(ca_, "agent-b", {"agent-b"}, false, true, now + absl::Hours(24));
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "agent-a", agent_a_).ok());

    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / "fleet.db");
    copts.transport.cert_file = dir_ / "controller.crt";
    copts.transport.key_file = dir_ / "controller.key";
    copts.transport.ca_file = dir_ / "ca.crt";
    copts.transport.refresh_interval_s = 1;
    copts.token_cache_ttl = absl::ZeroDuration();
    auto controller = Controller::Create(copts);
    ASSERT_TRUE(controller.ok()) << controller.status();
    controller_ = std::move(*controller);
    address_ = controller_->address();

    auto store = OpenStore(copts.store_url);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    for (auto [user, role] :
         {std::pair{"alice", "submitter"}, std::pair{"bob", "submitter"},
          std::pair{"vera", "viewer"}, std::pair{"root", "admin"}}) {
      auto issued = IssueToken(store_.get(), user, role, "", absl::Now());
      ASSERT_TRUE(issued.ok()) << issued.status();
      tokens_[user] = issued->text;
      token_ids_[user] = issued->record.id;
    }
  }

  static KeyAndCert Issue(const KeyAndCert& ca, const std::string& cn,
                          std::vector<std::string> sans, bool server,
                          bool client, absl::Time not_after,
                          absl::Time not_before = absl::InfinitePast()) {
    CertificateRequest req;
    req.common_name = cn;
    req.sans = std::move(sans);
    req.server_auth = server;
    req.client_auth = client;
    req.not_after = not_after;
    req.not_before = not_before;
    auto made = IssueCertificate(ca, req);
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? *made : KeyAndCert{};
  }

  // A user-API stub over TLS with `token` ("" = none).
  std::unique_ptr<v1::FleetService::Stub> UserStub(const std::string& token) {
    TransportOptions t;
    t.ca_file = dir_ / "ca.crt";
    t.token = token;
    auto creds = MakeChannelCredentials(address_, t);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return v1::FleetService::NewStub(
        grpc::CreateCustomChannel(address_, *creds, MakeChannelArguments(t)));
  }

  grpc::Status Hello(std::shared_ptr<grpc::ChannelCredentials> creds,
                     const std::string& id) {
    return testing::AgentHello(address_, std::move(creds), id);
  }

  grpc::Status Submit(v1::FleetService::Stub& stub, int64_t* id = nullptr) {
    std::filesystem::create_directories(dir_ / "work/inputs");
    testing::WriteFile(dir_ / "work/inputs/tiny.txt", "x");
    v1::SubmitRequest req;
    req.set_spec_yaml(kSpec);
    req.set_spec_path("tls.yaml");
    req.set_workdir(dir_ / "work");
    req.set_submitted_by("someone-else");  // must be ignored
    v1::SubmitResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    grpc::Status st = stub.Submit(&ctx, req, &resp);
    if (id != nullptr) *id = resp.experiment_id();
    return st;
  }

  grpc::Status Cancel(v1::FleetService::Stub& stub, int64_t id) {
    v1::CancelExperimentRequest req;
    req.set_id(id);
    v1::Experiment resp;
    grpc::ClientContext ctx;
    return stub.CancelExperiment(&ctx, req, &resp);
  }

  TempDir dir_;
  KeyAndCert ca_, controller_cert_, agent_a_, agent_b_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Store> store_;
  std::string address_;
  std::map<std::string, std::string> tokens_;
  std::map<std::string, int64_t> token_ids_;
};

TEST_F(TlsFleetTest, AnExperimentRunsOverMutualTlsAndTheTokenSaysWhoSubmitted) {
  AgentOptions aopts;
  aopts.controller = address_;
  aopts.id = "agent-a";
  aopts.workdir = dir_ / "agent";
  aopts.lock_file = dir_ / "agent.lock";
  aopts.max_competing_cpu = 0;
  aopts.transport.cert_file = dir_ / "agent-a.crt";
  aopts.transport.key_file = dir_ / "agent-a.key";
  aopts.transport.ca_file = dir_ / "ca.crt";
  PosixProcessRunner runner;
  auto agent = Agent::Create(aopts, &runner);
  ASSERT_TRUE(agent.ok()) << agent.status();
  Agent* a = agent->get();
  std::thread agent_thread([a] { EXPECT_TRUE(a->Run().ok()); });

  auto alice = UserStub(tokens_["alice"]);
  int64_t id = 0;
  grpc::Status st = Submit(*alice, &id);
  ASSERT_TRUE(st.ok()) << st.error_message();
  v1::Experiment e =
      testing::WatchToEnd(*alice, id, nullptr, std::chrono::minutes(2));
  EXPECT_EQ(e.state(), "done") << e.state_reason();
  ASSERT_GE(e.attempt_list_size() + 1, 1);
  v1::Experiment detail = testing::GetExperiment(*alice, id);
  ASSERT_GE(detail.attempt_list_size(), 1);
  EXPECT_EQ(detail.attempt_list(0).agent_id(), "agent-a");
  auto stored = store_->GetExperiment(id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->submitted_by, "alice");

  a->Shutdown();
  agent_thread.join();
}

TEST_F(TlsFleetTest, AgentStreamsNeedTheirOwnValidCertificate) {
  const std::string ca_pem = ca_.cert_pem;
  EXPECT_TRUE(Hello(RawTls(ca_pem, &agent_a_), "agent-a").ok());

  // No client certificate: the handshake passes (users connect that way),
  // the agent stream does not.
  grpc::Status none = Hello(RawTls(ca_pem, nullptr), "agent-a");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << none.error_message();
  EXPECT_NE(none.error_message().find("client certificate"), std::string::npos)
      << none.error_message();

  // Another agent's certificate, claiming agent-a.
  grpc::Status other = Hello(RawTls(ca_pem, &agent_b_), "agent-a");
  EXPECT_EQ(other.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << other.error_message();
  EXPECT_NE(other.error_message().find("certificate is for 'agent-b'"),
            std::string::npos)
      << other.error_message();

  // Self-signed (another CA): the handshake itself fails.
  auto rogue_ca =
      MakeCertificateAuthority("rogue", absl::Now() + absl::Hours(24));
  ASSERT_TRUE(rogue_ca.ok());
  KeyAndCert rogue = Issue(*rogue_ca, "agent-a", {"agent-a"}, false, true,
                           absl::Now() + absl::Hours(24));
  grpc::Status self_signed = Hello(RawTls(ca_pem, &rogue), "agent-a");
  EXPECT_EQ(self_signed.error_code(), grpc::StatusCode::UNAVAILABLE)
      << self_signed.error_message();

  // Expired yesterday.
  KeyAndCert expired =
      Issue(ca_, "agent-a", {"agent-a"}, false, true,
            absl::Now() - absl::Hours(24), absl::Now() - absl::Hours(48));
  grpc::Status old = Hello(RawTls(ca_pem, &expired), "agent-a");
  EXPECT_EQ(old.error_code(), grpc::StatusCode::UNAVAILABLE)
      << old.error_message();

  // The product's own client refuses to present an expired certificate.
  ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "expired", expired).ok());
  TransportOptions t;
  t.cert_file = dir_ / "expired.crt";
  t.key_file = dir_ / "expired.key";
  t.ca_file = dir_ / "ca.crt";
  auto refused = MakeChannelCredentials(address_, t);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("has expired"), std::string::npos)
      << refused.status();
}

TEST_F(TlsFleetTest, TokensAreRequiredCheckedAndRevocable) {
  v1::ListExperimentsRequest req;
  v1::ListExperimentsResponse resp;
  auto list = [&](const std::string& token) {
    auto stub = UserStub(token);
    grpc::ClientContext ctx;
    return stub->ListExperiments(&ctx, req, &resp);
  };
  grpc::Status missing = list("");
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(missing.error_message().find("no token"), std::string::npos)
      << missing.error_message();

  grpc::Status wrong = list("bft_thisisnotatoken");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(wrong.error_message().find("not recognised"), std::string::npos)
      << wrong.error_message();

  EXPECT_TRUE(list(tokens_["vera"]).ok());

  // A viewer cannot submit.
  auto vera = UserStub(tokens_["vera"]);
  grpc::Status viewer_submit = Submit(*vera);
  EXPECT_EQ(viewer_submit.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(viewer_submit.error_message().find("has role viewer"),
            std::string::npos)
      << viewer_submit.error_message();

  // A submitter cancels its own experiments, not another's; an admin any.
  auto alice = UserStub(tokens_["alice"]);
  auto bob = UserStub(tokens_["bob"]);
  int64_t alices = 0, bobs = 0;
  ASSERT_TRUE(Submit(*alice, &alices).ok());
  ASSERT_TRUE(Submit(*bob, &bobs).ok());
  grpc::Status not_hers = Cancel(*alice, bobs);
  EXPECT_EQ(not_hers.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(not_hers.error_message().find("submitted by 'bob'"),
            std::string::npos)
      << not_hers.error_message();
  EXPECT_TRUE(Cancel(*alice, alices).ok());
  auto admin = UserStub(tokens_["root"]);
  EXPECT_TRUE(Cancel(*admin, bobs).ok());

  // Only admins manage tokens; a revoked token stops working.
  v1::RevokeTokenRequest revoke;
  revoke.set_id(token_ids_["vera"]);
  v1::Token revoked;
  {
    grpc::ClientContext ctx;
    grpc::Status st = alice->RevokeToken(&ctx, revoke, &revoked);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    grpc::Status st = admin->RevokeToken(&ctx, revoke, &revoked);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_NE(revoked.revoked_at_unix_ms(), 0);
  }
  grpc::Status after = list(tokens_["vera"]);
  EXPECT_EQ(after.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(after.error_message().find("revoked"), std::string::npos)
      << after.error_message();

  // Tokens made through the API work, and their text is never stored.
  v1::CreateTokenRequest create;
  create.set_user("dora");
  create.set_role("viewer");
  v1::CreateTokenResponse created;
  {
    grpc::ClientContext ctx;
    grpc::Status st = admin->CreateToken(&ctx, create, &created);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_EQ(created.token().created_by(), "root");
  EXPECT_TRUE(list(created.token_text()).ok());
  auto all = store_->ListTokens();
  ASSERT_TRUE(all.ok());
  for (const TokenRecord& t : *all) {
    EXPECT_NE(t.sha256_hex, created.token_text());
    EXPECT_EQ(t.sha256_hex.size(), 64u);
  }
}

TEST_F(TlsFleetTest, TheCliMapsAuthErrorsToItsExitCodes) {
  const char* build_dir = std::getenv("BENCHFLEET_BUILD_DIR");
  ASSERT_NE(build_dir, nullptr) << "run through ctest (BENCHFLEET_BUILD_DIR)";
  const std::string cli = std::string(build_dir) + "/cli/benchfleet";
  auto token_file = [&](const std::string& name, const std::string& text) {
    const std::string path = dir_ / (name + ".token");
    testing::WriteFile(path, text + "\n");
    std::filesystem::permissions(path, std::filesystem::perms::owner_read |
                                           std::filesystem::perms::owner_write);
    return path;
  };
  auto run = [&](const std::string& token_path, std::vector<std::string> args) {
    std::vector<std::string> argv = {cli, "--controller", address_, "--ca",
                                     dir_ / "ca.crt"};
    if (!token_path.empty()) {
      argv.push_back("--token-file");
      argv.push_back(token_path);
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunCommand(argv, dir_.path(), absl::Seconds(60));
  };
  auto who = run(token_file("alice", tokens_["alice"]), {"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.all();
  EXPECT_NE(who.out.find("alice (submitter)"), std::string::npos) << who.all();

  auto bad = run(token_file("bad", "bft_nope"), {"list"});
  EXPECT_EQ(bad.exit_code, 3) << bad.all();
  EXPECT_NE(bad.err.find("not recognised"), std::string::npos) << bad.all();

  auto none = run("", {"list"});
  EXPECT_EQ(none.exit_code, 3) << none.all();
  EXPECT_NE(none.err.find("no token"), std::string::npos) << none.all();

  auto denied = run(token_file("vera", tokens_["vera"]), {"drain", "agent-a"});
  EXPECT_EQ(denied.exit_code, 1) << denied.all();
  EXPECT_NE(denied.err.find("has role viewer"), std::string::npos)
      << denied.all();

  // A token file others can read is refused before anything is sent.
  const std::string open_file = token_file("open", tokens_["alice"]);
  std::filesystem::permissions(open_file, std::filesystem::perms::others_read,
                               std::filesystem::perm_options::add);
  auto open = run(open_file, {"list"});
  EXPECT_EQ(open.exit_code, 2) << open.all();
  EXPECT_NE(open.err.find("chmod 600"), std::string::npos) << open.all();

  // The admin makes a token from the CLI; it is printed once, on stdout.
  auto made = run(token_file("root", tokens_["root"]),
                  {"token", "create", "--user", "erin", "--role", "submitter"});
  EXPECT_EQ(made.exit_code, 0) << made.all();
  EXPECT_EQ(made.out.rfind("bft_", 0), 0u) << made.all();
}

TEST_F(TlsFleetTest, PlaintextOnANetworkAddressNeedsInsecure) {
  auto refused = MakeServerCredentials("0.0.0.0:7070", TransportOptions{});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--insecure"), std::string::npos)
      << refused.status();
  TransportOptions insecure;
  insecure.insecure = true;
  EXPECT_TRUE(MakeServerCredentials("0.0.0.0:7070", insecure).ok());
  auto client = MakeChannelCredentials("10.9.8.7:7070", TransportOptions{});
  EXPECT_FALSE(client.ok());
  EXPECT_TRUE(MakeServerCredentials("127.0.0.1:7070", TransportOptions{}).ok());
  // A key that is not the certificate's is named.
  TransportOptions mismatched;
  mismatched.cert_file = dir_ / "controller.crt";
  mismatched.key_file = dir_ / "agent-a.key";
  auto wrong_key = MakeServerCredentials("127.0.0.1:0", mismatched);
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_NE(wrong_key.status().message().find("does not belong"),
            std::string::npos)
      << wrong_key.status();
}

TEST_F(TlsFleetTest, AReplacedControllerCertificateIsUsedWithoutARestart) {
  // A second CA; clients that trust only it cannot talk to the controller
  // until its certificate is replaced by one from that CA.
  auto ca2 =
      MakeCertificateAuthority("second CA", absl::Now() + absl::Hours(24));
  ASSERT_TRUE(ca2.ok());
  auto whoami = [&](const std::string& ca_pem) {
    auto stub = v1::FleetService::NewStub(grpc::CreateCustomChannel(
        address_, RawTls(ca_pem, nullptr), MakeChannelArguments()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    v1::WhoAmIResponse resp;
    return stub->WhoAmI(&ctx, v1::WhoAmIRequest(), &resp);
  };
  // Without a token WhoAmI is UNAUTHENTICATED once TLS succeeded, UNAVAILABLE
  // when the handshake fails: that tells the two certificates apart.
  EXPECT_EQ(whoami(ca_.cert_pem).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(whoami(ca2->cert_pem).error_code(), grpc::StatusCode::UNAVAILABLE);

  KeyAndCert renewed = Issue(*ca2, "controller", {"127.0.0.1", "localhost"},
                             true, false, absl::Now() + absl::Hours(24));
  // Replace both files by rename, as the gRPC file watcher expects.
  testing::WriteFile(dir_ / "new.key", renewed.key_pem);
  testing::WriteFile(dir_ / "new.crt", renewed.cert_pem);
  std::filesystem::rename(dir_ / "new.key", dir_ / "controller.key");
  std::filesystem::rename(dir_ / "new.crt", dir_ / "controller.crt");
  grpc::StatusCode code = grpc::StatusCode::UNAVAILABLE;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    code = whoami(ca2->cert_pem).error_code();
    if (code == grpc::StatusCode::UNAUTHENTICATED) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(code, grpc::StatusCode::UNAUTHENTICATED)
      << "the controller still presents the old certificate";
}

}  // namespace
}  // namespace benchfleet
