#include "controller/fleet/fleet_api.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/spec_loader.h"
#include "common/status_macros.h"
#include "controller/fleet/source_resolver.h"
#include "controller/history/history_file.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

absl::Status NoSuchExperiment(int64_t id) {
  return absl::NotFoundError(absl::StrCat("no experiment with id ", id,
                                          "; `benchfleet list` shows the ids"));
}

}  // namespace

void DispatcherScheduler::OnSubmitted(int64_t experiment_id) {
  dispatcher_->OnSubmitted(experiment_id);
}
absl::StatusOr<ExperimentView> DispatcherScheduler::View(
    int64_t experiment_id) {
  return dispatcher_->View(experiment_id);
}
absl::Status DispatcherScheduler::Cancel(int64_t experiment_id,
                                         const std::string& reason) {
  return dispatcher_->Cancel(experiment_id, reason);
}
bool DispatcherScheduler::IsConnected(const std::string& agent_id) {
  return dispatcher_->IsConnected(agent_id);
}
int64_t DispatcherScheduler::CurrentExperimentOf(const std::string& agent_id) {
  return dispatcher_->CurrentExperimentOf(agent_id);
}
int64_t DispatcherScheduler::Subscribe(
    int64_t experiment_id, std::function<void(const ExperimentView&)> fn) {
  return dispatcher_->Subscribe(experiment_id, std::move(fn));
}
void DispatcherScheduler::Unsubscribe(int64_t handle) {
  dispatcher_->Unsubscribe(handle);
}

absl::StatusOr<Submitted> FleetApi::Submit(const Submission& submission) {
  if (submission.spec_yaml.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        submission.spec_path.empty() ? "the spec" : submission.spec_path,
        " is ", submission.spec_yaml.size(),
        " bytes; the controller accepts specs up to ", kMaxSpecBytes,
        " bytes. Keep inputs and data in files the spec names, not in the "
        "spec"));
  }
  if (submission.spec_path.size() > 4096 || submission.workdir.size() > 4096) {
    return absl::InvalidArgumentError(
        "the spec path or work directory is longer than 4096 bytes");
  }
  if (submission.workdir.empty() || submission.workdir[0] != '/') {
    return absl::InvalidArgumentError(
        "submit needs the absolute work directory the spec's commands run in "
        "(the CLI sends the spec file's directory)");
  }
  const std::string path =
      submission.spec_path.empty() ? "<submitted spec>" : submission.spec_path;
  SpecLoadOptions opts;
  opts.base_dir = submission.workdir;
  // The controller never trusts the client's validation.
  ASSIGN_OR_RETURN(ExperimentSpec spec,
                   ParseSpec(submission.spec_yaml, path, opts));
  // Refs are resolved now, before anything is stored: what is measured is
  // fixed when the experiment is queued, and a bad ref queues nothing.
  ASSIGN_OR_RETURN(std::vector<VariantSourceRecord> sources,
                   ResolveSources(spec, git_timeout_));
  ASSIGN_OR_RETURN(const std::string bundle_digest,
                   CheckBundle(spec, submission.bundle_digest));
  ExperimentRecord rec;
  rec.bundle_digest = bundle_digest;
  rec.name = spec.name;
  rec.campaign = spec.campaign;
  rec.spec_yaml = submission.spec_yaml;
  rec.spec_path = path;
  rec.workdir = submission.workdir;
  rec.required_labels = spec.required_labels;
  rec.submitted_by = submission.submitted_by;
  rec.idea = spec.idea;
  const std::vector<std::string> discarded = DiscardedBeforeFor(spec);
  rec.discarded_before = absl::StrJoin(discarded, "; ");
  ASSIGN_OR_RETURN(ExperimentRecord stored, store_->CreateExperiment(rec));
  if (!sources.empty()) {
    // A dispatcher that claims the experiment before this is stored finds no
    // commits and re-queues the attempt (Controller's stored-spec loader).
    absl::Status recorded = store_->RecordExperimentSources(stored.id, sources);
    if (!recorded.ok()) {
      (void)store_->CancelExperiment(
          stored.id, "its resolved commits could not be stored", absl::Now());
      return absl::Status(
          recorded.code(),
          absl::StrCat("experiment ", stored.id,
                       " was not queued: storing the commits of its variants "
                       "failed (",
                       recorded.message(), "); submit it again"));
    }
    for (const VariantSourceRecord& s : sources) {
      spdlog::info("experiment {} ({}): variant {} at {} ({} of {})", stored.id,
                   spec.name, s.variant, s.commit, s.ref, s.repo);
    }
  }
  Submitted out;
  out.experiment_id = stored.id;
  out.number = stored.number;
  out.warnings = spec.warnings;
  out.warnings.insert(out.warnings.end(), discarded.begin(), discarded.end());
  scheduler_->OnSubmitted(stored.id);
  return out;
}

absl::StatusOr<std::string> FleetApi::CheckBundle(const ExperimentSpec& spec,
                                                  const std::string& digest) {
  const std::string& where = spec.source_path;
  if (digest.empty()) {
    if (spec.source_bundle.empty()) return std::string();
    return absl::FailedPreconditionError(absl::StrCat(
        where, ": the spec says source: {bundle: ", spec.source_bundle,
        "} but no bundle came with it; submit it with `benchfleet submit`, "
        "which packs and uploads the directory first"));
  }
  if (!spec.source_repo.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where,
        ": the spec builds its variants from source.repo, so a bundle would "
        "not be used; submit without --bundle, or replace source.repo with "
        "source: {bundle: .}"));
  }
  if (bundles_ == nullptr) {
    return absl::FailedPreconditionError(
        "this controller keeps no source bundles (its data directory could "
        "not be used; see its log); start it with --data-dir, or submit "
        "without a bundle");
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> size, bundles_->Find(digest));
  if (!size.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the controller holds no bundle ", digest,
        "; upload it first (`benchfleet bundle push DIR`, or submit with "
        "`benchfleet submit`, which uploads it)"));
  }
  return digest;
}

std::vector<std::string> FleetApi::DiscardedBeforeFor(
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
        "could not check the history of experiment {} for earlier DISCARD "
        "verdicts: {}",
        spec.name, past.status().ToString());
    return {};
  }
  std::vector<std::string> candidates;
  for (size_t i = 1; i < spec.variants.size(); ++i) {
    candidates.push_back(spec.variants[i].name);
  }
  return DiscardedBefore(*past, spec.idea, candidates);
}

absl::StatusOr<ExperimentDetail> FleetApi::GetExperiment(int64_t id) {
  absl::StatusOr<ExperimentView> view = scheduler_->View(id);
  if (absl::IsNotFound(view.status())) return NoSuchExperiment(id);
  RETURN_IF_ERROR(view.status());
  ExperimentDetail out;
  out.view = std::move(*view);
  ASSIGN_OR_RETURN(out.attempts, store_->ListAttempts(id));
  ASSIGN_OR_RETURN(out.sources, store_->ListExperimentSources(id));
  return out;
}

absl::StatusOr<std::vector<ExperimentView>> FleetApi::ListExperiments(
    int limit) {
  ASSIGN_OR_RETURN(std::vector<ExperimentRecord> list,
                   store_->ListExperiments(limit > 0 ? limit : 50));
  std::vector<ExperimentView> out;
  out.reserve(list.size());
  for (ExperimentRecord& r : list) {
    absl::StatusOr<ExperimentView> view = scheduler_->View(r.id);
    ExperimentView v;
    if (view.ok()) {
      v = std::move(*view);
    } else {
      v.record = std::move(r);
    }
    v.record.report_text.clear();  // lists stay small; `show` has the report
    v.record.report_json.clear();
    out.push_back(std::move(v));
  }
  return out;
}

absl::StatusOr<ExperimentView> FleetApi::Cancel(int64_t id,
                                                const std::string& reason,
                                                const Caller& caller) {
  absl::StatusOr<ExperimentRecord> record = store_->GetExperiment(id);
  if (absl::IsNotFound(record.status())) return NoSuchExperiment(id);
  RETURN_IF_ERROR(record.status());
  RETURN_IF_ERROR(CheckMayCancel(caller, record->submitted_by, id));
  const std::string who = caller.authenticated ? caller.user : "the user";
  absl::Status st = scheduler_->Cancel(
      id, reason.empty() ? absl::StrCat("cancelled by ", who) : reason);
  if (absl::IsNotFound(st)) return NoSuchExperiment(id);
  RETURN_IF_ERROR(st);
  return scheduler_->View(id);
}

absl::StatusOr<std::vector<AgentView>> FleetApi::ListAgents() {
  ASSIGN_OR_RETURN(std::vector<AgentRecord> agents, store_->ListAgents());
  std::vector<AgentView> out;
  out.reserve(agents.size());
  for (AgentRecord& a : agents) {
    AgentView v;
    v.connected = scheduler_->IsConnected(a.id);
    v.current_experiment = scheduler_->CurrentExperimentOf(a.id);
    v.record = std::move(a);
    out.push_back(std::move(v));
  }
  return out;
}

absl::StatusOr<AgentView> FleetApi::SetAgentCordoned(const std::string& id,
                                                     bool cordoned) {
  absl::Status st = store_->SetAgentCordoned(id, cordoned);
  if (absl::IsNotFound(st)) {
    return absl::NotFoundError(absl::StrCat(
        "no agent with id '", id, "'; `benchfleet agents` lists them"));
  }
  RETURN_IF_ERROR(st);
  AgentView v;
  ASSIGN_OR_RETURN(v.record, store_->GetAgent(id));
  v.connected = scheduler_->IsConnected(id);
  v.current_experiment = scheduler_->CurrentExperimentOf(id);
  scheduler_->OnSubmitted(0);  // an uncordoned agent may take queued work now
  return v;
}

absl::StatusOr<std::vector<HistoryRow>> FleetApi::History(
    const HistoryRequest& req) {
  if (req.name.empty()) {
    return absl::InvalidArgumentError(
        "history needs the benchmark (experiment) name: benchfleet history "
        "--benchmark NAME");
  }
  HistoryQuery q;
  q.name = req.name;
  q.since = req.since;
  ASSIGN_OR_RETURN(std::vector<HistoryEntry> entries, store_->ListHistory(q));
  HistoryRowFilter filter;
  filter.input = req.input;
  filter.host = req.host;
  return BuildHistoryRows(entries, filter);
}

absl::StatusOr<HistoryExport> FleetApi::ExportHistory(const std::string& name,
                                                      absl::Time since) {
  HistoryQuery q;
  q.name = name;
  q.since = since;
  ASSIGN_OR_RETURN(std::vector<HistoryEntry> entries, store_->ListHistory(q));
  HistoryExport out;
  out.file_text = WriteHistoryFile(entries);
  if (out.file_text.size() > kMaxHistoryFileBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the history of ", entries.size(), " experiments is ",
        out.file_text.size(), " bytes, more than a history file may hold (",
        kMaxHistoryFileBytes,
        "); export it in parts with --benchmark NAME and --since"));
  }
  out.experiments = static_cast<int64_t>(entries.size());
  return out;
}

absl::StatusOr<ImportCounts> FleetApi::ImportHistory(
    const std::string& file_text, const std::string& file_name) {
  const std::string path = file_name.empty() ? "<history file>" : file_name;
  ASSIGN_OR_RETURN(std::vector<HistoryEntry> entries,
                   ParseHistoryFile(file_text, path));
  // Experiments that ran here have no stored origin until they are imported
  // somewhere: their origin is derived when they are exported. So a file that
  // travelled back to the store it came from is matched against the derived
  // origins of this store's experiments of the same names.
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
  int ran_here = 0;
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
  counts->already_present += ran_here;
  return counts;
}

absl::StatusOr<IssuedToken> FleetApi::CreateToken(const Caller& caller,
                                                  const std::string& user,
                                                  const std::string& role) {
  ASSIGN_OR_RETURN(IssuedToken issued,
                   IssueToken(store_, user, role, caller.user, absl::Now()));
  spdlog::info("token {} created for '{}' with role {} by '{}'",
               issued.record.id, user, RoleName(issued.record.role),
               caller.user);
  return issued;
}

absl::StatusOr<std::vector<TokenRecord>> FleetApi::ListTokens() {
  return store_->ListTokens();
}

absl::StatusOr<TokenRecord> FleetApi::RevokeToken(int64_t id) {
  ASSIGN_OR_RETURN(TokenRecord token, store_->RevokeToken(id, absl::Now()));
  if (on_token_revoked_) on_token_revoked_();
  spdlog::info("token {} of '{}' revoked", token.id, token.user);
  return token;
}

}  // namespace benchfleet
