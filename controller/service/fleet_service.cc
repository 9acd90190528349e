#include "controller/service/fleet_service.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "controller/auth/auth_processor.h"
#include "controller/service/bundle_service.h"
#include "controller/service/convert.h"

namespace benchfleet {
namespace {

// Runs `work` on the executor and finishes the unary call with its status.
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx,
                                   Executor* executor,
                                   std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  executor->Schedule([reactor, work = std::move(work)] {
    reactor->Finish(ToGrpcStatus(work()));
  });
  return reactor;
}

v1::Token TokenToProto(const TokenRecord& t) {
  v1::Token out;
  out.set_id(t.id);
  out.set_user(t.user);
  out.set_role(RoleName(t.role));
  out.set_created_by(t.created_by);
  out.set_created_at_unix_ms(absl::ToUnixMillis(t.created_at));
  if (t.revoked_at.has_value())
    out.set_revoked_at_unix_ms(absl::ToUnixMillis(*t.revoked_at));
  return out;
}

// Whose budget a call spends: the token's user over TLS, otherwise the
// client's address without its port ("ipv4:10.0.0.5"), so that opening more
// connections buys no more calls.
std::string CallerKey(grpc::CallbackServerContext* ctx) {
  const Caller caller = CallerOf(ctx->auth_context().get(), "");
  if (caller.authenticated) return absl::StrCat("user '", caller.user, "'");
  std::string peer = ctx->peer();
  const size_t last = peer.rfind(':');
  if (last != std::string::npos && last > peer.find(':')) peer.resize(last);
  return absl::StrCat("address ", peer);
}

// A watch refused before it started.
class RefusedWatch final : public grpc::ServerWriteReactor<v1::Experiment> {
 public:
  explicit RefusedWatch(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

bool IsFinal(ExperimentState s) {
  return s == ExperimentState::kDone || s == ExperimentState::kFailed ||
         s == ExperimentState::kCancelled;
}

}  // namespace

grpc::ServerUnaryReactor* FleetServiceImpl::RefuseOverBudget(
    grpc::CallbackServerContext* ctx) {
  // Not logged: a flood would fill the log; the caller is told.
  const absl::Status st = limiter_.AdmitCall(CallerKey(ctx), absl::Now());
  if (st.ok()) return nullptr;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(st));
  return reactor;
}

grpc::ServerUnaryReactor* FleetServiceImpl::Submit(
    grpc::CallbackServerContext* ctx, const v1::SubmitRequest* req,
    v1::SubmitResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  // With tokens (TLS), the submitter is the token's user, whatever the
  // request says.
  const Caller caller =
      CallerOf(ctx->auth_context().get(), req->submitted_by());
  return RunUnary(ctx, executor_, [this, req, resp, caller]() -> absl::Status {
    Submission s;
    s.spec_yaml = req->spec_yaml();
    s.spec_path = req->spec_path();
    s.workdir = req->workdir();
    s.submitted_by = caller.user;
    s.bundle_digest = req->bundle_digest();
    ASSIGN_OR_RETURN(Submitted done, api_->Submit(s));
    resp->set_experiment_id(done.experiment_id);
    resp->set_number(done.number);
    for (const std::string& w : done.warnings) resp->add_warnings(w);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::GetExperiment(
    grpc::CallbackServerContext* ctx, const v1::GetExperimentRequest* req,
    v1::Experiment* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(ExperimentDetail detail, api_->GetExperiment(req->id()));
    *resp = ToProto(detail.view);
    for (const AttemptRecord& a : detail.attempts)
      *resp->add_attempt_list() = ToProto(a);
    for (const VariantSourceRecord& s : detail.sources) {
      v1::SourceCommit* c = resp->add_sources();
      c->set_variant(s.variant);
      c->set_repo(s.repo);
      c->set_ref(s.ref);
      c->set_commit(s.commit);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ListExperiments(
    grpc::CallbackServerContext* ctx, const v1::ListExperimentsRequest* req,
    v1::ListExperimentsResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<ExperimentView> list,
                     api_->ListExperiments(req->limit()));
    for (const ExperimentView& v : list) *resp->add_experiments() = ToProto(v);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::CancelExperiment(
    grpc::CallbackServerContext* ctx, const v1::CancelExperimentRequest* req,
    v1::Experiment* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  const Caller caller = CallerOf(ctx->auth_context().get(), "");
  return RunUnary(ctx, executor_, [this, req, resp, caller]() -> absl::Status {
    ASSIGN_OR_RETURN(ExperimentView view,
                     api_->Cancel(req->id(), req->reason(), caller));
    *resp = ToProto(view);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ListAgents(
    grpc::CallbackServerContext* ctx, const v1::ListAgentsRequest* /*req*/,
    v1::ListAgentsResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<AgentView> agents, api_->ListAgents());
    for (const AgentView& a : agents) {
      *resp->add_agents() =
          ToProto(a.record, a.connected, a.current_experiment);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::SetAgentCordoned(
    grpc::CallbackServerContext* ctx, const v1::SetAgentCordonedRequest* req,
    v1::Agent* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(AgentView a,
                     api_->SetAgentCordoned(req->id(), req->cordoned()));
    *resp = ToProto(a.record, a.connected, a.current_experiment);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::GetHistory(
    grpc::CallbackServerContext* ctx, const v1::GetHistoryRequest* req,
    v1::GetHistoryResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    HistoryRequest q;
    q.name = req->name();
    if (req->since_unix_ms() > 0) {
      q.since = absl::FromUnixMillis(req->since_unix_ms());
    }
    q.input = req->input();
    q.host = req->host();
    ASSIGN_OR_RETURN(std::vector<HistoryRow> rows, api_->History(q));
    for (const HistoryRow& r : rows) *resp->add_rows() = ToProto(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ExportHistory(
    grpc::CallbackServerContext* ctx, const v1::ExportHistoryRequest* req,
    v1::ExportHistoryResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(
        HistoryExport out,
        api_->ExportHistory(req->name(),
                            req->since_unix_ms() > 0
                                ? absl::FromUnixMillis(req->since_unix_ms())
                                : absl::InfinitePast()));
    resp->set_file_text(std::move(out.file_text));
    resp->set_experiments(out.experiments);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ImportHistory(
    grpc::CallbackServerContext* ctx, const v1::ImportHistoryRequest* req,
    v1::ImportHistoryResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(ImportCounts counts,
                     api_->ImportHistory(req->file_text(), req->file_name()));
    resp->set_imported(counts.imported);
    resp->set_already_present(counts.already_present);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::CreateToken(
    grpc::CallbackServerContext* ctx, const v1::CreateTokenRequest* req,
    v1::CreateTokenResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  const Caller caller = CallerOf(ctx->auth_context().get(), "");
  return RunUnary(ctx, executor_, [this, req, resp, caller]() -> absl::Status {
    ASSIGN_OR_RETURN(IssuedToken issued,
                     api_->CreateToken(caller, req->user(), req->role()));
    *resp->mutable_token() = TokenToProto(issued.record);
    resp->set_token_text(std::move(issued.text));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ListTokens(
    grpc::CallbackServerContext* ctx, const v1::ListTokensRequest* /*req*/,
    v1::ListTokensResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<TokenRecord> tokens, api_->ListTokens());
    for (const TokenRecord& t : tokens) *resp->add_tokens() = TokenToProto(t);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::RevokeToken(
    grpc::CallbackServerContext* ctx, const v1::RevokeTokenRequest* req,
    v1::Token* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(TokenRecord t, api_->RevokeToken(req->id()));
    *resp = TokenToProto(t);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::WhoAmI(
    grpc::CallbackServerContext* ctx, const v1::WhoAmIRequest* /*req*/,
    v1::WhoAmIResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  const Caller caller = CallerOf(ctx->auth_context().get(), "");
  resp->set_user(caller.user);
  resp->set_role(RoleName(caller.role));
  resp->set_authenticated(caller.authenticated);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* FleetServiceImpl::HasBundle(
    grpc::CallbackServerContext* ctx, const v1::HasBundleRequest* req,
    v1::HasBundleResponse* resp) {
  if (grpc::ServerUnaryReactor* r = RefuseOverBudget(ctx)) return r;
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    if (bundles_ == nullptr) {
      return absl::UnavailableError(
          "this controller keeps no bundles (it has no data directory); "
          "start it with --data-dir");
    }
    ASSIGN_OR_RETURN(std::optional<int64_t> size,
                     bundles_->Find(req->digest()));
    resp->set_present(size.has_value());
    if (size.has_value()) resp->set_size_bytes(*size);
    return absl::OkStatus();
  });
}

grpc::ServerReadReactor<v1::UploadBundleChunk>* FleetServiceImpl::UploadBundle(
    grpc::CallbackServerContext* ctx, v1::UploadBundleResponse* resp) {
  // One upload is one call of the caller's budget, however many chunks it
  // sends: its size is bounded by the store's per-bundle cap.
  const absl::Status st = limiter_.AdmitCall(CallerKey(ctx), absl::Now());
  if (!st.ok()) return NewRefusedUploadReactor(ToGrpcStatus(st));
  return NewUploadBundleReactor(bundles_, executor_, resp);
}

namespace {

// Streams snapshots of one experiment. The scheduler's watcher callback and
// the reactor share `State`; the newest snapshot replaces one not yet written
// (watchers want the present, not every intermediate step).
class WatchReactor final : public grpc::ServerWriteReactor<v1::Experiment> {
 public:
  // `limiter` counts this stream for `caller` until OnDone.
  WatchReactor(ExperimentScheduler* scheduler, Executor* executor, int64_t id,
               UserCallLimiter* limiter, std::string caller)
      : scheduler_(scheduler),
        limiter_(limiter),
        caller_(std::move(caller)),
        state_(std::make_shared<State>()) {
    state_->reactor = this;
    std::shared_ptr<State> state = state_;
    handle_ = scheduler->Subscribe(id, [state](const ExperimentView& view) {
      state->Offer(ToProto(view), IsFinal(view.record.state));
    });
    // Captures no `this`: the call may end before the executor gets here.
    executor->Schedule([scheduler, state, id] {
      absl::StatusOr<ExperimentView> view = scheduler->View(id);
      if (!view.ok()) {
        state->Fail(absl::IsNotFound(view.status())
                        ? grpc::Status(
                              grpc::StatusCode::NOT_FOUND,
                              absl::StrCat("no experiment with id ", id,
                                           "; `benchfleet list` shows the ids"))
                        : ToGrpcStatus(view.status()));
        return;
      }
      state->Offer(ToProto(*view), IsFinal(view->record.state));
    });
  }

  void OnWriteDone(bool ok) override { state_->WriteDone(ok); }
  void OnCancel() override { state_->Fail(grpc::Status::CANCELLED); }
  void OnDone() override {
    scheduler_->Unsubscribe(handle_);
    limiter_->EndWatch(caller_);
    {
      absl::MutexLock lock(&state_->mu);
      state_->reactor = nullptr;
    }
    delete this;
  }

 private:
  struct State {
    absl::Mutex mu;
    WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
    v1::Experiment writing ABSL_GUARDED_BY(mu);
    std::optional<v1::Experiment> pending ABSL_GUARDED_BY(mu);
    bool pending_final ABSL_GUARDED_BY(mu) = false;
    bool in_flight ABSL_GUARDED_BY(mu) = false;
    bool final_written ABSL_GUARDED_BY(mu) = false;
    bool finished ABSL_GUARDED_BY(mu) = false;

    void Offer(v1::Experiment e, bool final) {
      absl::MutexLock lock(&mu);
      if (reactor == nullptr || finished || final_written) return;
      pending = std::move(e);
      pending_final = final;
      if (!in_flight) StartNextLocked();
    }
    void WriteDone(bool ok) {
      absl::MutexLock lock(&mu);
      in_flight = false;
      if (reactor == nullptr || finished) return;
      if (!ok) {
        finished = true;
        reactor->Finish(grpc::Status::CANCELLED);
        return;
      }
      if (final_written) {
        finished = true;
        reactor->Finish(grpc::Status::OK);
        return;
      }
      if (pending) StartNextLocked();
    }
    void Fail(grpc::Status status) {
      absl::MutexLock lock(&mu);
      if (reactor == nullptr || finished) return;
      finished = true;
      reactor->Finish(status);
    }
    void StartNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      writing = std::move(*pending);
      pending.reset();
      final_written = pending_final;
      in_flight = true;
      reactor->StartWrite(&writing);
    }
  };

  ExperimentScheduler* scheduler_;
  UserCallLimiter* limiter_;
  const std::string caller_;
  std::shared_ptr<State> state_;
  int64_t handle_ = 0;
};

}  // namespace

grpc::ServerWriteReactor<v1::Experiment>* FleetServiceImpl::WatchExperiment(
    grpc::CallbackServerContext* ctx, const v1::WatchExperimentRequest* req) {
  std::string caller = CallerKey(ctx);
  if (absl::Status st = limiter_.AdmitWatch(caller, absl::Now()); !st.ok())
    return new RefusedWatch(ToGrpcStatus(st));
  return new WatchReactor(scheduler_, executor_, req->id(), &limiter_,
                          std::move(caller));
}

}  // namespace benchfleet
