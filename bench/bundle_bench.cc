// Source bundle throughput (docs/perf/bundle.md): a generated tree (default
// 100 MiB: 384 files of 256 KiB and 1024 of 4 KiB, seeded random bytes) is
// pushed to an in-process controller over gRPC on loopback (pack, then
// HasBundle + UploadBundle), pushed again (must send 0 bytes), then fetched
// by an agent-side BundleCache (FetchBundle + SHA-256 check) and unpacked,
// and unpacked once more from the cache. Prints one line per phase.
//
//   bf-bundle-bench [--dir DIR] [--mib N]
#include <grpcpp/create_channel.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/bundle/bundle_cache.h"
#include "agent/bundle/grpc_bundle_fetcher.h"
#include "cli/bundle_push.h"
#include "common/credentials.h"
#include "controller/controller.h"
#include "spdlog/spdlog.h"

namespace {

namespace fs = std::filesystem;
using benchfleet::HumanBytes;

void MakeTree(const std::string& dir, int64_t mib) {
  std::mt19937_64 rng(42);
  auto write = [&](const std::string& path, size_t bytes) {
    std::string data(bytes, '\0');
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
      const uint64_t v = rng();
      std::memcpy(&data[i], &v, 8);
    }
    std::ofstream(path, std::ios::binary) << data;
  };
  const int64_t small = 1024;           // 4 MiB of 4 KiB files
  const int64_t large = (mib - 4) * 4;  // the rest in 256 KiB files
  for (int64_t i = 0; i < large; ++i) {
    const std::string sub = absl::StrCat(dir, "/large/d", i % 16);
    fs::create_directories(sub);
    write(absl::StrCat(sub, "/f", i, ".bin"), 256 << 10);
  }
  for (int64_t i = 0; i < small; ++i) {
    const std::string sub = absl::StrCat(dir, "/small/d", i % 32);
    fs::create_directories(sub);
    write(absl::StrCat(sub, "/s", i, ".txt"), 4 << 10);
  }
}

double MibPerS(int64_t bytes, absl::Duration d) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0) /
         absl::ToDoubleSeconds(d);
}

void Line(const char* what, int64_t bytes, absl::Duration d) {
  std::printf("%-34s %10s  %8.3f s  %8.1f MiB/s\n", what,
              HumanBytes(bytes).c_str(), absl::ToDoubleSeconds(d),
              MibPerS(bytes, d));
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int64_t mib = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--dir") == 0) dir = argv[i + 1];
    if (std::strcmp(argv[i], "--mib") == 0 &&
        (!absl::SimpleAtoi(argv[i + 1], &mib) || mib < 8)) {
      std::fprintf(stderr, "bf-bundle-bench: --mib wants a number >= 8\n");
      return 2;
    }
  }
  if (dir.empty()) {
    std::string tmpl =
        (fs::temp_directory_path() / "bf-bundle-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return 1;
    dir = tmpl;
  }
  spdlog::set_level(spdlog::level::warn);
  std::printf("tree: %lld MiB under %s\n", static_cast<long long>(mib),
              dir.c_str());
  MakeTree(dir + "/tree", mib);

  benchfleet::ControllerOptions copts;
  copts.listen = "127.0.0.1:0";
  copts.store_url = "sqlite://" + dir + "/fleet.db";
  copts.data_dir = dir + "/controller";
  auto controller = benchfleet::Controller::Create(copts);
  if (!controller.ok()) {
    std::fprintf(stderr, "controller: %s\n",
                 controller.status().ToString().c_str());
    return 1;
  }
  auto stub = benchfleet::v1::FleetService::NewStub(grpc::CreateCustomChannel(
      (*controller)->address(), grpc::InsecureChannelCredentials(),
      benchfleet::MakeChannelArguments()));

  auto first = benchfleet::PushBundle(stub.get(), dir + "/tree", {});
  if (!first.ok()) {
    std::fprintf(stderr, "push: %s\n", first.status().ToString().c_str());
    return 1;
  }
  std::printf("bundle %s: %lld files\n", first->info.digest.c_str(),
              static_cast<long long>(first->info.files));
  Line("pack", first->info.size_bytes, first->pack_time);
  Line("upload (HasBundle + UploadBundle)", first->bytes_sent,
       first->upload_time);
  Line("pack + upload", first->info.size_bytes,
       first->pack_time + first->upload_time);
  auto second = benchfleet::PushBundle(stub.get(), dir + "/tree", {});
  if (!second.ok()) return 1;
  std::printf("%-34s %10s  %8.3f s  (pack %.3f s, HasBundle %.3f s)\n",
              "second push, same tree: sent",
              HumanBytes(second->bytes_sent).c_str(),
              absl::ToDoubleSeconds(second->pack_time + second->upload_time),
              absl::ToDoubleSeconds(second->pack_time),
              absl::ToDoubleSeconds(second->upload_time));

  auto fetcher =
      benchfleet::GrpcBundleFetcher::Create((*controller)->address(), {});
  if (!fetcher.ok()) return 1;
  benchfleet::BundleCacheOptions bopts;
  bopts.dir = dir + "/agent-bundles";
  auto cache = benchfleet::BundleCache::Open(bopts, fetcher->get());
  if (!cache.ok()) return 1;
  const std::string& digest = first->info.digest;
  absl::Time t0 = absl::Now();
  auto pin = (*cache)->Acquire(digest);
  if (!pin.ok()) {
    std::fprintf(stderr, "fetch: %s\n", pin.status().ToString().c_str());
    return 1;
  }
  const absl::Duration fetch = absl::Now() - t0;
  pin->reset();
  t0 = absl::Now();
  auto out = (*cache)->ExtractTo(digest, dir + "/work1");
  if (!out.ok()) {
    std::fprintf(stderr, "extract: %s\n", out.status().ToString().c_str());
    return 1;
  }
  const absl::Duration extract = absl::Now() - t0;
  Line("fetch (FetchBundle + SHA-256)", first->info.size_bytes, fetch);
  Line("extract (unpack + SHA-256)", first->info.size_bytes, extract);
  Line("fetch + extract", first->info.size_bytes, fetch + extract);
  t0 = absl::Now();
  if (!(*cache)->ExtractTo(digest, dir + "/work2").ok()) return 1;
  Line("extract again from the cache", first->info.size_bytes,
       absl::Now() - t0);
  (*controller)->Shutdown();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
