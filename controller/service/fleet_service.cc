#include "controller/service/fleet_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "common/spec_loader.h"
#include "common/status_macros.h"
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

bool IsFinal(ExperimentState s) {
  return s == ExperimentState::kDone || s == ExperimentState::kFailed ||
         s == ExperimentState::kCancelled;
}

}  // namespace

grpc::ServerUnaryReactor* FleetServiceImpl::Submit(
    grpc::CallbackServerContext* ctx, const v1::SubmitRequest* req,
    v1::SubmitResponse* resp) {
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    if (req->workdir().empty() || req->workdir()[0] != '/') {
      return absl::InvalidArgumentError(
          "submit needs the absolute work directory the spec's commands run in "
          "(the CLI sends "
          "the spec file's directory)");
    }
    const std::string path =
        req->spec_path().empty() ? "<submitted spec>" : req->spec_path();
    SpecLoadOptions opts;
    opts.base_dir = req->workdir();
    // The controller never trusts the client's validation.
    ASSIGN_OR_RETURN(ExperimentSpec spec,
                     ParseSpec(req->spec_yaml(), path, opts));
    if (!spec.source_repo.empty()) {
      return absl::UnimplementedError(
          absl::StrCat(path,
                       ": source.repo: building variants from a repository is "
                       "not supported by this "
                       "controller yet; build the variants yourself and point "
                       "each variant's command "
                       "at its binary"));
    }
    ExperimentRecord rec;
    rec.name = spec.name;
    rec.campaign = spec.campaign;
    rec.spec_yaml = req->spec_yaml();
    rec.spec_path = path;
    rec.workdir = req->workdir();
    rec.required_labels = spec.required_labels;
    rec.submitted_by = req->submitted_by();
    ASSIGN_OR_RETURN(ExperimentRecord stored, store_->CreateExperiment(rec));
    resp->set_experiment_id(stored.id);
    resp->set_number(stored.number);
    for (const std::string& w : spec.warnings) resp->add_warnings(w);
    dispatcher_->OnSubmitted(stored.id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::GetExperiment(
    grpc::CallbackServerContext* ctx, const v1::GetExperimentRequest* req,
    v1::Experiment* resp) {
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    absl::StatusOr<ExperimentView> view = dispatcher_->View(req->id());
    if (absl::IsNotFound(view.status())) {
      return absl::NotFoundError(
          absl::StrCat("no experiment with id ", req->id(),
                       "; `benchfleet list` shows the ids"));
    }
    RETURN_IF_ERROR(view.status());
    *resp = ToProto(*view);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ListExperiments(
    grpc::CallbackServerContext* ctx, const v1::ListExperimentsRequest* req,
    v1::ListExperimentsResponse* resp) {
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(
        std::vector<ExperimentRecord> list,
        store_->ListExperiments(req->limit() > 0 ? req->limit() : 50));
    for (ExperimentRecord& r : list) {
      absl::StatusOr<ExperimentView> view = dispatcher_->View(r.id);
      ExperimentView v;
      if (view.ok()) {
        v = std::move(*view);
      } else {
        v.record = std::move(r);
      }
      v.record.report_text.clear();  // lists stay small; `show` has the report
      v.record.report_json.clear();
      *resp->add_experiments() = ToProto(v);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::CancelExperiment(
    grpc::CallbackServerContext* ctx, const v1::CancelExperimentRequest* req,
    v1::Experiment* resp) {
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    const std::string reason =
        req->reason().empty() ? "cancelled by the user" : req->reason();
    absl::Status st = dispatcher_->Cancel(req->id(), reason);
    if (absl::IsNotFound(st)) {
      return absl::NotFoundError(
          absl::StrCat("no experiment with id ", req->id(),
                       "; `benchfleet list` shows the ids"));
    }
    RETURN_IF_ERROR(st);
    ASSIGN_OR_RETURN(ExperimentView view, dispatcher_->View(req->id()));
    *resp = ToProto(view);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ListAgents(
    grpc::CallbackServerContext* ctx, const v1::ListAgentsRequest* /*req*/,
    v1::ListAgentsResponse* resp) {
  return RunUnary(ctx, executor_, [this, resp]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<AgentRecord> agents, store_->ListAgents());
    for (const AgentRecord& a : agents) {
      *resp->add_agents() = ToProto(a, dispatcher_->IsConnected(a.id),
                                    dispatcher_->CurrentExperimentOf(a.id));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::SetAgentCordoned(
    grpc::CallbackServerContext* ctx, const v1::SetAgentCordonedRequest* req,
    v1::Agent* resp) {
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    absl::Status st = store_->SetAgentCordoned(req->id(), req->cordoned());
    if (absl::IsNotFound(st)) {
      return absl::NotFoundError(
          absl::StrCat("no agent with id '", req->id(),
                       "'; `benchfleet agents` lists them"));
    }
    RETURN_IF_ERROR(st);
    ASSIGN_OR_RETURN(AgentRecord a, store_->GetAgent(req->id()));
    *resp = ToProto(a, dispatcher_->IsConnected(a.id),
                    dispatcher_->CurrentExperimentOf(a.id));
    dispatcher_->OnSubmitted(
        0);  // an uncordoned agent may take queued work now
    return absl::OkStatus();
  });
}

namespace {

// Streams snapshots of one experiment. The dispatcher's watcher callback and
// the reactor share `State`; the newest snapshot replaces one not yet written
// (watchers want the present, not every intermediate step).
class WatchReactor final : public grpc::ServerWriteReactor<v1::Experiment> {
 public:
  WatchReactor(Dispatcher* dispatcher, Executor* executor, int64_t id)
      : dispatcher_(dispatcher), state_(std::make_shared<State>()) {
    state_->reactor = this;
    std::shared_ptr<State> state = state_;
    handle_ = dispatcher->Subscribe(id, [state](const ExperimentView& view) {
      state->Offer(ToProto(view), IsFinal(view.record.state));
    });
    // Captures no `this`: the call may end before the executor gets here.
    executor->Schedule([dispatcher, state, id] {
      absl::StatusOr<ExperimentView> view = dispatcher->View(id);
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
    dispatcher_->Unsubscribe(handle_);
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

  Dispatcher* dispatcher_;
  std::shared_ptr<State> state_;
  int64_t handle_ = 0;
};

}  // namespace

grpc::ServerWriteReactor<v1::Experiment>* FleetServiceImpl::WatchExperiment(
    grpc::CallbackServerContext* /*ctx*/,
    const v1::WatchExperimentRequest* req) {
  return new WatchReactor(dispatcher_, executor_, req->id());
}

}  // namespace benchfleet
