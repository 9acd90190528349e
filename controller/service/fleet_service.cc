#include "controller/service/fleet_service.h"

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "common/spec_loader.h"
#include "common/status_macros.h"
#include "controller/history/history.h"
#include "controller/history/history_file.h"
#include "controller/service/convert.h"
#include "spdlog/spdlog.h"

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
    rec.idea = spec.idea;
    const std::vector<std::string> discarded = DiscardedBeforeFor(spec);
    rec.discarded_before = absl::StrJoin(discarded, "; ");
    ASSIGN_OR_RETURN(ExperimentRecord stored, store_->CreateExperiment(rec));
    resp->set_experiment_id(stored.id);
    resp->set_number(stored.number);
    for (const std::string& w : spec.warnings) resp->add_warnings(w);
    for (const std::string& w : discarded) resp->add_warnings(w);
    dispatcher_->OnSubmitted(stored.id);
    return absl::OkStatus();
  });
}

std::vector<std::string> FleetServiceImpl::DiscardedBeforeFor(
    const ExperimentSpec& spec) {
  HistoryQuery q;
  if (spec.idea.empty()) {
    q.name = spec.name;
  } else {
    q.idea = spec.idea;
  }
  q.limit = kDiscardLookback;
  absl::StatusOr<std::vector<HistoryEntry>> past = store_->ListHistory(q);
  if (!past.ok()) {
    // The flag is advice: a history the store cannot read never blocks a
    // submission.
    spdlog::warn(
        "could not check the history of experiment {} for earlier "
        "DISCARD verdicts: {}",
        spec.name, past.status().ToString());
    return {};
  }
  std::vector<std::string> candidates;
  for (size_t i = 1; i < spec.variants.size(); ++i) {
    candidates.push_back(spec.variants[i].name);
  }
  return DiscardedBefore(*past, spec.idea, candidates);
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
    ASSIGN_OR_RETURN(std::vector<AttemptRecord> attempts,
                     store_->ListAttempts(req->id()));
    for (const AttemptRecord& a : attempts)
      *resp->add_attempt_list() = ToProto(a);
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

grpc::ServerUnaryReactor* FleetServiceImpl::GetHistory(
    grpc::CallbackServerContext* ctx, const v1::GetHistoryRequest* req,
    v1::GetHistoryResponse* resp) {
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    if (req->name().empty()) {
      return absl::InvalidArgumentError(
          "history needs the benchmark (experiment) name: benchfleet history "
          "--benchmark NAME");
    }
    HistoryQuery q;
    q.name = req->name();
    if (req->since_unix_ms() > 0) {
      q.since = absl::FromUnixMillis(req->since_unix_ms());
    }
    ASSIGN_OR_RETURN(std::vector<HistoryEntry> entries, store_->ListHistory(q));
    HistoryRowFilter filter;
    filter.input = req->input();
    filter.host = req->host();
    ASSIGN_OR_RETURN(std::vector<HistoryRow> rows,
                     BuildHistoryRows(entries, filter));
    for (const HistoryRow& r : rows) {
      v1::HistoryRow* out = resp->add_rows();
      out->set_time_unix_ms(absl::ToUnixMillis(r.time));
      out->set_experiment_id(r.experiment_id);
      out->set_experiment_number(r.experiment_number);
      out->set_experiment(r.experiment_name);
      out->set_campaign(r.campaign);
      out->set_input(r.input);
      out->set_variant(r.variant);
      out->set_baseline(r.baseline);
      out->set_median(r.median);
      out->set_n(r.n);
      out->set_cv(r.cv);
      out->set_change(r.change);
      out->set_verdict(r.verdict);
      out->set_input_verdict(r.input_verdict);
      out->set_metric(r.metric);
      out->set_unit(r.unit);
      out->set_commit(r.commit);
      out->set_fingerprint(r.fingerprint);
      out->set_hostname(r.hostname);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ExportHistory(
    grpc::CallbackServerContext* ctx, const v1::ExportHistoryRequest* req,
    v1::ExportHistoryResponse* resp) {
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    HistoryQuery q;
    q.name = req->name();
    if (req->since_unix_ms() > 0) {
      q.since = absl::FromUnixMillis(req->since_unix_ms());
    }
    ASSIGN_OR_RETURN(std::vector<HistoryEntry> entries, store_->ListHistory(q));
    std::string text = WriteHistoryFile(entries);
    if (text.size() > kMaxHistoryFileBytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the history of ", entries.size(), " experiments is ", text.size(),
          " bytes, more than a history file may hold (", kMaxHistoryFileBytes,
          "); export it in parts with --benchmark NAME and --since"));
    }
    resp->set_file_text(std::move(text));
    resp->set_experiments(static_cast<int64_t>(entries.size()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::ImportHistory(
    grpc::CallbackServerContext* ctx, const v1::ImportHistoryRequest* req,
    v1::ImportHistoryResponse* resp) {
  return RunUnary(ctx, executor_, [this, req, resp]() -> absl::Status {
    const std::string path =
        req->file_name().empty() ? "<history file>" : req->file_name();
    ASSIGN_OR_RETURN(std::vector<HistoryEntry> entries,
                     ParseHistoryFile(req->file_text(), path));
    // Experiments that ran here have no stored origin until they are imported
    // somewhere: their origin is derived when they are exported. So a file
    // that travelled back to the store it came from is matched against the
    // derived origins of this store's experiments of the same names.
    std::set<std::string> names;
    for (const HistoryEntry& e : entries) names.insert(e.experiment.name);
    std::set<std::string> local_origins;
    for (const std::string& name : names) {
      HistoryQuery q;
      q.name = name;
      ASSIGN_OR_RETURN(std::vector<HistoryEntry> local, store_->ListHistory(q));
      for (const HistoryEntry& e : local) {
        if (e.experiment.origin.empty()) local_origins.insert(OriginOf(e));
      }
    }
    std::vector<HistoryEntry> fresh;
    int64_t ran_here = 0;
    for (HistoryEntry& e : entries) {
      if (local_origins.count(e.experiment.origin)) {
        ++ran_here;
      } else {
        fresh.push_back(std::move(e));
      }
    }
    absl::StatusOr<ImportCounts> counts = store_->ImportHistory(fresh);
    if (!counts.ok()) {
      return absl::Status(counts.status().code(),
                          absl::StrCat(path, ": nothing was imported: ",
                                       counts.status().message()));
    }
    resp->set_imported(counts->imported);
    resp->set_already_present(counts->already_present + ran_here);
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
