#include "controller/controller.h"

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config_file.h"
#include "common/executor.h"
#include "common/signing.h"
#include "common/spec_loader.h"
#include "common/status_macros.h"
#include "controller/auth/auth_processor.h"
#include "controller/bundle/bundle_store.h"
#include "controller/fleet/fleet_api.h"
#include "controller/fleet/source_resolver.h"
#include "controller/sample_retention.h"
#include "controller/scheduler/dispatcher.h"
#include "controller/service/agent_service.h"
#include "controller/service/fleet_service.h"
#include "controller/store/store.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

std::string BundleDirOf(const ControllerOptions& options) {
  if (!options.data_dir.empty()) return options.data_dir + "/bundles";
  constexpr char kSqlite[] = "sqlite://";
  if (absl::StartsWith(options.store_url, kSqlite)) {
    const std::string file = options.store_url.substr(sizeof(kSqlite) - 1);
    const size_t slash = file.rfind('/');
    if (slash != std::string::npos) return file.substr(0, slash) + "/bundles";
  }
  return DefaultDataDir() + "/bundles";
}

}  // namespace

class Controller::Impl {
 public:
  ControllerOptions options;
  Clock* clock = nullptr;
  std::unique_ptr<Store> store;
  std::unique_ptr<Dispatcher> dispatcher;
  std::unique_ptr<Executor> executor;
  std::unique_ptr<BundleStore> bundles;
  std::unique_ptr<AgentServiceImpl> agent_service;
  std::unique_ptr<DispatcherScheduler> scheduler;
  std::unique_ptr<FleetApi> fleet_api;
  std::unique_ptr<FleetServiceImpl> fleet_service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
  std::thread retention_thread;

  // Sample retention: a pass at start-up, then hourly (by the injected clock;
  // the thread looks every minute whether a pass is due).
  void RetentionLoop() {
    SampleRetentionOptions ropts;
    ropts.keep = options.sample_retention;
    SampleRetention retention(
        [s = store.get()](absl::Time cutoff) {
          return s->DeleteSamplesBefore(cutoff);
        },
        clock, ropts);
    for (;;) {
      {
        absl::MutexLock lock(&mu);
        if (shut_down) return;
      }
      absl::StatusOr<std::optional<int64_t>> deleted = retention.RunIfDue();
      if (!deleted.ok()) {
        spdlog::error(
            "sample retention: could not delete old samples: {}; retrying in "
            "a minute",
            deleted.status().ToString());
      } else if (deleted->has_value()) {
        spdlog::info(
            "sample retention: deleted {} sample(s) taken before {} (keeping "
            "{})",
            **deleted,
            absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", retention.last_cutoff(),
                             absl::UTCTimeZone()),
            absl::FormatDuration(options.sample_retention));
      }
      absl::MutexLock lock(&mu);
      mu.AwaitWithTimeout(absl::Condition(&shut_down), absl::Minutes(1));
    }
  }

  ~Impl() {
    // Create() may fail after the retention thread started.
    {
      absl::MutexLock lock(&mu);
      shut_down = true;
    }
    if (retention_thread.joinable()) retention_thread.join();
  }

  void Shutdown() {
    {
      absl::MutexLock lock(&mu);
      if (shut_down) return;
      shut_down = true;
    }
    if (retention_thread.joinable()) retention_thread.join();
    // Open streams (agents, watchers) are cancelled after a short grace period.
    server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
    dispatcher.reset();
    executor.reset();
  }
};

absl::StatusOr<std::unique_ptr<Controller>> Controller::Create(
    const ControllerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->clock = options.clock != nullptr ? options.clock : RealClock::Get();
  std::shared_ptr<const SigningKey> signing_key;
  if (!options.signing_key_file.empty()) {
    ASSIGN_OR_RETURN(SigningKey key,
                     SigningKey::LoadPem(options.signing_key_file));
    spdlog::info("signing every order to agents with key {} ({})",
                 key.verifying_key().fingerprint(), options.signing_key_file);
    signing_key = std::make_shared<const SigningKey>(std::move(key));
  } else if (!IsLoopbackAddress(options.listen)) {
    spdlog::warn(
        "orders to agents are not signed (no signing_key) although {} is "
        "reachable from other hosts: agents configured with "
        "controller_public_key refuse them; give --signing-key",
        options.listen);
  } else {
    spdlog::info(
        "orders to agents are not signed (no signing_key); agents configured "
        "with controller_public_key will refuse them");
  }
  ASSIGN_OR_RETURN(impl->store, OpenStore(options.store_url));
  DispatcherOptions dopts;
  dopts.heartbeat_interval = options.heartbeat_interval;
  dopts.lease_timeout = options.lease_timeout;
  // The dispatcher takes specs already parsed: the stored YAML, validated
  // again against the experiment's work directory.
  // With source.repo, the commits resolved at submit are attached.
  Store* store = impl->store.get();
  auto parse_stored_spec =
      [store](const ExperimentRecord& e) -> absl::StatusOr<ExperimentSpec> {
    SpecLoadOptions opts;
    opts.base_dir = e.workdir;
    ASSIGN_OR_RETURN(ExperimentSpec spec,
                     ParseSpec(e.spec_yaml, e.spec_path, opts));
    RETURN_IF_ERROR(AttachStoredCommits(*store, e.id, &spec));
    spec.source_bundle_digest = e.bundle_digest;
    return spec;
  };
  ASSIGN_OR_RETURN(impl->dispatcher,
                   Dispatcher::Create(impl->store.get(), impl->clock, dopts,
                                      parse_stored_spec));
  impl->executor = std::make_unique<Executor>(4);
  if (options.sample_retention > absl::ZeroDuration()) {
    Impl* raw = impl.get();
    impl->retention_thread = std::thread([raw] { raw->RetentionLoop(); });
  } else {
    spdlog::info("sample retention: off, samples are kept forever");
  }
  BundleStoreOptions bopts;
  bopts.dir = BundleDirOf(options);
  bopts.max_bundle_bytes = options.max_bundle_bytes;
  absl::StatusOr<std::unique_ptr<BundleStore>> bundles =
      BundleStore::Open(bopts);
  if (bundles.ok()) {
    impl->bundles = std::move(*bundles);
  } else if (!options.data_dir.empty()) {
    return bundles.status();
  } else {
    // A default place that cannot be written (a service without a home
    // directory) must not stop a controller that never sees a bundle.
    spdlog::warn("source bundles are off: {}",
                 std::string(bundles.status().message()));
  }
  impl->agent_service = std::make_unique<AgentServiceImpl>(
      impl->dispatcher.get(), signing_key, options.trusted_labels,
      AgentInputLimits{},
      BundleServing{impl->bundles.get(), impl->executor.get()});
  impl->scheduler =
      std::make_unique<DispatcherScheduler>(impl->dispatcher.get());
  impl->fleet_api = std::make_unique<FleetApi>(
      impl->store.get(), impl->scheduler.get(), impl->bundles.get());
  impl->fleet_service = std::make_unique<FleetServiceImpl>(
      impl->fleet_api.get(), impl->scheduler.get(), impl->executor.get(),
      impl->bundles.get(), options.user_limits);

  std::shared_ptr<AuthProcessor> auth;
  if (options.transport.tls()) {
    Store* store = impl->store.get();
    auth = std::make_shared<AuthProcessor>(
        [store](const std::string& hash) { return store->FindToken(hash); },
        impl->clock, options.token_cache_ttl);
    impl->fleet_api->set_on_token_revoked([auth] { auth->Forget(); });
  }
  ASSIGN_OR_RETURN(auto creds, MakeServerCredentials(options.listen,
                                                     options.transport, auth));
  grpc::ServerBuilder builder;
  ConfigureServerBuilder(builder);
  builder.AddListeningPort(options.listen, creds, &impl->port);
  builder.RegisterService(impl->agent_service.get());
  builder.RegisterService(impl->fleet_service.get());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(
        absl::StrCat("could not listen on ", options.listen,
                     ": the address is in use or not local; pick another with "
                     "--listen HOST:PORT"));
  }
  spdlog::info(
      "benchfleet-controller listening on {}:{} ({}; store {})",
      options.listen.substr(0, options.listen.rfind(':')), impl->port,
      options.transport.tls()
          ? (options.transport.ca_file.empty()
                 ? "TLS, user tokens; no --client-ca, so no agent can connect"
                 : "mutual TLS for agents, tokens for users")
          : "plaintext, no authentication",
      RedactUrl(options.store_url));
  return std::unique_ptr<Controller>(new Controller(std::move(impl)));
}

Controller::Controller(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Controller::~Controller() { impl_->Shutdown(); }

int Controller::port() const { return impl_->port; }

std::string Controller::address() const {
  std::string host =
      impl_->options.listen.substr(0, impl_->options.listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
  return absl::StrCat(host, ":", impl_->port);
}

void Controller::Wait() { impl_->server->Wait(); }

void Controller::Shutdown() { impl_->Shutdown(); }

}  // namespace benchfleet
