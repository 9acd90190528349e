#include "controller/service/agent_service.h"

#include <deque>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/order_signing.h"
#include "controller/auth/auth_processor.h"
#include "controller/service/bundle_service.h"
#include "controller/service/convert.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

using Reactor =
    grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>;

// The dispatcher's handle on one stream. Outlives the reactor: once the reactor
// is done, sends are dropped.
class GrpcAgentLink : public AgentLink,
                      public std::enable_shared_from_this<GrpcAgentLink> {
 public:
  GrpcAgentLink(Reactor* reactor, std::shared_ptr<const SigningKey> key)
      : reactor_(reactor), signing_key_(std::move(key)) {}

  // The nonce of this stream's hello, which every signed order on it carries.
  void SetSessionNonce(const std::string& nonce) {
    absl::MutexLock lock(&mu_);
    session_nonce_ = nonce;
  }

  void SendWelcome(absl::Duration heartbeat,
                   absl::Duration lease_timeout) override {
    v1::ControllerMessage m;
    m.mutable_welcome()->set_heartbeat_interval_ms(
        absl::ToInt64Milliseconds(heartbeat));
    m.mutable_welcome()->set_lease_timeout_ms(
        absl::ToInt64Milliseconds(lease_timeout));
    m.mutable_welcome()->set_controller_version("0.1.0");
    Send(std::move(m));
  }
  void SendLease(int64_t attempt_id, const std::string& token,
                 int64_t experiment_id, const std::string& name,
                 const GateSpec& gates, const std::string& workdir,
                 const std::vector<VariantSourceRecord>& sources) override {
    v1::ControllerMessage m;
    *m.mutable_lease()->mutable_gates() = ToProto(gates);
    m.mutable_lease()->set_attempt_id(attempt_id);
    m.mutable_lease()->set_lease_token(token);
    m.mutable_lease()->set_experiment_id(experiment_id);
    m.mutable_lease()->set_experiment_name(name);
    m.mutable_lease()->set_workdir(workdir);
    for (const VariantSourceRecord& s : sources) {
      v1::VariantSource* v = m.mutable_lease()->add_sources();
      v->set_variant(s.variant);
      v->set_repo(s.repo);
      v->set_commit(s.commit);
      v->set_bundle_digest(s.bundle_digest);
    }
    Send(std::move(m));
  }
  void SendStep(int64_t attempt_id, const std::string& token,
                const PlannedStep& step) override {
    v1::ControllerMessage m;
    *m.mutable_step() = ToProto(attempt_id, token, step);
    Send(std::move(m));
  }
  void SendRevoke(int64_t attempt_id, const std::string& token,
                  const std::vector<int64_t>& step_seqs,
                  const std::string& reason) override {
    v1::ControllerMessage m;
    m.mutable_revoke()->set_attempt_id(attempt_id);
    m.mutable_revoke()->set_lease_token(token);
    for (int64_t seq : step_seqs) m.mutable_revoke()->add_step_seq(seq);
    m.mutable_revoke()->set_reason(reason);
    Send(std::move(m));
  }
  void SendAck(int64_t attempt_id, int64_t seq, bool accepted,
               const std::string& reason) override {
    v1::ControllerMessage m;
    m.mutable_ack()->set_attempt_id(attempt_id);
    m.mutable_ack()->set_step_seq(seq);
    m.mutable_ack()->set_accepted(accepted);
    m.mutable_ack()->set_reason(reason);
    Send(std::move(m));
  }
  void SendRelease(int64_t attempt_id, const std::string& token,
                   const std::string& reason) override {
    v1::ControllerMessage m;
    m.mutable_release()->set_attempt_id(attempt_id);
    m.mutable_release()->set_lease_token(token);
    m.mutable_release()->set_reason(reason);
    Send(std::move(m));
  }
  void Close(const std::string& reason) override {
    absl::MutexLock lock(&mu_);
    if (reactor_ == nullptr || finished_) return;
    finished_ = true;
    reactor_->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, reason));
  }

  // Reactor side.
  void OnWriteDone(bool ok) {
    absl::MutexLock lock(&mu_);
    if (!queue_.empty()) queue_.pop_front();
    if (!ok || reactor_ == nullptr || finished_) {
      queue_.clear();
      writing_ = false;
      return;
    }
    if (queue_.empty()) {
      writing_ = false;
    } else {
      reactor_->StartWrite(&queue_.front());
    }
  }
  // Returns true if this call finished the stream.
  bool FinishOnce(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (reactor_ == nullptr || finished_) return false;
    finished_ = true;
    reactor_->Finish(status);
    return true;
  }
  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
    queue_.clear();
  }

 private:
  void Send(v1::ControllerMessage m) {
    absl::MutexLock lock(&mu_);
    if (reactor_ == nullptr || finished_) return;
    // The one place orders go onto an agent's stream: sign them here.
    if (signing_key_ != nullptr && NeedsSignature(m))
      m = SealOrder(*signing_key_, session_nonce_, m);
    queue_.push_back(std::move(m));
    if (!writing_) {
      writing_ = true;
      reactor_->StartWrite(&queue_.front());
    }
  }

  absl::Mutex mu_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_);
  const std::shared_ptr<const SigningKey> signing_key_;  // null: unsigned
  std::string session_nonce_ ABSL_GUARDED_BY(mu_);
  // std::deque keeps the front element's address stable while others are
  // appended.
  std::deque<v1::ControllerMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class AgentStreamReactor final : public Reactor {
 public:
  AgentStreamReactor(Dispatcher* dispatcher,
                     std::shared_ptr<const SigningKey> signing_key,
                     const TrustedLabels* trusted,
                     const AgentInputLimits* limits, std::string certificate_id,
                     std::string peer)
      : dispatcher_(dispatcher),
        trusted_(trusted),
        limits_(limits),
        rate_(limits->messages_per_second, limits->burst),
        certificate_id_(std::move(certificate_id)),
        peer_(std::move(peer)),
        link_(std::make_shared<GrpcAgentLink>(this, std::move(signing_key))) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent closed the stream, the connection broke, or gRPC refused a
      // message (over kMaxMessageBytes, or not a valid AgentMessage).
      spdlog::info("agent stream from {}{} ended", peer_,
                   hello_seen_ ? " (agent " + agent_id_ + ")" : "");
      link_->FinishOnce(grpc::Status::OK);
      return;
    }
    if (!rate_.Take(absl::Now())) {
      Refuse(grpc::StatusCode::RESOURCE_EXHAUSTED,
             absl::StrCat("more than ", limits_->messages_per_second,
                          " messages per second on one agent stream"));
      return;
    }
    if (absl::Status s = CheckAgentMessage(in_, *limits_); !s.ok()) {
      Refuse(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
      return;
    }
    switch (in_.msg_case()) {
      case v1::AgentMessage::kHello:
        if (in_.hello().agent_id().empty()) {
          link_->FinishOnce(
              grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                           "hello without an agent id; set --id on the agent"));
          return;
        }
        if (!Admit()) return;
        break;
      case v1::AgentMessage::kHeartbeat:
        if (hello_seen_) {
          dispatcher_->OnHeartbeat(link_, in_.heartbeat().attempt_id(),
                                   in_.heartbeat().status());
        }
        break;
      case v1::AgentMessage::kLeaseReply:
        if (hello_seen_) {
          const auto& r = in_.lease_reply();
          dispatcher_->OnLeaseReply(
              link_, r.attempt_id(), r.lease_token(), r.accepted(), r.reason(),
              r.accepted() && r.has_environment()
                  ? std::optional<HostEnvironment>(FromProto(r.environment()))
                  : std::nullopt,
              r.signature_refused());
        }
        break;
      case v1::AgentMessage::kStepResult:
        if (hello_seen_) {
          const auto& r = in_.step_result();
          dispatcher_->OnStepResult(link_, r.attempt_id(), r.lease_token(),
                                    FromProto(r));
        }
        break;
      case v1::AgentMessage::kSamples:
        if (hello_seen_) {
          const auto& b = in_.samples();
          dispatcher_->OnSamples(link_, b.attempt_id(), b.lease_token(),
                                 FromProto(b));
        }
        break;
      case v1::AgentMessage::kReleased:
      case v1::AgentMessage::MSG_NOT_SET:
        break;
    }
    if (!hello_seen_) {
      link_->FinishOnce(
          grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                       "the first message on the agent stream must be hello"));
      return;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override { link_->OnWriteDone(ok); }

  // Ends this stream only, saying why, with a log line naming the peer.
  void Refuse(grpc::StatusCode code, const std::string& why) {
    spdlog::warn("agent stream from {}{} ended by the controller: {}", peer_,
                 hello_seen_ ? " (agent " + agent_id_ + ")" : "", why);
    link_->FinishOnce(grpc::Status(code, why));
  }

  // The hello's id must be its certificate's (with TLS); trusted labels are
  // the controller's, not the agent's (controller/auth/auth_policy.h).
  bool Admit() {
    AgentHello hello = FromProto(in_.hello());
    absl::StatusOr<Admission> admitted =
        AdmitAgent(hello.agent_id, hello.labels, certificate_id_, *trusted_);
    if (!admitted.ok()) {
      spdlog::warn("agent stream from {} refused: {}", peer_,
                   std::string(admitted.status().message()));
      link_->FinishOnce(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                     std::string(admitted.status().message())));
      return false;
    }
    for (const std::string& change : admitted->changes)
      spdlog::warn("agent {} ({}): label {}", hello.agent_id, peer_, change);
    hello.labels = std::move(admitted->labels);
    hello_seen_ = true;
    agent_id_ = hello.agent_id;
    link_->SetSessionNonce(in_.hello().order_nonce());
    dispatcher_->OnConnected(link_, std::move(hello));
    return true;
  }

  void OnCancel() override { link_->FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    link_->Detach();
    if (hello_seen_) dispatcher_->OnDisconnected(link_);
    delete this;
  }

 private:
  Dispatcher* dispatcher_;
  const TrustedLabels* trusted_;
  const AgentInputLimits* limits_;
  MessageRate rate_;
  const std::string certificate_id_;  // "" without TLS
  std::string agent_id_;              // from the admitted hello
  const std::string peer_;
  std::shared_ptr<GrpcAgentLink> link_;
  v1::AgentMessage in_;
  bool hello_seen_ = false;
};

}  // namespace

Reactor* AgentServiceImpl::Connect(grpc::CallbackServerContext* context) {
  return new AgentStreamReactor(dispatcher_, signing_key_, &trusted_, &limits_,
                                CertifiedAgentId(context->auth_context().get()),
                                context->peer());
}

grpc::ServerWriteReactor<v1::BundlePiece>* AgentServiceImpl::FetchBundle(
    grpc::CallbackServerContext* /*context*/,
    const v1::FetchBundleRequest* request) {
  return NewFetchBundleReactor(bundles_.store, bundles_.executor,
                               request->digest());
}

}  // namespace benchfleet
