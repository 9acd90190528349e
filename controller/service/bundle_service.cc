#include "controller/service/bundle_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

grpc::Status NoStore() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "this controller keeps no bundles (it has no data "
                      "directory); start it with --data-dir");
}

class UploadReactor final
    : public grpc::ServerReadReactor<v1::UploadBundleChunk> {
 public:
  UploadReactor(BundleStore* store, Executor* executor,
                v1::UploadBundleResponse* response)
      : store_(store), executor_(executor), response_(response) {
    if (store_ == nullptr) {
      Finish(NoStore());
      return;
    }
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    // Disk work on the executor; the next read starts from there.
    executor_->Schedule([this, ok] {
      if (!ok) {
        Finish(Complete());
        return;
      }
      const grpc::Status s = Take();
      if (!s.ok() || done_early_) {
        Finish(s);
        return;
      }
      StartRead(&chunk_);
    });
  }

  void OnDone() override { delete this; }

 private:
  grpc::Status Take() {
    if (upload_ == nullptr) {
      if (absl::Status s = CheckBundleDigest(chunk_.digest()); !s.ok())
        return ToGrpcStatus(s);
      digest_ = chunk_.digest();
      absl::StatusOr<std::optional<int64_t>> held = store_->Find(digest_);
      if (!held.ok()) return ToGrpcStatus(held.status());
      if (held->has_value()) {
        // Another upload got there first: keep the one held.
        response_->set_digest(digest_);
        response_->set_size_bytes(**held);
        done_early_ = true;
        return grpc::Status::OK;
      }
      absl::StatusOr<std::unique_ptr<BundleStore::Upload>> started =
          store_->StartUpload(digest_, chunk_.size_bytes());
      if (!started.ok()) return ToGrpcStatus(started.status());
      upload_ = std::move(*started);
    } else if (!chunk_.digest().empty() && chunk_.digest() != digest_) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "an upload carries one bundle: only the first "
                          "message names its digest");
    }
    if (static_cast<int64_t>(chunk_.data().size()) > kBundleChunkBytes) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("upload chunk of ", chunk_.data().size(),
                                       " bytes; chunks are at most 1 MiB"));
    }
    return ToGrpcStatus(upload_->Append(chunk_.data()));
  }

  grpc::Status Complete() {
    if (upload_ == nullptr) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "upload ended before its first message (digest and "
                          "size)");
    }
    if (absl::Status s = upload_->Commit(); !s.ok()) {
      spdlog::warn("bundle upload refused: {}", s.ToString());
      return ToGrpcStatus(s);
    }
    spdlog::info("bundle {} stored ({} bytes)", digest_, upload_->received());
    response_->set_digest(digest_);
    response_->set_size_bytes(upload_->received());
    response_->set_bytes_received(upload_->received());
    return grpc::Status::OK;
  }

  BundleStore* store_;
  Executor* executor_;
  v1::UploadBundleResponse* response_;
  v1::UploadBundleChunk chunk_;
  std::string digest_;
  std::unique_ptr<BundleStore::Upload> upload_;
  bool done_early_ = false;
};

class FetchReactor final : public grpc::ServerWriteReactor<v1::BundlePiece> {
 public:
  FetchReactor(BundleStore* store, Executor* executor, std::string digest)
      : store_(store), executor_(executor), digest_(std::move(digest)) {
    if (store_ == nullptr) {
      Finish(NoStore());
      return;
    }
    executor_->Schedule([this] { Open(); });
  }

  ~FetchReactor() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    executor_->Schedule([this] { Next(); });
  }

  void OnDone() override { delete this; }

 private:
  void Open() {
    absl::StatusOr<std::optional<int64_t>> held = store_->Find(digest_);
    if (!held.ok()) {
      Finish(ToGrpcStatus(held.status()));
      return;
    }
    if (!held->has_value()) {
      Finish(grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("the controller holds no bundle ", digest_,
                       "; it must be uploaded first (`benchfleet bundle "
                       "push`)")));
      return;
    }
    fd_ = ::open(store_->PathOf(digest_).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("cannot read bundle ", digest_, ": ",
                                       std::strerror(errno))));
      return;
    }
    size_ = **held;
    piece_.set_size_bytes(size_);
    Next();
  }

  void Next() {
    // Only now: the previous piece is written (the message may not change
    // while a write is in flight).
    if (!first_) piece_.clear_size_bytes();
    std::string* data = piece_.mutable_data();
    data->resize(static_cast<size_t>(kBundleChunkBytes));
    size_t got = 0;
    while (got < data->size()) {
      const ssize_t n = ::read(fd_, data->data() + got, data->size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Finish(grpc::Status(grpc::StatusCode::INTERNAL,
                            absl::StrCat("cannot read bundle ", digest_, ": ",
                                         std::strerror(errno))));
        return;
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    data->resize(got);
    sent_ += static_cast<int64_t>(got);
    if (got == 0 && !first_) {
      Finish(sent_ == size_
                 ? grpc::Status::OK
                 : grpc::Status(grpc::StatusCode::INTERNAL,
                                absl::StrCat("bundle ", digest_,
                                             " changed size while sent")));
      return;
    }
    first_ = false;
    StartWrite(&piece_);
  }

  BundleStore* store_;
  Executor* executor_;
  const std::string digest_;
  int fd_ = -1;
  int64_t size_ = 0;
  int64_t sent_ = 0;
  bool first_ = true;
  v1::BundlePiece piece_;
};

}  // namespace

grpc::ServerReadReactor<v1::UploadBundleChunk>* NewUploadBundleReactor(
    BundleStore* store, Executor* executor,
    v1::UploadBundleResponse* response) {
  return new UploadReactor(store, executor, response);
}

grpc::ServerReadReactor<v1::UploadBundleChunk>* NewRefusedUploadReactor(
    const grpc::Status& refusal) {
  class Refused final : public grpc::ServerReadReactor<v1::UploadBundleChunk> {
   public:
    explicit Refused(const grpc::Status& refusal) { Finish(refusal); }
    void OnDone() override { delete this; }
  };
  return new Refused(refusal);
}

grpc::ServerWriteReactor<v1::BundlePiece>* NewFetchBundleReactor(
    BundleStore* store, Executor* executor, const std::string& digest) {
  return new FetchReactor(store, executor, digest);
}

}  // namespace benchfleet
