// FleetApi: what the user-facing API (fleet.proto) does, without gRPC —
// submitting an experiment (the controller's own validation of the spec, the
// stored record, the "DISCARDed before" warnings), reading and cancelling
// experiments, listing and cordoning agents, and reading, exporting and
// importing history. FleetServiceImpl (controller/service/) only converts
// protos to these calls and back.
//
// It talks to the scheduler through the narrow ExperimentScheduler interface
// (implemented over the Dispatcher by DispatcherScheduler) and to the Store,
// so tests drive it with a fake scheduler and a real SQLite store.
// Thread-safe if the Store and the scheduler are (both are in the controller).
#ifndef BENCHFLEET_CONTROLLER_FLEET_FLEET_API_H_
#define BENCHFLEET_CONTROLLER_FLEET_FLEET_API_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/spec.h"
#include "controller/auth/auth_policy.h"
#include "controller/auth/tokens.h"
#include "controller/bundle/bundle_store.h"
#include "controller/history/history.h"
#include "controller/scheduler/dispatcher.h"
#include "controller/store/store.h"

namespace benchfleet {

// The scheduler as the user API sees it. Implementations are thread-safe.
class ExperimentScheduler {
 public:
  virtual ~ExperimentScheduler() = default;
  // A new experiment is in the store (0: something else may let queued work
  // start, e.g. an uncordoned agent).
  virtual void OnSubmitted(int64_t experiment_id) = 0;
  // NotFound when the experiment does not exist.
  virtual absl::StatusOr<ExperimentView> View(int64_t experiment_id) = 0;
  // NotFound when the experiment does not exist; the store's status otherwise.
  virtual absl::Status Cancel(int64_t experiment_id,
                              const std::string& reason) = 0;
  virtual bool IsConnected(const std::string& agent_id) = 0;
  // The experiment the agent runs now (0: none).
  virtual int64_t CurrentExperimentOf(const std::string& agent_id) = 0;
  // Calls `fn` (which must not block) with a fresh view whenever the
  // experiment changes; returns a handle for Unsubscribe.
  virtual int64_t Subscribe(int64_t experiment_id,
                            std::function<void(const ExperimentView&)> fn) = 0;
  virtual void Unsubscribe(int64_t handle) = 0;
};

// ExperimentScheduler over the controller's Dispatcher, which must outlive it.
class DispatcherScheduler final : public ExperimentScheduler {
 public:
  explicit DispatcherScheduler(Dispatcher* dispatcher)
      : dispatcher_(dispatcher) {}
  void OnSubmitted(int64_t experiment_id) override;
  absl::StatusOr<ExperimentView> View(int64_t experiment_id) override;
  absl::Status Cancel(int64_t experiment_id,
                      const std::string& reason) override;
  bool IsConnected(const std::string& agent_id) override;
  int64_t CurrentExperimentOf(const std::string& agent_id) override;
  int64_t Subscribe(int64_t experiment_id,
                    std::function<void(const ExperimentView&)> fn) override;
  void Unsubscribe(int64_t handle) override;

 private:
  Dispatcher* dispatcher_;
};

// A submission as the CLI sends it.
struct Submission {
  std::string spec_yaml;
  std::string spec_path;  // shown in messages; may be empty
  std::string workdir;    // absolute: the spec file's directory
  std::string submitted_by;
  // The source bundle the CLI uploaded (SubmitRequest.bundle_digest): needed
  // with source.bundle, allowed without source (`submit --bundle`).
  std::string bundle_digest;
};

struct Submitted {
  int64_t experiment_id = 0;
  int64_t number = 0;
  // The spec's warnings, then the "DISCARDed before" ones.
  std::vector<std::string> warnings;
};

// An experiment with its attempts (`benchfleet show`).
struct ExperimentDetail {
  ExperimentView view;
  std::vector<AttemptRecord> attempts;
  // With source.repo: the commit each variant is measured at (resolved at
  // submit), in the spec's order; empty otherwise.
  std::vector<VariantSourceRecord> sources;
};

// An agent as `benchfleet agents` shows it.
struct AgentView {
  AgentRecord record;
  bool connected = false;
  int64_t current_experiment = 0;
};

struct HistoryRequest {
  std::string name;  // required
  absl::Time since = absl::InfinitePast();
  std::string input;  // "" = all
  std::string host;   // "" = all
};

struct HistoryExport {
  std::string file_text;
  int64_t experiments = 0;
};

class FleetApi {
 public:
  // How many of the newest matching experiments Submit looks through for an
  // earlier DISCARD of the same idea or variant.
  static constexpr int kDiscardLookback = 500;
  // The largest spec Submit accepts (the YAML text).
  static constexpr size_t kMaxSpecBytes = 1 << 20;

  // `store`, `scheduler` and `bundles` must outlive the FleetApi; `bundles`
  // may be null (a controller without a bundle store refuses bundles).
  FleetApi(Store* store, ExperimentScheduler* scheduler,
           const BundleStore* bundles = nullptr)
      : store_(store), scheduler_(scheduler), bundles_(bundles) {}

  // Validates the spec as the controller sees it (never trusting the client),
  // stores the experiment and tells the scheduler. InvalidArgument for a
  // relative or empty workdir or a spec that does not load (the loader's
  // file:line:col message) or a variant ref that does not resolve in
  // source.repo (ResolveSources: the variant, its ref and where it was
  // written); Unavailable when git cannot list source.repo; the store's
  // status when it refuses. The "DISCARDed before" check is advice: a history
  // the store cannot read is logged and never blocks a submission.
  absl::StatusOr<Submitted> Submit(const Submission& submission);
  // The bundle the experiment runs from: `digest` when the spec may use one
  // (source.bundle, or no source at all) and the bundle store holds it; ""
  // without either. FailedPrecondition (what to do) for source.bundle
  // without a digest or a digest not held; InvalidArgument with
  // source.repo.
  absl::StatusOr<std::string> CheckBundle(const ExperimentSpec& spec,
                                          const std::string& digest);
  // How long each git command of ref resolution may take (default 60 s).
  void set_git_timeout(absl::Duration timeout) { git_timeout_ = timeout; }

  // NotFound (naming the id and `benchfleet list`) for an unknown experiment.
  absl::StatusOr<ExperimentDetail> GetExperiment(int64_t id);
  // Newest first, at most `limit` (<= 0: 50); reports are left out (lists
  // stay small; GetExperiment has them).
  absl::StatusOr<std::vector<ExperimentView>> ListExperiments(int limit);
  // Empty `reason`: "cancelled by <user>". NotFound for an unknown id;
  // PermissionDenied when an authenticated submitter cancels another user's
  // experiment (admins cancel any).
  absl::StatusOr<ExperimentView> Cancel(int64_t id, const std::string& reason,
                                        const Caller& caller);

  absl::StatusOr<std::vector<AgentView>> ListAgents();
  // NotFound (naming the id and `benchfleet agents`) for an unknown agent.
  // Uncordoning lets queued work start at once.
  absl::StatusOr<AgentView> SetAgentCordoned(const std::string& id,
                                             bool cordoned);

  // InvalidArgument when the name is empty.
  absl::StatusOr<std::vector<HistoryRow>> History(const HistoryRequest& req);
  // ResourceExhausted when the file would exceed kMaxHistoryFileBytes.
  absl::StatusOr<HistoryExport> ExportHistory(const std::string& name,
                                              absl::Time since);
  // Imports a history file; experiments that ran in this store (matched by
  // their derived origin) count as already present. Nothing is imported when
  // the file is invalid (its file:line message) or the store refuses.
  absl::StatusOr<ImportCounts> ImportHistory(const std::string& file_text,
                                             const std::string& file_name);

  // API tokens (the method table in controller/auth/ admits admins only).
  absl::StatusOr<IssuedToken> CreateToken(const Caller& caller,
                                          const std::string& user,
                                          const std::string& role);
  absl::StatusOr<std::vector<TokenRecord>> ListTokens();
  // Takes effect at once on this controller (`on_token_revoked`), within the
  // auth cache's lifetime on others sharing the store.
  absl::StatusOr<TokenRecord> RevokeToken(int64_t id);
  // Called after each revocation (the controller drops its auth cache).
  void set_on_token_revoked(std::function<void()> fn) {
    on_token_revoked_ = std::move(fn);
  }

 private:
  std::vector<std::string> DiscardedBeforeFor(const ExperimentSpec& spec);

  Store* store_;
  ExperimentScheduler* scheduler_;
  const BundleStore* bundles_;
  std::function<void()> on_token_revoked_;
  absl::Duration git_timeout_ = absl::Seconds(60);
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_FLEET_FLEET_API_H_
