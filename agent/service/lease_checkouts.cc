#include "agent/service/lease_checkouts.h"

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace benchfleet {

LeaseCheckouts::LeaseCheckouts(CheckoutOptions options, std::string host,
                               BundleCache* bundles)
    : manager_(std::move(options)), host_(std::move(host)), bundles_(bundles) {}

absl::StatusOr<std::map<std::string, std::string>> LeaseCheckouts::Unpack(
    const v1::Lease& lease) {
  const std::string what =
      absl::StrCat("agent ", host_,
                   " cannot unpack the source bundle of "
                   "experiment ",
                   lease.experiment_id(), " (", lease.experiment_name(), ")");
  if (bundles_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": this agent keeps no bundle cache (see its start-up log)"));
  }
  const std::string attempt_dir = manager_.AttemptDir(lease.attempt_id());
  std::map<std::string, std::string> dirs;
  auto fail = [&](const absl::Status& st) {
    (void)manager_.Remove(lease.attempt_id());
    return absl::Status(st.code(), absl::StrCat(what, ": ", st.message()));
  };
  absl::Status cleared = manager_.Remove(lease.attempt_id());
  if (!cleared.ok()) return fail(cleared);
  std::error_code ec;
  std::filesystem::create_directories(attempt_dir, ec);
  if (ec) {
    return fail(absl::InternalError(
        absl::StrCat("cannot create ", attempt_dir, ": ", ec.message())));
  }
  for (const v1::VariantSource& s : lease.sources()) {
    if (s.bundle_digest().empty() || !s.repo().empty()) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
          "variant ", s.variant(),
          " names no bundle while another does; a lease has one kind of "
          "source")));
    }
    if (s.variant().empty() || s.variant().find('/') != std::string::npos ||
        s.variant() == "." || s.variant() == "..") {
      return fail(absl::InvalidArgumentError(
          absl::StrCat("'", s.variant(), "' is not a variant name")));
    }
    const std::string dir = absl::StrCat(attempt_dir, "/", s.variant());
    absl::StatusOr<BundleInfo> unpacked =
        bundles_->ExtractTo(s.bundle_digest(), dir);
    if (!unpacked.ok()) return fail(unpacked.status());
    spdlog::info("attempt {}: bundle {} ({} files) unpacked for variant {}",
                 lease.attempt_id(), s.bundle_digest(), unpacked->files,
                 s.variant());
    dirs[s.variant()] = dir;
  }
  return dirs;
}

absl::StatusOr<std::string> LeaseCheckouts::Prepare(const v1::Lease& lease) {
  if (lease.sources().empty()) return std::string();
  if (attempt_id_ != 0 && attempt_id_ != lease.attempt_id())
    Remove(attempt_id_);
  if (!lease.sources(0).bundle_digest().empty()) {
    absl::StatusOr<std::map<std::string, std::string>> dirs = Unpack(lease);
    if (!dirs.ok()) return dirs.status();
    attempt_id_ = lease.attempt_id();
    dirs_ = std::move(*dirs);
    sealed_.clear();
    return dirs_[lease.sources(0).variant()];
  }
  std::vector<VariantSourceRecord> sources;
  for (const v1::VariantSource& s : lease.sources()) {
    VariantSourceRecord r;
    r.variant = s.variant();
    r.repo = s.repo();
    r.commit = s.commit();
    sources.push_back(std::move(r));
  }
  absl::StatusOr<AttemptCheckout> done =
      manager_.Prepare(lease.attempt_id(), sources);
  if (!done.ok()) {
    return absl::Status(
        done.status().code(),
        absl::StrCat("agent ", host_, " cannot check out experiment ",
                     lease.experiment_id(), " (", lease.experiment_name(),
                     "): ", done.status().message()));
  }
  for (const MirrorAction& m : done->mirrors) {
    spdlog::info("attempt {}: mirror of {} ({}): {} in {}", lease.attempt_id(),
                 m.repo, m.mirror,
                 m.kind == MirrorAction::kCloned    ? "cloned"
                 : m.kind == MirrorAction::kFetched ? "fetched"
                                                    : "up to date",
                 absl::FormatDuration(m.took));
  }
  attempt_id_ = lease.attempt_id();
  dirs_ = std::move(done->dirs);
  sealed_.clear();
  return dirs_[lease.sources(0).variant()];
}

absl::Status LeaseCheckouts::Place(v1::StepOrder* order) {
  if (dirs_.empty() || order->attempt_id() != attempt_id_)
    return absl::OkStatus();
  auto it = dirs_.find(order->variant());
  if (it == dirs_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent ", host_, ": step ", order->step_seq(),
                     " is of variant '", order->variant(),
                     "', which the lease has no commit for; nothing was run"));
  }
  const std::string& cwd = order->cwd();
  bool escapes = !cwd.empty() && cwd[0] == '/';
  for (absl::string_view part : absl::StrSplit(cwd, '/')) {
    if (part == "..") escapes = true;
  }
  if (escapes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "agent ", host_, ": step ", order->step_seq(), " asks for cwd '", cwd,
        "', which is not inside the checkout of variant ", order->variant(),
        "; nothing was run"));
  }
  const bool is_run = order->kind() == v1::STEP_KIND_MEASURE ||
                      order->kind() == v1::STEP_KIND_WARMUP;
  if (is_run && sealed_.insert(order->variant()).second) {
    absl::Status sealed = manager_.MakeReadOnly(it->second);
    if (!sealed.ok()) {
      return absl::InternalError(absl::StrCat(
          "agent ", host_, ": ", sealed.message(), "; nothing was run"));
    }
  }
  order->set_cwd(cwd.empty() ? it->second : absl::StrCat(it->second, "/", cwd));
  return absl::OkStatus();
}

void LeaseCheckouts::Remove(int64_t attempt_id) {
  absl::Status st = manager_.Remove(attempt_id);
  if (!st.ok())
    spdlog::warn("attempt {}: {}", attempt_id, std::string(st.message()));
  if (attempt_id == attempt_id_) {
    attempt_id_ = 0;
    dirs_.clear();
    sealed_.clear();
  }
}

void LeaseCheckouts::SweepAll() {
  absl::StatusOr<int> swept = manager_.SweepLeftovers();
  if (!swept.ok()) {
    spdlog::warn("could not remove old checkouts: {}",
                 std::string(swept.status().message()));
  } else if (*swept > 0) {
    spdlog::info("removed the checkouts of {} earlier attempt(s)", *swept);
  }
  attempt_id_ = 0;
  dirs_.clear();
  sealed_.clear();
}

StepOutcome UnrunStep(const v1::StepOrder& order, const absl::Status& why) {
  spdlog::error("{}", std::string(why.message()));
  StepOutcome out;
  out.result.set_attempt_id(order.attempt_id());
  out.result.set_lease_token(order.lease_token());
  out.result.set_step_seq(order.step_seq());
  out.result.set_exit_code(-1);
  out.result.set_error(std::string(why.message()));
  return out;
}

v1::AgentMessage DeclinedLease(const v1::Lease& lease,
                               const std::string& reason) {
  v1::AgentMessage m;
  v1::LeaseReply* r = m.mutable_lease_reply();
  r->set_attempt_id(lease.attempt_id());
  r->set_lease_token(lease.lease_token());
  r->set_accepted(false);
  r->set_reason(reason);
  return m;
}

}  // namespace benchfleet
