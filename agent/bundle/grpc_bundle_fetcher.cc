#include "agent/bundle/grpc_bundle_fetcher.h"

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "benchfleet/v1/agent.grpc.pb.h"
#include "common/grpc_status.h"

namespace benchfleet {

absl::StatusOr<std::unique_ptr<GrpcBundleFetcher>> GrpcBundleFetcher::Create(
    const std::string& address, const TransportOptions& transport,
    absl::Duration timeout) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      MakeChannelCredentials(address, transport);
  if (!creds.ok()) return creds.status();
  return std::make_unique<GrpcBundleFetcher>(
      grpc::CreateCustomChannel(address, *creds,
                                MakeChannelArguments(transport)),
      address, timeout);
}

GrpcBundleFetcher::GrpcBundleFetcher(std::shared_ptr<grpc::Channel> channel,
                                     std::string address,
                                     absl::Duration timeout)
    : channel_(std::move(channel)),
      address_(std::move(address)),
      timeout_(timeout) {}

absl::Status GrpcBundleFetcher::Fetch(const std::string& digest,
                                      const std::string& path,
                                      int64_t max_bytes) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  auto stub = v1::AgentService::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  v1::FetchBundleRequest req;
  req.set_digest(digest);
  std::unique_ptr<grpc::ClientReader<v1::BundlePiece>> reader =
      stub->FetchBundle(&ctx, req);
  v1::BundlePiece piece;
  int64_t declared = -1, received = 0;
  absl::Status failed;
  while (failed.ok() && reader->Read(&piece)) {
    if (declared < 0) {
      declared = piece.size_bytes();
      if (declared > max_bytes) {
        failed = absl::FailedPreconditionError(absl::StrCat(
            "bundle ", digest, " on controller ", address_, " is ",
            HumanBytes(declared), ", over this agent's cap of ",
            HumanBytes(max_bytes), "; raise the agent's bundle cache size"));
        break;
      }
    }
    received += static_cast<int64_t>(piece.data().size());
    if (received > declared) {
      failed = absl::DataLossError(
          absl::StrCat("controller ", address_, " sent more of bundle ", digest,
                       " than the ", declared, " bytes it announced"));
      break;
    }
    absl::string_view data = piece.data();
    while (!data.empty()) {
      const ssize_t n = ::write(fd, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        failed = absl::InternalError(
            absl::StrCat("cannot write ", path, ": ", std::strerror(errno),
                         "; is the agent's disk full?"));
        break;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  if (!failed.ok()) ctx.TryCancel();
  const grpc::Status st = reader->Finish();
  ::close(fd);
  if (!failed.ok()) return failed;
  if (!st.ok()) {
    const absl::Status s = FromGrpcStatus(st);
    return absl::Status(
        s.code(), absl::StrCat("fetching bundle ", digest, " from ", address_,
                               ": ", s.message()));
  }
  if (received != declared) {
    return absl::DataLossError(absl::StrCat(
        "controller ", address_, " sent ", received, " bytes of bundle ",
        digest, ", which it announced as ", declared, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace benchfleet
