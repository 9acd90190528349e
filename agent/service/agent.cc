#include "agent/service/agent.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "agent/bundle/bundle_cache.h"
#include "agent/bundle/grpc_bundle_fetcher.h"
#include "agent/lease/host_lock.h"
#include "agent/probe/host_facts.h"
#include "agent/probe/nvml_probe.h"
#include "agent/probe/sysfs_probe.h"
#include "agent/runner/job_tree.h"
#include "agent/runner/job_user.h"
#include "agent/service/agent_convert.h"
#include "agent/service/controller_link.h"
#include "agent/service/host_gates.h"
#include "agent/service/lease_checkouts.h"
#include "agent/service/lease_state.h"
#include "agent/service/step_executor.h"
#include "benchfleet/v1/agent.pb.h"
#include "common/config_file.h"
#include "common/order_signing.h"
#include "common/signing.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace benchfleet {
namespace {

// The job-user rules of DESIGN.md §7, at start-up.
absl::Status CheckJobSecurity(const AgentOptions& options) {
  const bool root = geteuid() == 0;
  const RootJobsDecision root_rule =
      DecideRootJobs(root, !options.job_user.empty(), options.allow_root_jobs,
                     IsLoopbackAddress(options.controller));
  if (root_rule.verdict == RootJobsVerdict::kRefuse) {
    return absl::FailedPreconditionError(root_rule.message);
  }
  if (root_rule.verdict == RootJobsVerdict::kWarn) {
    spdlog::warn("{}", root_rule.message);
  }
  if (options.job_user.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const JobUser user, LookUpJobUser(options.job_user));
  if (user.uid == geteuid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job_user '", user.name,
        "' is the agent's own user, so jobs could read its keys and data: "
        "set job_user to another, unprivileged user"));
  }
  if (!root) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job_user '", user.name,
        "' needs an agent running as root (it switches to that user for each "
        "job); start the agent as root or remove job_user"));
  }
  if (user.uid == 0) {
    return absl::FailedPreconditionError(
        "job_user is root; set it to an unprivileged user (or leave it "
        "unset and set allow_root_jobs: true)");
  }
  std::vector<std::string> paths = options.secret_files;
  paths.push_back(options.workdir);
  RETURN_IF_ERROR(CheckUnreadableBy(user, paths));
  spdlog::info("jobs run as user '{}' (uid {})", user.name, user.uid);
  return absl::OkStatus();
}

void SweepLeftoversOfPreviousRuns(const AgentOptions& options) {
  StartupSweep sweep;
  sweep.record_path = JobRecordPath(options.workdir);
  sweep.cookie_prefix = absl::StrCat(options.id, "/");
  const StartupSweepResult swept = SweepLeftoverJobs(sweep);
  if (!swept.killed.empty()) {
    std::string names;
    for (const KilledProcess& k : swept.killed) {
      absl::StrAppend(&names, names.empty() ? "" : "; ", k.pid, " ", k.command);
    }
    spdlog::warn(
        "killed {} process(es) left by jobs of a previous run of agent {} "
        "(before accepting work): {}",
        swept.killed.size(), options.id, names);
  }
  if (!swept.cgroup_removed.empty()) {
    spdlog::warn("killed and removed the cgroup {} of a previous run's job",
                 swept.cgroup_removed);
  }
  if (!swept.cgroup_error.empty()) spdlog::error("{}", swept.cgroup_error);
  if (!swept.survivors.empty()) {
    spdlog::error(
        "processes of a previous run's job survived SIGKILL: {}; the host may "
        "not be exclusive",
        absl::StrJoin(swept.survivors, " "));
  }
}

}  // namespace

class Agent::Impl {
 public:
  AgentOptions options;
  ProcessRunner* runner = nullptr;
  std::unique_ptr<HostLock> lock;
  HostFacts facts;
  std::vector<std::string> base_env;
  // The controller's public key; unset: orders are accepted unverified.
  std::optional<VerifyingKey> controller_key;
  // This stream's hello nonce, which signed orders must carry. Used by the
  // session thread only (RunSession, Handle).
  std::string session_nonce;

  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  // Why Run stopped by itself (the link could not be configured); OK after
  // Shutdown.
  absl::Status config_error ABSL_GUARDED_BY(mu);
  // The lease, its orders and results, and the cut-off rule (pure; every time
  // it is given comes from `clock`).
  LeaseState lease ABSL_GUARDED_BY(mu){absl::ZeroDuration(),
                                       absl::InfinitePast()};
  // The link to the controller (options.link, or `own_link`), and the stream
  // of the current session (Shutdown cancels it).
  ControllerLink* link = nullptr;
  std::unique_ptr<ControllerLink> own_link;
  ControllerStream* current ABSL_GUARDED_BY(mu) = nullptr;
  absl::Duration heartbeat_interval ABSL_GUARDED_BY(mu);
  std::atomic<bool> cancel_running{false};
  std::atomic<bool> cancel_env{false};

  // Serializes writes on the current stream (the sync API allows one at a
  // time).
  absl::Mutex write_mu;
  ControllerStream* stream ABSL_GUARDED_BY(write_mu) = nullptr;

  std::thread worker;

  // Host probing: used by the worker thread (gates) and the sampler (during
  // runs), never both at once.
  Clock* clock = nullptr;
  std::unique_ptr<NvmlProbe> nvml;
  std::unique_ptr<SysfsProbe> probe;
  std::unique_ptr<StepSampler> sampler;
  // Gates, sampler, runner and result of one step; used by the worker only.
  std::unique_ptr<StepExecutor> executor;
  // Source bundles: the fetcher made here (when options had none) and the
  // cache the checkouts unpack from.
  std::unique_ptr<GrpcBundleFetcher> own_bundle_fetcher;
  std::unique_ptr<BundleCache> bundles;
  // The checkouts of leases with sources; used by the worker only.
  std::unique_ptr<LeaseCheckouts> checkouts;
  // Ended attempts whose checkouts the worker removes (nothing runs there).
  std::vector<int64_t> checkouts_to_remove ABSL_GUARDED_BY(mu);
  std::string status ABSL_GUARDED_BY(mu);  // shown in heartbeats (gate waits)

  bool Write(const v1::AgentMessage& m) {
    absl::MutexLock lock(&write_mu);
    if (stream == nullptr) return false;
    return stream->Write(m);
  }

  void WorkerLoop();
  // Records the environment for `offer` (on the worker thread) and sends the
  // acceptance unless the lease was dropped meanwhile.
  void AcceptLease(const v1::Lease& offer);
  void RunSession();
  void Handle(const v1::ControllerMessage& m);
  // Logs and answers an order OpenOrder refused; nothing of it is run.
  void RefuseOrder(const OpenedOrder& refused);
  void DropLeaseLocked(const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Applies the cut-off rule at the clock's time: called on every tick of the
  // heartbeat (connected) and of the reconnect backoff (disconnected).
  void CheckCutOffLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Sets the status shown in heartbeats.
  void SetStatus(const std::string& s) {
    absl::MutexLock lock(&mu);
    status = s;
  }
};

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(
    const AgentOptions& options, ProcessRunner* runner) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->runner = runner;
  impl->facts = ReadHostFacts();
  if (impl->options.id.empty()) impl->options.id = impl->facts.hostname;
  if (impl->options.workdir.empty())
    impl->options.workdir = DefaultDataDir() + "/agent";
  if (impl->options.lock_file.empty())
    impl->options.lock_file = HostLock::DefaultPath();
  std::error_code ec;
  const bool workdir_existed =
      std::filesystem::exists(impl->options.workdir, ec);
  std::filesystem::create_directories(impl->options.workdir, ec);
  if (!ec && !workdir_existed && !impl->options.job_user.empty()) {
    // Ours alone from the start: the job user must not read the agent's data.
    std::filesystem::permissions(impl->options.workdir,
                                 std::filesystem::perms::owner_all, ec);
  }
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create the agent work directory ", impl->options.workdir, ": ",
        ec.message(), "; choose another with --workdir"));
  }
  ASSIGN_OR_RETURN(impl->lock, HostLock::Acquire(impl->options.lock_file));
  RETURN_IF_ERROR(CheckJobSecurity(impl->options));
  if (impl->options.sweep_leftover_jobs) {
    // Holding the host lock, before accepting work: what a SIGKILLed
    // previous instance left must not run beside our first job.
    SweepLeftoversOfPreviousRuns(impl->options);
  }
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    impl->base_env.emplace_back(*e);
  impl->clock = options.clock != nullptr ? options.clock : RealClock::Get();
  if (!options.controller_public_key_file.empty()) {
    ASSIGN_OR_RETURN(impl->controller_key,
                     VerifyingKey::LoadPem(options.controller_public_key_file));
    spdlog::info("agent {} runs only orders signed by controller key {} ({})",
                 impl->options.id, impl->controller_key->fingerprint(),
                 options.controller_public_key_file);
  } else if (options.link == nullptr &&
             !IsLoopbackAddress(options.controller)) {
    if (!options.insecure) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the controller ", options.controller,
          " is not on this machine, and without --controller-public-key this "
          "agent would run whatever anyone able to reach it sends: give the "
          "controller's signing.pub with --controller-public-key (config: "
          "controller_public_key), or pass --insecure to accept unsigned "
          "orders"));
    }
    spdlog::warn(
        "--insecure: agent {} runs the orders of {} without verifying their "
        "signature; give --controller-public-key to verify them",
        impl->options.id, options.controller);
  }
  if (options.link != nullptr) {
    impl->link = options.link;
  } else {
    impl->own_link = std::make_unique<GrpcControllerLink>(options.controller,
                                                          options.transport);
    impl->link = impl->own_link.get();
  }
  impl->nvml = NvmlProbe::Open(NvmlOptions{options.nvml_library});
  SysfsProbeOptions popts;
  popts.root = options.probe_root;
  impl->probe = std::make_unique<SysfsProbe>(popts, impl->nvml.get());
  // The agent and everything it starts (the job's whole tree) are not
  // competition.
  ProcessExclusions exclusions;
  exclusions.pids = {static_cast<int>(getpid())};
  impl->probe->SetExclusions(exclusions);
  // Competing CPU is judged over the last second (SysfsProbeOptions::
  // min_window): start that window now, not at the first gate.
  impl->probe->Sample(ToSampleTime(impl->clock->Now()));
  impl->sampler = std::make_unique<StepSampler>(impl->probe.get(), impl->clock,
                                                options.sample_interval);
  StepExecutorOptions xopts;
  xopts.agent_id = impl->options.id;
  xopts.workdir = impl->options.workdir;
  xopts.base_env = impl->base_env;
  xopts.gates.cooldown = options.cooldown;
  xopts.gates.max_gpu_temp_c = options.max_gpu_temp_c;
  xopts.gates.max_cpu_temp_c = options.max_cpu_temp_c;
  xopts.gates.max_load = options.max_load;
  xopts.gates.max_competing_cpu = options.max_competing_cpu;
  xopts.gates.max_wait = options.max_wait;
  xopts.contended_cpu_cores = options.contended_cpu_cores;
  impl->executor = std::make_unique<StepExecutor>(
      std::move(xopts), runner, impl->probe.get(), impl->clock,
      impl->sampler.get());
  CheckoutOptions checkout_options;
  checkout_options.root = absl::StrCat(impl->options.workdir, "/source");
  BundleFetcher* fetcher = impl->options.bundle_fetcher;
  if (fetcher == nullptr && impl->options.link == nullptr) {
    absl::StatusOr<std::unique_ptr<GrpcBundleFetcher>> made =
        GrpcBundleFetcher::Create(impl->options.controller,
                                  impl->options.transport);
    if (made.ok()) {
      impl->own_bundle_fetcher = std::move(*made);
      fetcher = impl->own_bundle_fetcher.get();
    } else {
      spdlog::warn("source bundles are off: {}",
                   std::string(made.status().message()));
    }
  }
  if (fetcher != nullptr) {
    BundleCacheOptions bopts;
    bopts.dir = absl::StrCat(impl->options.workdir, "/bundles");
    bopts.max_total_bytes = impl->options.bundle_cache_bytes;
    absl::StatusOr<std::unique_ptr<BundleCache>> cache =
        BundleCache::Open(bopts, fetcher);
    if (cache.ok()) {
      impl->bundles = std::move(*cache);
    } else {
      spdlog::warn("source bundles are off: {}",
                   std::string(cache.status().message()));
    }
  }
  impl->checkouts = std::make_unique<LeaseCheckouts>(
      std::move(checkout_options), impl->options.id, impl->bundles.get());
  // Holding the host lock, before any lease: checkouts a killed agent left.
  impl->checkouts->SweepAll();
  if (impl->nvml->state() == NvmlState::kReady) {
    spdlog::info("NVML: {} GPU(s) through {}", impl->nvml->gpu_count(),
                 impl->nvml->library());
  }
  {
    absl::MutexLock lock(&impl->mu);
    impl->heartbeat_interval = options.heartbeat_interval;
    impl->lease = LeaseState(options.lease_timeout, impl->clock->Now());
  }
  Impl* raw = impl.get();
  impl->worker = std::thread([raw] { raw->WorkerLoop(); });
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() {
  Shutdown();
  impl_->worker.join();
}

const std::string& Agent::id() const { return impl_->options.id; }

void Agent::Shutdown() {
  absl::MutexLock lock(&impl_->mu);
  impl_->stopping = true;
  impl_->cancel_running = true;
  impl_->cancel_env = true;
  if (impl_->current != nullptr) impl_->current->Cancel();
}

absl::Status Agent::Run() {
  Impl& d = *impl_;
  absl::Duration backoff = d.options.initial_backoff;
  for (;;) {
    {
      absl::MutexLock lock(&d.mu);
      if (d.stopping) return d.config_error;
    }
    const absl::Time started = absl::Now();
    d.RunSession();
    if (absl::Now() - started > absl::Seconds(5))
      backoff = d.options.initial_backoff;
    // Wait out the backoff, watching the lease: a job cut off from its
    // controller for longer than the lease timeout is killed (DESIGN.md §6).
    const absl::Time until = absl::Now() + backoff;
    absl::MutexLock lock(&d.mu);
    while (!d.stopping && absl::Now() < until) {
      d.CheckCutOffLocked();
      d.mu.AwaitWithTimeout(absl::Condition(&d.stopping),
                            absl::Milliseconds(50));
    }
    backoff = std::min(backoff * 2, d.options.max_backoff);
  }
}

void Agent::Impl::DropLeaseLocked(const std::string& why) {
  spdlog::info("dropping lease of attempt {}: {}", lease.attempt_id(), why);
  const LeaseState::Dropped dropped = lease.DropLease(clock->Now());
  if (dropped.stop_running) cancel_running = true;
  if (dropped.stop_recording) cancel_env = true;
  std::error_code ec;
  std::filesystem::remove_all(executor->AttemptDir(dropped.attempt_id), ec);
  if (dropped.attempt_id != 0)
    checkouts_to_remove.push_back(dropped.attempt_id);
}

void Agent::Impl::CheckCutOffLocked() {
  if (lease.CutOffTooLong(clock->Now())) {
    DropLeaseLocked(
        "the controller was unreachable for longer than the lease timeout");
  }
}

void Agent::Impl::RunSession() {
  absl::StatusOr<std::unique_ptr<ControllerStream>> opened = link->Connect();
  if (!opened.ok()) {
    spdlog::error("{}", std::string(opened.status().message()));
    absl::MutexLock lock(&mu);
    stopping = true;  // a configuration error does not get better by retrying
    config_error = opened.status();
    return;
  }
  std::unique_ptr<ControllerStream> s = std::move(*opened);
  {
    absl::MutexLock lock(&mu);
    if (stopping) {
      s->Cancel();
      (void)s->Finish();
      return;
    }
    current = s.get();
  }
  {
    absl::MutexLock lock(&write_mu);
    stream = s.get();
  }
  v1::AgentMessage hello_msg;
  std::vector<v1::StepResult> resend;
  {
    absl::MutexLock lock(&mu);
    v1::Hello* h = hello_msg.mutable_hello();
    h->set_agent_id(options.id);
    for (const auto& [k, v] : options.labels) (*h->mutable_labels())[k] = v;
    HostFactsToProto(facts, h->mutable_facts());
    h->set_version("0.1.0");
    h->set_current_attempt_id(lease.attempt_id());
    h->set_current_lease_token(lease.lease_token());
    session_nonce = SecureRandomBytes(kOrderNonceBytes);
    h->set_order_nonce(session_nonce);
    resend = lease.Unacked();
  }
  bool ok = Write(hello_msg);
  for (const v1::StepResult& r : resend) {
    if (!ok) break;
    v1::AgentMessage m;
    *m.mutable_step_result() = r;
    ok = Write(m);
  }

  absl::Mutex hb_mu;
  bool session_over = false;
  std::thread heartbeat([&] {
    int64_t seq = 0;
    for (;;) {
      absl::Duration interval;
      v1::AgentMessage m;
      {
        absl::MutexLock lock(&mu);
        CheckCutOffLocked();
        interval = heartbeat_interval;
        m.mutable_heartbeat()->set_seq(++seq);
        m.mutable_heartbeat()->set_attempt_id(lease.attempt_id());
        m.mutable_heartbeat()->set_busy(lease.busy());
        m.mutable_heartbeat()->set_status(status);
      }
      {
        absl::MutexLock lock(&hb_mu);
        if (hb_mu.AwaitWithTimeout(absl::Condition(&session_over), interval))
          return;
      }
      if (!Write(m)) return;
    }
  });

  v1::ControllerMessage in;
  bool welcomed = false;
  while (ok && s->Read(&in)) {
    if (in.has_welcome() && !welcomed) {
      welcomed = true;
      absl::MutexLock lock(&mu);
      lease.Connected();
      spdlog::info("agent {} connected to controller {}", options.id,
                   options.controller);
    }
    Handle(in);
  }
  {
    absl::MutexLock lock(&hb_mu);
    session_over = true;
  }
  heartbeat.join();
  {
    absl::MutexLock lock(&write_mu);
    stream = nullptr;
  }
  s->Cancel();
  const std::string error = s->Finish();
  absl::MutexLock lock(&mu);
  current = nullptr;
  lease.Disconnected(clock->Now());
  if (!stopping) {
    spdlog::warn("lost the controller at {}: {}; reconnecting",
                 options.controller, error.empty() ? "stream closed" : error);
  }
}

void Agent::Impl::Handle(const v1::ControllerMessage& received) {
  // The one check of every order, before anything looks at what it asks for.
  const OpenedOrder opened = OpenOrder(
      controller_key ? &*controller_key : nullptr, session_nonce, received);
  if (!opened.status.ok()) return RefuseOrder(opened);
  const v1::ControllerMessage& m = opened.message;
  v1::AgentMessage reply;
  {
    absl::MutexLock lock(&mu);
    switch (m.msg_case()) {
      case v1::ControllerMessage::kWelcome:
        if (m.welcome().heartbeat_interval_ms() > 0)
          heartbeat_interval =
              absl::Milliseconds(m.welcome().heartbeat_interval_ms());
        if (m.welcome().lease_timeout_ms() > 0)
          lease.SetLeaseTimeout(
              absl::Milliseconds(m.welcome().lease_timeout_ms()));
        return;
      case v1::ControllerMessage::kLease: {
        const v1::Lease& l = m.lease();
        v1::LeaseReply* r = reply.mutable_lease_reply();
        r->set_attempt_id(l.attempt_id());
        r->set_lease_token(l.lease_token());
        LeaseState::LeaseDecision d = lease.OnLease(l);
        switch (d.kind) {
          case LeaseState::LeaseDecision::kReject:
            r->set_accepted(false);
            r->set_reason(d.reason);
            break;
          case LeaseState::LeaseDecision::kAcceptWithEnv:
            r->set_accepted(true);
            *r->mutable_environment() = std::move(d.environment);
            break;
          case LeaseState::LeaseDecision::kAwaitEnvironment:
            return;  // the acceptance follows once the environment is recorded
          case LeaseState::LeaseDecision::kRecordEnvironment:
            spdlog::info("leased attempt {} of experiment {} ({})",
                         l.attempt_id(), l.experiment_id(),
                         l.experiment_name());
            return;  // the worker answers (WorkerLoop -> AcceptLease)
        }
        break;
      }
      case v1::ControllerMessage::kStep: {
        const v1::StepOrder& o = m.step();
        switch (lease.OnStep(o, reply.mutable_step_result())) {
          case LeaseState::StepDecision::kNotLeased:
            spdlog::warn(
                "ignoring step {} of attempt {}: not under this agent's lease",
                o.step_seq(), o.attempt_id());
            return;
          case LeaseState::StepDecision::kResend:
            break;  // the controller lost it: resend
          case LeaseState::StepDecision::kKnown:
          case LeaseState::StepDecision::kQueued:
            return;
        }
        break;
      }
      case v1::ControllerMessage::kRevoke:
        if (lease.OnRevoke(m.revoke())) cancel_running = true;
        return;
      case v1::ControllerMessage::kAck:
        lease.OnAck(m.ack().attempt_id(), m.ack().step_seq());
        if (!m.ack().accepted()) {
          spdlog::warn("controller rejected result {} of attempt {}: {}",
                       m.ack().step_seq(), m.ack().attempt_id(),
                       m.ack().reason());
        }
        return;
      case v1::ControllerMessage::kRelease:
        if (m.release().attempt_id() != lease.attempt_id()) return;
        DropLeaseLocked(
            absl::StrCat("released by the controller: ", m.release().reason()));
        reply.mutable_released()->set_attempt_id(m.release().attempt_id());
        break;
      case v1::ControllerMessage::kSignedOrder:  // opened above
      case v1::ControllerMessage::MSG_NOT_SET:
        return;
    }
  }
  Write(reply);
}

void Agent::Impl::RefuseOrder(const OpenedOrder& refused) {
  const std::string reason(refused.status.message());
  v1::AgentMessage reply;
  if (refused.message.has_lease()) {
    const v1::Lease& l = refused.message.lease();
    spdlog::error("refused the lease of attempt {} from controller {}: {}",
                  l.attempt_id(), options.controller, reason);
    v1::LeaseReply* r = reply.mutable_lease_reply();
    r->set_attempt_id(l.attempt_id());
    r->set_lease_token(l.lease_token());
    r->set_accepted(false);
    r->set_reason(reason);
    r->set_signature_refused(true);
  } else if (refused.message.has_step()) {
    const v1::StepOrder& o = refused.message.step();
    spdlog::error("refused step {} of attempt {} from controller {}: {}",
                  o.step_seq(), o.attempt_id(), options.controller, reason);
    absl::MutexLock lock(&mu);
    // Answered only under the lease held, so that the controller ends the
    // attempt instead of waiting for the step: as "host not ready" (not the
    // variant's fault, no verdict from this host).
    if (o.attempt_id() == 0 || o.attempt_id() != lease.attempt_id() ||
        o.lease_token() != lease.lease_token())
      return;
    v1::StepResult* r = reply.mutable_step_result();
    r->set_attempt_id(o.attempt_id());
    r->set_lease_token(o.lease_token());
    r->set_step_seq(o.step_seq());
    r->set_host_not_ready(true);
    r->set_error(reason);
  } else {
    spdlog::error("refused an order from controller {}: {}", options.controller,
                  reason);
    return;
  }
  Write(reply);
}

void Agent::Impl::WorkerLoop() {
  for (;;) {
    LeaseState::Work work;
    StepContext context;
    std::vector<int64_t> ended;
    bool stop = false, has_work = false;
    {
      absl::MutexLock lock(&mu);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
        return stopping || lease.HasWork() || !checkouts_to_remove.empty();
      };
      mu.Await(absl::Condition(&ready));
      stop = stopping;
      ended = std::exchange(checkouts_to_remove, {});
      has_work = !stop && lease.HasWork();
      if (has_work) {
        work = lease.TakeWork();
        if (work.lease) {
          cancel_env = false;
        } else {
          cancel_running = false;
          context.attempt_start = lease.StartAttemptIfFirst();
          context.gates = lease.gates();
          context.last_attempt_end = lease.last_attempt_end();
        }
      }
    }
    for (int64_t attempt_id : ended) checkouts->Remove(attempt_id);
    if (stop) {
      checkouts->SweepAll();
      return;
    }
    if (!has_work) continue;
    if (work.lease) {
      AcceptLease(*work.lease);
      continue;
    }
    const v1::StepOrder& order = work.step;
    v1::StepOrder placed = order;  // cwd: in its variant's checkout, if any
    const absl::Status place = checkouts->Place(&placed);
    StepOutcome outcome =
        !place.ok()
            ? UnrunStep(order, place)
            : executor->Execute(placed, context, &cancel_running,
                                [this](const std::string& s) { SetStatus(s); });
    if (outcome.samples) {
      // Best effort: samples describe the run, the result is what must arrive.
      v1::AgentMessage samples;
      *samples.mutable_samples() = std::move(*outcome.samples);
      Write(samples);
    }
    v1::AgentMessage m;
    {
      absl::MutexLock lock(&mu);
      if (!lease.StepFinished(order, outcome.result)) continue;
      *m.mutable_step_result() = std::move(outcome.result);
    }
    Write(m);  // if the stream is down, the result is resent after reconnecting
  }
}

void Agent::Impl::AcceptLease(const v1::Lease& offer) {
  const absl::Time started = absl::Now();
  if (!offer.sources().empty()) {
    SetStatus(absl::StrCat("checking out ", offer.sources_size(),
                           " variant(s) of ", offer.sources(0).repo()));
  }
  // With sources, the commit recorded is that of the baseline's checkout.
  // Without, the experiment's work directory must be on this host (local
  // mode, a shared filesystem): otherwise this host cannot run it.
  std::error_code ec;
  const absl::StatusOr<std::string> checkout =
      offer.sources().empty() && !offer.workdir().empty() &&
              !std::filesystem::is_directory(offer.workdir(), ec)
          ? absl::StatusOr<std::string>(absl::FailedPreconditionError(
                absl::StrCat("cannot run here: agent ", options.id,
                             " has no directory ", offer.workdir(),
                             " (the experiment's work directory); give the "
                             "spec source: {bundle: .} or source: {repo: "
                             "...} so that its code reaches any host")))
          : checkouts->Prepare(offer);
  if (!checkout.ok()) {
    const std::string reason(checkout.status().message());
    spdlog::error("declining attempt {}: {}", offer.attempt_id(), reason);
    const v1::AgentMessage m = DeclinedLease(offer, reason);
    {
      absl::MutexLock lock(&mu);
      status.clear();
      if (lease.attempt_id() != offer.attempt_id() || stopping) return;
      DropLeaseLocked(reason);
    }
    Write(m);
    return;
  }
  EnvironmentOptions eopts;
  eopts.toolchain = options.toolchain;
  eopts.command_timeout = options.toolchain_timeout;
  eopts.workdir = checkout->empty() ? offer.workdir() : *checkout;
  eopts.fallback_cwd = options.workdir;
  eopts.env = base_env;
  eopts.scratch_path = absl::StrCat(options.workdir, "/toolchain.stderr");
  eopts.cancel = &cancel_env;
  SetStatus("recording the host environment (toolchain versions, commit)");
  const HostSample sample = probe->Sample(absl::ToChronoTime(clock->Now()));
  const HostEnvironment env = CollectAttemptEnvironment(*runner, sample, eopts);
  v1::AgentMessage m;
  v1::LeaseReply* r = m.mutable_lease_reply();
  r->set_attempt_id(offer.attempt_id());
  r->set_lease_token(offer.lease_token());
  r->set_accepted(true);
  v1::AttemptEnvironment* e = r->mutable_environment();
  *e = EnvironmentToProto(env);
  {
    absl::MutexLock lock(&mu);
    status.clear();
    // Dropped (released, or the agent is stopping) while recording: no reply.
    if (!lease.EnvironmentRecorded(offer, *e) || stopping) return;
  }
  spdlog::info(
      "attempt {}: recorded its environment in {} ({} toolchain command(s), "
      "commit {})",
      offer.attempt_id(), absl::FormatDuration(absl::Now() - started),
      env.toolchain.size(),
      env.commit.empty()
          ? "none"
          : absl::StrCat(env.commit, env.dirty ? " (dirty)" : ""));
  Write(m);
}

}  // namespace benchfleet
