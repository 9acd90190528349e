#include "cli/bundle_push.h"

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"

namespace benchfleet {
namespace {

constexpr absl::Duration kHasDeadline = absl::Seconds(15);

// Uploads the bundle file `path` (its size and digest in `info`).
absl::StatusOr<int64_t> Upload(v1::FleetService::Stub* stub,
                               const std::string& path,
                               const BundleInfo& info) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  grpc::ClientContext ctx;
  // A slow link still gets through: a minute plus a second per MiB.
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(1) +
                                      absl::Seconds(info.size_bytes >> 20)));
  v1::UploadBundleResponse resp;
  std::unique_ptr<grpc::ClientWriter<v1::UploadBundleChunk>> writer =
      stub->UploadBundle(&ctx, &resp);
  v1::UploadBundleChunk chunk;
  chunk.set_digest(info.digest);
  chunk.set_size_bytes(info.size_bytes);
  int64_t sent = 0;
  absl::Status read_error;
  for (;;) {
    std::string* data = chunk.mutable_data();
    data->resize(static_cast<size_t>(kBundleChunkBytes));
    const ssize_t n = ::read(fd, data->data(), data->size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      read_error = absl::InternalError(
          absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
      ctx.TryCancel();
      break;
    }
    if (n == 0) break;
    data->resize(static_cast<size_t>(n));
    // False: the controller ended the call (it refused the upload, or
    // another upload of the same bundle finished first); Finish says which.
    if (!writer->Write(chunk)) break;
    sent += n;
    chunk.clear_digest();
    chunk.clear_size_bytes();
  }
  ::close(fd);
  writer->WritesDone();
  const grpc::Status st = writer->Finish();
  if (!read_error.ok()) return read_error;
  if (!st.ok()) return FromGrpcStatus(st);
  return sent;
}

}  // namespace

absl::StatusOr<BundlePush> PushBundle(v1::FleetService::Stub* stub,
                                      const std::string& dir,
                                      const PackOptions& options) {
  std::string tmp =
      (std::filesystem::temp_directory_path() / "benchfleet-bundle-XXXXXX")
          .string();
  if (::mkdtemp(tmp.data()) == nullptr) {
    return absl::InternalError(absl::StrCat(
        "cannot make a temporary directory: ", std::strerror(errno)));
  }
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } remove_tmp{tmp};
  const std::string file = tmp + "/bundle.bfb";
  BundlePush push;
  const absl::Time t0 = absl::Now();
  absl::StatusOr<BundleInfo> info = PackDirectory(dir, file, options);
  if (!info.ok()) return info.status();
  push.info = *info;
  const absl::Time t1 = absl::Now();
  push.pack_time = t1 - t0;
  v1::HasBundleRequest has_req;
  has_req.set_digest(info->digest);
  v1::HasBundleResponse has;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kHasDeadline));
  if (const grpc::Status st = stub->HasBundle(&ctx, has_req, &has); !st.ok())
    return FromGrpcStatus(st);
  push.already_held = has.present();
  if (!push.already_held) {
    absl::StatusOr<int64_t> sent = Upload(stub, file, *info);
    if (!sent.ok()) return sent.status();
    push.bytes_sent = *sent;
  }
  push.upload_time = absl::Now() - t1;
  return push;
}

std::string DescribePush(const BundlePush& push, const std::string& dir) {
  return absl::StrCat("bundle ", push.info.digest, " of ", dir, ": ",
                      push.info.files, " files, ",
                      HumanBytes(push.info.size_bytes), "; ",
                      push.already_held ? "already on the controller, " : "",
                      "sent ", HumanBytes(push.bytes_sent));
}

}  // namespace benchfleet
