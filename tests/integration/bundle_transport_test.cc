// Source bundles over real gRPC on loopback (issue 11): a tree pushed through
// the CLI's PushBundle reaches the controller's BundleStore once (the second
// push sends 0 bytes), an agent-side BundleCache fetches it with FetchBundle
// over the plaintext loopback of local mode and unpacks the same files,
// concurrent pushes of one tree both succeed, and tampered, short, overlong
// and oversized uploads are refused with nothing kept.
#include <grpcpp/create_channel.h>

#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/bundle/bundle_cache.h"
#include "agent/bundle/grpc_bundle_fetcher.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "cli/bundle_push.h"
#include "common/credentials.h"
#include "controller/controller.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;
using ::benchfleet::testing::ReadFile;
using ::benchfleet::testing::TempDir;
using ::benchfleet::testing::WriteFile;

constexpr int64_t kControllerCap = 4 << 20;

// About 1.5 MiB in 40 files over a few directories, seeded.
void MakeTree(const std::string& dir, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int i = 0; i < 40; ++i) {
    const std::string sub = absl::StrCat(dir, "/d", i % 4, "/e", i % 3);
    fs::create_directories(sub);
    std::string data(static_cast<size_t>(1000 + (rng() % 70000)), '\0');
    for (char& c : data) c = static_cast<char>(rng());
    WriteFile(absl::StrCat(sub, "/f", i, ".bin"), data);
  }
  WriteFile(dir + "/run.sh", "#!/bin/sh\necho hi\n");
  fs::permissions(dir + "/run.sh", fs::perms::owner_exec,
                  fs::perm_options::add);
}

// Every regular file under `dir`, relative path -> content.
std::map<std::string, std::string> Contents(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file())
      out[fs::relative(e.path(), dir).string()] = ReadFile(e.path().string());
  }
  return out;
}

class BundleTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / "fleet.db");
    copts.data_dir = dir_ / "controller";
    copts.max_bundle_bytes = kControllerCap;
    absl::StatusOr<std::unique_ptr<Controller>> c = Controller::Create(copts);
    ASSERT_TRUE(c.ok()) << c.status();
    controller_ = std::move(*c);
    stub_ = v1::FleetService::NewStub(grpc::CreateCustomChannel(
        controller_->address(), grpc::InsecureChannelCredentials(),
        MakeChannelArguments()));
    MakeTree(dir_ / "tree", 7);
  }

  std::string StoredPath(const std::string& digest) const {
    return dir_ / ("controller/bundles/" + digest + ".bfb");
  }

  // A raw upload: `chunks` as given, the first carrying digest and size.
  grpc::Status RawUpload(const std::string& digest, int64_t declared,
                         const std::vector<std::string>& chunks) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    v1::UploadBundleResponse resp;
    auto writer = stub_->UploadBundle(&ctx, &resp);
    for (size_t i = 0; i < chunks.size(); ++i) {
      v1::UploadBundleChunk c;
      if (i == 0) {
        c.set_digest(digest);
        c.set_size_bytes(declared);
      }
      c.set_data(chunks[i]);
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  bool Held(const std::string& digest) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    v1::HasBundleRequest req;
    req.set_digest(digest);
    v1::HasBundleResponse resp;
    EXPECT_TRUE(stub_->HasBundle(&ctx, req, &resp).ok());
    return resp.present();
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<v1::FleetService::Stub> stub_;
};

TEST_F(BundleTransportTest, SecondPushOfTheSameTreeSendsNothing) {
  absl::StatusOr<BundlePush> first = PushBundle(stub_.get(), dir_ / "tree", {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->already_held);
  EXPECT_EQ(first->bytes_sent, first->info.size_bytes);
  EXPECT_GT(first->info.size_bytes, 500000);
  EXPECT_EQ(ReadFile(StoredPath(first->info.digest)).size(),
            static_cast<size_t>(first->info.size_bytes));

  absl::StatusOr<BundlePush> second =
      PushBundle(stub_.get(), dir_ / "tree", {});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->info.digest, first->info.digest);
  EXPECT_TRUE(second->already_held);
  EXPECT_EQ(second->bytes_sent, 0);
  EXPECT_NE(DescribePush(*second, "tree").find("sent 0 B"), std::string::npos);
}

TEST_F(BundleTransportTest, AgentCacheFetchesOverLoopbackAndUnpacksTheTree) {
  absl::StatusOr<BundlePush> push = PushBundle(stub_.get(), dir_ / "tree", {});
  ASSERT_TRUE(push.ok()) << push.status();
  // Local mode's transport: plaintext on loopback, no certificate.
  absl::StatusOr<std::unique_ptr<GrpcBundleFetcher>> fetcher =
      GrpcBundleFetcher::Create(controller_->address(), TransportOptions{});
  ASSERT_TRUE(fetcher.ok()) << fetcher.status();
  BundleCacheOptions o;
  o.dir = dir_ / "agent/bundles";
  absl::StatusOr<std::unique_ptr<BundleCache>> cache =
      BundleCache::Open(o, fetcher->get());
  ASSERT_TRUE(cache.ok()) << cache.status();
  absl::StatusOr<BundleInfo> out =
      (*cache)->ExtractTo(push->info.digest, dir_ / "work1");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(Contents(dir_ / "work1"), Contents(dir_ / "tree"));
  EXPECT_TRUE((fs::status(dir_ / "work1/run.sh").permissions() &
               fs::perms::owner_exec) != fs::perms::none);
  // A second checkout comes from the cache.
  ASSERT_TRUE((*cache)->ExtractTo(push->info.digest, dir_ / "work2").ok());
  EXPECT_EQ((*cache)->counters().fetches, 1);
  EXPECT_EQ((*cache)->counters().hits, 1);
  // A digest the controller does not hold.
  absl::StatusOr<BundleInfo> missing =
      (*cache)->ExtractTo(std::string(64, 'e'), dir_ / "work3");
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_NE(missing.status().message().find("bundle push"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ / "work3"));
}

TEST_F(BundleTransportTest, ConcurrentPushesOfOneTreeBothSucceed) {
  absl::StatusOr<BundlePush> a, b;
  std::thread t1([&] { a = PushBundle(stub_.get(), dir_ / "tree", {}); });
  std::thread t2([&] { b = PushBundle(stub_.get(), dir_ / "tree", {}); });
  t1.join();
  t2.join();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->info.digest, b->info.digest);
  EXPECT_EQ(*Sha256OfFile(StoredPath(a->info.digest)), a->info.digest);
  EXPECT_TRUE(fs::is_empty(dir_ / "controller/bundles/tmp"));
}

TEST_F(BundleTransportTest,
       TamperedShortOverlongAndOversizedUploadsAreRefused) {
  const std::string real = "the bytes the digest was computed over";
  Sha256 h;
  h.Update(real);
  const std::string digest = h.HexDigest();
  const int64_t size = static_cast<int64_t>(real.size());

  // Same length, other bytes.
  std::string tampered = real;
  tampered[3] ^= 1;
  grpc::Status st = RawUpload(digest, size, {tampered});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  EXPECT_NE(st.error_message().find("nothing was kept"), std::string::npos);
  // Fewer bytes than declared, then more.
  st = RawUpload(digest, size, {real.substr(0, 10)});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  st = RawUpload(digest, size, {real, "more"});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Over the controller's cap: refused on the first message.
  st = RawUpload(digest, kControllerCap + 1, {real});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("cap of 4.0 MiB"), std::string::npos)
      << st.error_message();
  // Not a digest.
  st = RawUpload("../../etc/passwd", size, {real});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(Held(digest));
  EXPECT_TRUE(fs::is_empty(dir_ / "controller/bundles/tmp"));

  // The honest upload of the same bytes goes through.
  st = RawUpload(digest, size, {real.substr(0, 5), real.substr(5)});
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(Held(digest));
}

TEST_F(BundleTransportTest, TreeOverTheControllersCapIsRefusedByIt) {
  const std::string big = dir_ / "big";
  fs::create_directories(big);
  std::mt19937 rng(3);
  std::string data(static_cast<size_t>(kControllerCap) + 1000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  WriteFile(big + "/blob", data);
  absl::StatusOr<BundlePush> push = PushBundle(stub_.get(), big, {});
  ASSERT_TRUE(absl::IsFailedPrecondition(push.status())) << push.status();
  EXPECT_NE(push.status().message().find("max_bundle_size"), std::string::npos)
      << push.status();
}

}  // namespace
}  // namespace benchfleet
