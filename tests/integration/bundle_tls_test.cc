// Source bundles on a TLS controller (issue 11, DESIGN.md §7), over real
// handshakes on loopback: a submitter's token may ask for and upload a
// bundle, a viewer's may not, no token is refused; an agent with its client
// certificate fetches and unpacks it through its BundleCache, and a caller
// without a certificate cannot fetch, whatever its token.
#include <grpcpp/create_channel.h>

#include <filesystem>
#include <map>

#include "agent/bundle/bundle_cache.h"
#include "agent/bundle/grpc_bundle_fetcher.h"
#include "benchfleet/v1/agent.grpc.pb.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "cli/bundle_push.h"
#include "common/certs.h"
#include "common/credentials.h"
#include "controller/auth/tokens.h"
#include "controller/controller.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::ReadFile;
using ::benchfleet::testing::TempDir;
using ::benchfleet::testing::WriteFile;

KeyAndCert Issue(const KeyAndCert& ca, const std::string& cn,
                 std::vector<std::string> sans, bool server, bool client) {
  CertificateRequest req;
  req.common_name = cn;
  req.sans = std::move(sans);
  req.server_auth = server;
  req.client_auth = client;
  req.not_after = absl::Now() + absl::Hours(24);
  absl::StatusOr<KeyAndCert> made = IssueCertificate(ca, req);
  EXPECT_TRUE(made.ok()) << made.status();
  return made.ok() ? *made : KeyAndCert{};
}

class BundleTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<KeyAndCert> ca =
        MakeCertificateAuthority("test CA", absl::Now() + absl::Hours(48));
    ASSERT_TRUE(ca.ok()) << ca.status();
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "ca", *ca).ok());
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "controller",
                                Issue(*ca, "controller",
                                      {"127.0.0.1", "localhost"}, true, false))
                    .ok());
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "agent-a",
                                Issue(*ca, "agent-a", {"agent-a"}, false, true))
                    .ok());
    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / "fleet.db");
    copts.transport.cert_file = dir_ / "controller.crt";
    copts.transport.key_file = dir_ / "controller.key";
    copts.transport.ca_file = dir_ / "ca.crt";
    absl::StatusOr<std::unique_ptr<Controller>> c = Controller::Create(copts);
    ASSERT_TRUE(c.ok()) << c.status();
    controller_ = std::move(*c);
    absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(copts.store_url);
    ASSERT_TRUE(store.ok()) << store.status();
    for (auto [user, role] :
         {std::pair{"alice", "submitter"}, std::pair{"vera", "viewer"}}) {
      absl::StatusOr<IssuedToken> t =
          IssueToken(store->get(), user, role, "", absl::Now());
      ASSERT_TRUE(t.ok()) << t.status();
      tokens_[user] = t->text;
    }
    std::filesystem::create_directories(dir_ / "tree/src");
    WriteFile(dir_ / "tree/src/main.c", "int main(void) { return 0; }\n");
    WriteFile(dir_ / "tree/data.bin", std::string(200000, 'd'));
  }

  std::unique_ptr<v1::FleetService::Stub> UserStub(const std::string& token) {
    TransportOptions t;
    t.ca_file = dir_ / "ca.crt";
    t.token = token;
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        MakeChannelCredentials(controller_->address(), t);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return v1::FleetService::NewStub(grpc::CreateCustomChannel(
        controller_->address(), *creds, MakeChannelArguments(t)));
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  std::map<std::string, std::string> tokens_;
};

TEST_F(BundleTlsTest, SubmittersUploadAndOnlyAgentsWithACertificateFetch) {
  absl::StatusOr<BundlePush> denied =
      PushBundle(UserStub(tokens_["vera"]).get(), dir_ / "tree", {});
  EXPECT_TRUE(absl::IsPermissionDenied(denied.status())) << denied.status();
  EXPECT_NE(denied.status().message().find("submitter"), std::string::npos);
  absl::StatusOr<BundlePush> anonymous =
      PushBundle(UserStub("").get(), dir_ / "tree", {});
  EXPECT_TRUE(absl::IsUnauthenticated(anonymous.status()))
      << anonymous.status();

  absl::StatusOr<BundlePush> push =
      PushBundle(UserStub(tokens_["alice"]).get(), dir_ / "tree", {});
  ASSERT_TRUE(push.ok()) << push.status();
  EXPECT_EQ(push->bytes_sent, push->info.size_bytes);

  // The agent, with its client certificate.
  TransportOptions agent;
  agent.cert_file = dir_ / "agent-a.crt";
  agent.key_file = dir_ / "agent-a.key";
  agent.ca_file = dir_ / "ca.crt";
  absl::StatusOr<std::unique_ptr<GrpcBundleFetcher>> fetcher =
      GrpcBundleFetcher::Create(controller_->address(), agent);
  ASSERT_TRUE(fetcher.ok()) << fetcher.status();
  BundleCacheOptions o;
  o.dir = dir_ / "agent/bundles";
  absl::StatusOr<std::unique_ptr<BundleCache>> cache =
      BundleCache::Open(o, fetcher->get());
  ASSERT_TRUE(cache.ok()) << cache.status();
  absl::StatusOr<BundleInfo> out =
      (*cache)->ExtractTo(push->info.digest, dir_ / "work");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(ReadFile(dir_ / "work/src/main.c"),
            "int main(void) { return 0; }\n");

  // A user, even with a valid token, has no certificate: no fetch.
  TransportOptions user;
  user.ca_file = dir_ / "ca.crt";
  user.token = tokens_["alice"];
  absl::StatusOr<std::unique_ptr<GrpcBundleFetcher>> user_fetcher =
      GrpcBundleFetcher::Create(controller_->address(), user);
  ASSERT_TRUE(user_fetcher.ok()) << user_fetcher.status();
  absl::Status st =
      (*user_fetcher)
          ->Fetch(push->info.digest, dir_ / "stolen.bfb", int64_t{1} << 30);
  EXPECT_TRUE(absl::IsUnauthenticated(st)) << st;
  EXPECT_NE(st.message().find("client certificate"), std::string::npos) << st;
}

}  // namespace
}  // namespace benchfleet
