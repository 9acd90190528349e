#include "agent/service/agent.h"

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/lease/host_lock.h"
#include "agent/probe/host_facts.h"
#include "agent/probe/host_summary.h"
#include "agent/probe/nvml_probe.h"
#include "agent/probe/probe_json.h"
#include "agent/probe/sysfs_probe.h"
#include "agent/service/host_gates.h"
#include "agent/service/order_fields.h"
#include "benchfleet/v1/agent.grpc.pb.h"
#include "common/config_file.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace benchfleet {
namespace {

using Key = std::pair<int64_t, int64_t>;  // (attempt_id, step_seq)
using Stream =
    grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>;

constexpr int64_t kStderrTailBytes = 2048;

std::string ReadTail(const std::string& path, int64_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const std::streamoff size = in.tellg();
  const std::streamoff start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(start);
  std::string out(static_cast<size_t>(size - start), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

}  // namespace

class Agent::Impl {
 public:
  AgentOptions options;
  ProcessRunner* runner = nullptr;
  std::unique_ptr<HostLock> lock;
  HostFacts facts;
  std::vector<std::string> base_env;

  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  int64_t lease_attempt ABSL_GUARDED_BY(mu) = 0;
  std::string lease_token ABSL_GUARDED_BY(mu);
  std::deque<v1::StepOrder> pending ABSL_GUARDED_BY(mu);
  Key running ABSL_GUARDED_BY(mu) = {0, 0};
  // The running step was revoked by the controller: stop it, send nothing.
  bool running_revoked ABSL_GUARDED_BY(mu) = false;
  std::set<Key> done ABSL_GUARDED_BY(mu);
  std::map<Key, v1::StepResult> unacked ABSL_GUARDED_BY(mu);
  grpc::ClientContext* context ABSL_GUARDED_BY(mu) = nullptr;
  absl::Duration heartbeat_interval ABSL_GUARDED_BY(mu);
  absl::Duration lease_timeout ABSL_GUARDED_BY(mu);
  absl::Time disconnected_since ABSL_GUARDED_BY(mu) = absl::Now();
  bool connected ABSL_GUARDED_BY(mu) = false;
  std::atomic<bool> cancel_running{false};
  // A lease accepted but not yet answered: the worker records the attempt's
  // environment first, then sends the acceptance with it.
  std::optional<v1::Lease> lease_to_accept ABSL_GUARDED_BY(mu);
  int64_t recording_env_for ABSL_GUARDED_BY(mu) = 0;  // attempt id, 0 = none
  std::optional<v1::AttemptEnvironment> lease_env ABSL_GUARDED_BY(mu);
  std::atomic<bool> cancel_env{false};

  // Serializes writes on the current stream (the sync API allows one at a
  // time).
  absl::Mutex write_mu;
  Stream* stream ABSL_GUARDED_BY(write_mu) = nullptr;

  std::thread worker;

  // Host probing: used by the worker thread (gates) and the sampler (during
  // runs), never both at once.
  Clock* clock = nullptr;
  std::unique_ptr<NvmlProbe> nvml;
  std::unique_ptr<SysfsProbe> probe;
  std::unique_ptr<StepSampler> sampler;
  v1::GateSpec lease_gates ABSL_GUARDED_BY(mu);
  bool lease_started ABSL_GUARDED_BY(mu) = false;
  std::string status
      ABSL_GUARDED_BY(mu);  // shown in heartbeats (gate waits)  // the lease's
                            // gates were passed once
  absl::Time last_attempt_end ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  // When the last step's process ended: the load gate discounts the load
  // average while our own runs may still be in it (GateOptions).
  absl::Time last_job_end ABSL_GUARDED_BY(mu) = absl::InfinitePast();

  GateOptions Gates(const v1::GateSpec& spec, bool attempt_start) const;

  bool Write(const v1::AgentMessage& m) {
    absl::MutexLock lock(&write_mu);
    if (stream == nullptr) return false;
    return stream->Write(m);
  }

  void WorkerLoop();
  // Records the environment for `lease` (on the worker thread) and sends the
  // acceptance unless the lease was dropped meanwhile.
  void AcceptLease(const v1::Lease& lease);
  void RunSession();
  void Handle(const v1::ControllerMessage& m);
  void DropLeaseLocked(const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  v1::StepResult Execute(const v1::StepOrder& order);
  void SendSamples(const v1::StepOrder& o,
                   const std::vector<HostSample>& samples);
  std::string AttemptDir(int64_t attempt_id) const {
    return absl::StrCat(options.workdir, "/attempts/", attempt_id);
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
  std::filesystem::create_directories(impl->options.workdir, ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create the agent work directory ", impl->options.workdir, ": ",
        ec.message(), "; choose another with --workdir"));
  }
  ASSIGN_OR_RETURN(impl->lock, HostLock::Acquire(impl->options.lock_file));
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    impl->base_env.emplace_back(*e);
  impl->clock = options.clock != nullptr ? options.clock : RealClock::Get();
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
  if (impl->nvml->state() == NvmlState::kReady) {
    spdlog::info("NVML: {} GPU(s) through {}", impl->nvml->gpu_count(),
                 impl->nvml->library());
  }
  {
    absl::MutexLock lock(&impl->mu);
    impl->heartbeat_interval = options.heartbeat_interval;
    impl->lease_timeout = options.lease_timeout;
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
  if (impl_->context != nullptr) impl_->context->TryCancel();
}

absl::Status Agent::Run() {
  Impl& d = *impl_;
  absl::Duration backoff = d.options.initial_backoff;
  for (;;) {
    {
      absl::MutexLock lock(&d.mu);
      if (d.stopping) return absl::OkStatus();
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
      if (d.lease_attempt != 0 &&
          absl::Now() - d.disconnected_since > d.lease_timeout) {
        d.DropLeaseLocked(
            "the controller was unreachable for longer than the lease timeout");
      }
      d.mu.AwaitWithTimeout(absl::Condition(&d.stopping),
                            absl::Milliseconds(50));
    }
    backoff = std::min(backoff * 2, d.options.max_backoff);
  }
}

void Agent::Impl::DropLeaseLocked(const std::string& why) {
  spdlog::info("dropping lease of attempt {}: {}", lease_attempt, why);
  if (running.first == lease_attempt) cancel_running = true;
  if (recording_env_for == lease_attempt) cancel_env = true;
  lease_to_accept.reset();
  lease_env.reset();
  pending.clear();
  for (auto it = unacked.begin(); it != unacked.end();) {
    it = it->first.first == lease_attempt ? unacked.erase(it) : std::next(it);
  }
  for (auto it = done.begin(); it != done.end();) {
    it = it->first == lease_attempt ? done.erase(it) : std::next(it);
  }
  std::error_code ec;
  std::filesystem::remove_all(AttemptDir(lease_attempt), ec);
  lease_attempt = 0;
  lease_token.clear();
  lease_started = false;
  last_attempt_end = clock->Now();
}

void Agent::Impl::RunSession() {
  auto creds = MakeChannelCredentials(options.controller, options.transport);
  if (!creds.ok()) {
    spdlog::error("{}", std::string(creds.status().message()));
    absl::MutexLock lock(&mu);
    stopping = true;  // a configuration error does not get better by retrying
    return;
  }
  auto channel = grpc::CreateCustomChannel(options.controller, *creds,
                                           MakeChannelArguments());
  auto stub = v1::AgentService::NewStub(channel);
  grpc::ClientContext ctx;
  {
    absl::MutexLock lock(&mu);
    if (stopping) return;
    context = &ctx;
  }
  std::unique_ptr<Stream> s = stub->Connect(&ctx);
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
    h->mutable_facts()->set_hostname(facts.hostname);
    h->mutable_facts()->set_cpu_model(facts.cpu_model);
    h->mutable_facts()->set_cpu_cores(facts.cpu_cores);
    h->mutable_facts()->set_memory_bytes(facts.memory_bytes);
    h->mutable_facts()->set_os(facts.os);
    h->mutable_facts()->set_kernel(facts.kernel);
    h->set_version("0.1.0");
    h->set_current_attempt_id(lease_attempt);
    h->set_current_lease_token(lease_token);
    for (const auto& [key, r] : unacked) resend.push_back(r);
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
        interval = heartbeat_interval;
        m.mutable_heartbeat()->set_seq(++seq);
        m.mutable_heartbeat()->set_attempt_id(lease_attempt);
        m.mutable_heartbeat()->set_busy(running.first != 0);
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
      connected = true;
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
  ctx.TryCancel();
  grpc::Status status = s->Finish();
  absl::MutexLock lock(&mu);
  context = nullptr;
  if (connected || welcomed) disconnected_since = absl::Now();
  connected = false;
  if (!stopping) {
    spdlog::warn("lost the controller at {}: {}; reconnecting",
                 options.controller,
                 status.error_message().empty() ? "stream closed"
                                                : status.error_message());
  }
}

void Agent::Impl::Handle(const v1::ControllerMessage& m) {
  v1::AgentMessage reply;
  {
    absl::MutexLock lock(&mu);
    switch (m.msg_case()) {
      case v1::ControllerMessage::kWelcome:
        if (m.welcome().heartbeat_interval_ms() > 0)
          heartbeat_interval =
              absl::Milliseconds(m.welcome().heartbeat_interval_ms());
        if (m.welcome().lease_timeout_ms() > 0)
          lease_timeout = absl::Milliseconds(m.welcome().lease_timeout_ms());
        return;
      case v1::ControllerMessage::kLease: {
        const auto& l = m.lease();
        v1::LeaseReply* r = reply.mutable_lease_reply();
        r->set_attempt_id(l.attempt_id());
        r->set_lease_token(l.lease_token());
        if (lease_attempt != 0 && lease_attempt != l.attempt_id()) {
          r->set_accepted(false);
          r->set_reason(
              absl::StrCat("this agent already holds the lease of attempt ",
                           lease_attempt, "; one lease at a time"));
        } else {
          const bool repeated =
              lease_attempt == l.attempt_id() && lease_token == l.lease_token();
          if (lease_attempt != l.attempt_id()) lease_started = false;
          lease_attempt = l.attempt_id();
          lease_token = l.lease_token();
          lease_gates = l.gates();
          if (repeated && lease_env) {
            r->set_accepted(true);
            *r->mutable_environment() = *lease_env;
            break;
          }
          if (repeated &&
              (lease_to_accept || recording_env_for == l.attempt_id()))
            return;  // the acceptance follows once the environment is recorded
          lease_env.reset();
          lease_to_accept = l;
          spdlog::info("leased attempt {} of experiment {} ({})",
                       l.attempt_id(), l.experiment_id(), l.experiment_name());
          return;  // the worker answers (WorkerLoop -> AcceptLease)
        }
        break;
      }
      case v1::ControllerMessage::kStep: {
        const v1::StepOrder& o = m.step();
        const Key key{o.attempt_id(), o.step_seq()};
        if (o.attempt_id() != lease_attempt || o.lease_token() != lease_token) {
          spdlog::warn(
              "ignoring step {} of attempt {}: not under this agent's lease",
              o.step_seq(), o.attempt_id());
          return;
        }
        if (done.contains(key)) {
          auto it = unacked.find(key);
          if (it == unacked.end()) return;
          *reply.mutable_step_result() =
              it->second;  // the controller lost it: resend
          break;
        }
        if (running == key) return;
        for (const v1::StepOrder& p : pending)
          if (p.step_seq() == o.step_seq() && p.attempt_id() == o.attempt_id())
            return;
        pending.push_back(o);
        return;
      }
      case v1::ControllerMessage::kRevoke: {
        const v1::Revoke& r = m.revoke();
        if (r.attempt_id() != lease_attempt || r.lease_token() != lease_token)
          return;
        const std::set<int64_t> seqs(r.step_seq().begin(), r.step_seq().end());
        std::erase_if(pending, [&](const v1::StepOrder& o) {
          return o.attempt_id() == r.attempt_id() &&
                 seqs.contains(o.step_seq());
        });
        if (running.first == r.attempt_id() && seqs.contains(running.second)) {
          running_revoked = true;
          cancel_running = true;
        }
        return;
      }
      case v1::ControllerMessage::kAck:
        unacked.erase({m.ack().attempt_id(), m.ack().step_seq()});
        if (!m.ack().accepted()) {
          spdlog::warn("controller rejected result {} of attempt {}: {}",
                       m.ack().step_seq(), m.ack().attempt_id(),
                       m.ack().reason());
        }
        return;
      case v1::ControllerMessage::kRelease:
        if (m.release().attempt_id() != lease_attempt) return;
        DropLeaseLocked(
            absl::StrCat("released by the controller: ", m.release().reason()));
        reply.mutable_released()->set_attempt_id(m.release().attempt_id());
        break;
      case v1::ControllerMessage::MSG_NOT_SET:
        return;
    }
  }
  Write(reply);
}

void Agent::Impl::WorkerLoop() {
  for (;;) {
    v1::StepOrder order;
    std::optional<v1::Lease> lease;
    {
      absl::MutexLock lock(&mu);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
        return stopping || lease_to_accept.has_value() || !pending.empty();
      };
      mu.Await(absl::Condition(&ready));
      if (stopping) return;
      if (lease_to_accept) {
        lease = std::move(*lease_to_accept);
        lease_to_accept.reset();
        recording_env_for = lease->attempt_id();
        cancel_env = false;
      } else {
        order = std::move(pending.front());
        pending.pop_front();
        running = {order.attempt_id(), order.step_seq()};
        running_revoked = false;
        cancel_running = false;
      }
    }
    if (lease) {
      AcceptLease(*lease);
      continue;
    }
    v1::StepResult result = Execute(order);
    v1::AgentMessage m;
    {
      absl::MutexLock lock(&mu);
      const Key key{order.attempt_id(), order.step_seq()};
      running = {0, 0};
      // A result for a lease dropped meanwhile is not sent: it would be stale;
      // nor is one for a step the controller revoked while it ran.
      if (lease_attempt != order.attempt_id() ||
          lease_token != order.lease_token() || running_revoked)
        continue;
      if (result.host_not_ready()) {
        // The attempt ends here: the orders queued behind this one would only
        // wait for the same gates again.
        std::erase_if(pending, [&](const v1::StepOrder& o) {
          return o.attempt_id() == order.attempt_id();
        });
      }
      done.insert(key);
      unacked[key] = result;
      *m.mutable_step_result() = result;
    }
    Write(m);  // if the stream is down, the result is resent after reconnecting
  }
}

void Agent::Impl::AcceptLease(const v1::Lease& lease) {
  const absl::Time started = absl::Now();
  EnvironmentOptions eopts;
  eopts.toolchain = options.toolchain;
  eopts.command_timeout = options.toolchain_timeout;
  eopts.workdir = lease.workdir();
  eopts.fallback_cwd = options.workdir;
  eopts.env = base_env;
  eopts.scratch_path = absl::StrCat(options.workdir, "/toolchain.stderr");
  eopts.cancel = &cancel_env;
  {
    absl::MutexLock lock(&mu);
    status = "recording the host environment (toolchain versions, commit)";
  }
  const HostSample sample = probe->Sample(absl::ToChronoTime(clock->Now()));
  const HostEnvironment env = CollectAttemptEnvironment(*runner, sample, eopts);
  v1::AgentMessage m;
  v1::LeaseReply* r = m.mutable_lease_reply();
  r->set_attempt_id(lease.attempt_id());
  r->set_lease_token(lease.lease_token());
  r->set_accepted(true);
  v1::AttemptEnvironment* e = r->mutable_environment();
  e->set_governor(env.governor);
  e->set_turbo(env.turbo);
  for (const GpuIdentity& g : env.gpus) {
    v1::GpuInfo* gpu = e->add_gpus();
    gpu->set_name(g.name);
    gpu->set_uuid(g.uuid);
    gpu->set_memory_total_bytes(g.memory_total_bytes);
  }
  for (const auto& [name, version] : env.toolchain)
    (*e->mutable_toolchain())[name] = version;
  e->set_commit(env.commit);
  e->set_dirty(env.dirty);
  {
    absl::MutexLock lock(&mu);
    recording_env_for = 0;
    status.clear();
    // Dropped (released, or the agent is stopping) while recording: no reply.
    if (stopping || lease_attempt != lease.attempt_id() ||
        lease_token != lease.lease_token())
      return;
    lease_env = *e;
  }
  spdlog::info(
      "attempt {}: recorded its environment in {} ({} toolchain command(s), "
      "commit {})",
      lease.attempt_id(), absl::FormatDuration(absl::Now() - started),
      env.toolchain.size(),
      env.commit.empty()
          ? "none"
          : absl::StrCat(env.commit, env.dirty ? " (dirty)" : ""));
  Write(m);
}

v1::StepResult Agent::Impl::Execute(const v1::StepOrder& o) {
  v1::StepResult r;
  r.set_attempt_id(o.attempt_id());
  r.set_lease_token(o.lease_token());
  r.set_step_seq(o.step_seq());

  RunRequest req;
  req.argv.assign(o.argv().begin(), o.argv().end());
  req.cwd = o.cwd();
  std::map<std::string, std::string> env;
  for (const std::string& e : base_env) {
    auto eq = e.find('=');
    if (eq != std::string::npos) env[e.substr(0, eq)] = e.substr(eq + 1);
  }
  // Which agent runs the job (e.g. for a job that keeps per-host caches).
  env["BENCHFLEET_AGENT_ID"] = options.id;
  for (const auto& [k, v] : o.env()) env[k] = v;
  for (const auto& [k, v] : env) req.env.push_back(absl::StrCat(k, "=", v));
  if (const absl::Duration timeout = StepTimeout(o);
      timeout != absl::InfiniteDuration()) {
    req.timeout = timeout;
  }
  const std::string dir = AttemptDir(o.attempt_id());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  req.stdout_path = absl::StrCat(dir, "/", o.step_seq(), ".stdout");
  req.stderr_path = absl::StrCat(dir, "/", o.step_seq(), ".stderr");
  for (int cpu : o.cpus()) req.cpus.push_back(cpu);
  req.cancel = &cancel_running;

  // Gates: before the attempt's first step (cooldown, temperatures, load,
  // competing processes) and before every run (temperatures, competing
  // processes; the job itself keeps the load average up, so load is an
  // attempt-level gate only).
  const bool is_run =
      o.kind() == v1::STEP_KIND_MEASURE || o.kind() == v1::STEP_KIND_WARMUP;
  bool attempt_start = false;
  v1::GateSpec spec_gates;
  absl::Time cooldown_until;
  absl::Time own_work_ended_at;
  {
    absl::MutexLock lock(&mu);
    own_work_ended_at = last_job_end;
    attempt_start = !lease_started;
    lease_started = true;
    spec_gates = lease_gates;
    cooldown_until = last_attempt_end == absl::InfinitePast()
                         ? absl::InfinitePast()
                         : last_attempt_end + Gates(spec_gates, true).cooldown;
  }
  if (attempt_start || is_run) {
    GateOptions gate_options = Gates(spec_gates, attempt_start);
    gate_options.own_work_ended_at = own_work_ended_at;
    GateOutcome gate = WaitForGates(
        *probe, *clock, gate_options,
        attempt_start ? cooldown_until : absl::InfinitePast(), &cancel_running,
        [this](const std::string& blockers) {
          absl::MutexLock lock(&mu);
          status = absl::StrCat("waiting for the host: ", blockers);
        });
    {
      absl::MutexLock lock(&mu);
      status.clear();
    }
    r.set_gate_wait_us(absl::ToInt64Microseconds(gate.waited));
    r.set_gate_wait_ms(absl::ToInt64Milliseconds(gate.waited));
    r.set_gate_blocked_by(gate.waited_for);
    if (!gate.passed) {
      r.set_error(gate.reason);
      r.set_exit_code(-1);
      // Not met within max_wait (a cancelled wait is never reported: the
      // lease or the step is gone).
      r.set_host_not_ready(!gate.cancelled);
      return r;
    }
  }

  if (is_run) sampler->Begin();
  absl::StatusOr<RunResult> run = runner->Run(req);
  {
    absl::MutexLock lock(&mu);
    last_job_end = clock->Now();
  }
  if (is_run) {
    std::vector<HostSample> samples = sampler->End();
    HostSummaryOptions sopts;
    sopts.cpus.assign(o.cpus().begin(), o.cpus().end());
    sopts.contended_process_cpu_cores = options.contended_cpu_cores;
    const HostStateSummary summary = SummarizeHostSamples(samples, sopts);
    v1::HostSummary* h = r.mutable_host();
    h->set_samples(summary.samples);
    h->set_max_cpu_temp_c(summary.max_cpu_temp_c.value_or(0));
    h->set_max_gpu_temp_c(summary.max_gpu_temp_c.value_or(0));
    h->set_min_freq_mhz(summary.min_freq_mhz.value_or(0));
    h->set_mean_cpu_util(summary.mean_cpu_util.value_or(0));
    h->set_throttle_delta(summary.throttle_count_delta.value_or(0));
    h->set_max_competing_cpu(summary.max_competing_cpu_cores.value_or(0));
    if (summary.top_competitor) {
      h->set_top_competitor(absl::StrCat(summary.top_competitor->comm, " (pid ",
                                         summary.top_competitor->pid, ")"));
    }
    for (const std::string& f : summary.flags) r.add_host_flags(f);
    SendSamples(o, samples);
  }
  if (!run.ok()) {
    r.set_error(std::string(run.status().message()));
    r.set_exit_code(-1);
    return r;
  }
  r.set_wall_ns(run->wall_ns);
  r.set_user_ns(run->user_ns);
  r.set_sys_ns(run->sys_ns);
  r.set_max_rss_bytes(run->max_rss_bytes);
  r.set_exit_code(run->exit_code);
  r.set_term_signal(run->term_signal);
  r.set_timed_out(run->timed_out);
  if (run->exit_code != 0 || run->term_signal != 0) {
    r.set_stderr_tail(ReadTail(req.stderr_path, kStderrTailBytes));
  }
  if (!o.compare_file().empty()) {
    absl::StatusOr<std::string> digest =
        Sha256File(absl::StrCat(o.cwd(), "/", o.compare_file()));
    if (digest.ok()) {
      r.set_output_digest(*digest);
    } else if (run->exit_code == 0 && !run->timed_out) {
      r.set_error(absl::StrCat(
          "the compared file ", o.compare_file(),
          " was not found after the run: ", digest.status().message()));
    }
  } else {
    r.set_output_digest(run->stdout_sha256);
  }
  if (o.metrics_size() > 0) {
    std::vector<std::pair<std::string, std::string>> patterns;
    for (const auto& p : o.metrics())
      patterns.emplace_back(p.name(), p.regex());
    for (const auto& [k, v] : ExtractMetrics(run->stdout_head, patterns))
      (*r.mutable_metrics())[k] = v;
  }
  // Captures of successful steps are not needed once measured.
  if (run->exit_code == 0 && !run->timed_out) {
    std::filesystem::remove(req.stdout_path, ec);
    std::filesystem::remove(req.stderr_path, ec);
  }
  return r;
}

GateOptions Agent::Impl::Gates(const v1::GateSpec& spec,
                               bool attempt_start) const {
  // The stricter of the host's own limit and the spec's wins; 0 means "not
  // set".
  auto stricter = [](double host, double spec_value) {
    if (host <= 0) return spec_value;
    if (spec_value <= 0) return host;
    return std::min(host, spec_value);
  };
  GateOptions g;
  g.cooldown = std::max(options.cooldown, GateCooldown(spec));
  g.max_gpu_temp_c = stricter(options.max_gpu_temp_c, spec.max_gpu_temp_c());
  g.max_cpu_temp_c = stricter(options.max_cpu_temp_c, spec.max_cpu_temp_c());
  g.max_load = attempt_start ? stricter(options.max_load, spec.max_load()) : 0;
  g.max_competing_cpu =
      stricter(options.max_competing_cpu, spec.max_competing_cpu());
  g.max_wait = GateMaxWait(spec).value_or(options.max_wait);
  return g;
}

void Agent::Impl::SendSamples(const v1::StepOrder& o,
                              const std::vector<HostSample>& samples) {
  if (samples.empty()) return;
  v1::AgentMessage m;
  v1::SampleBatch* b = m.mutable_samples();
  b->set_attempt_id(o.attempt_id());
  b->set_lease_token(o.lease_token());
  b->set_step_seq(o.step_seq());
  for (const HostSample& s : samples) {
    v1::HostSampleRow* row = b->add_samples();
    row->set_taken_at_unix_us(
        std::chrono::duration_cast<std::chrono::microseconds>(
            s.taken_at.time_since_epoch())
            .count());
    row->set_cpu_util(s.cpu_util.value_or(0));
    row->set_load1(s.load1.value_or(0));
    row->set_mem_available_bytes(
        static_cast<double>(s.mem_available_bytes.value_or(0)));
    row->set_min_freq_mhz(MinCoreFreqMhz(s).value_or(0));
    row->set_max_cpu_temp_c(MaxCpuTempC(s).value_or(0));
    row->set_max_gpu_temp_c(MaxGpuTempC(s).value_or(0));
    row->set_gpu_util(MaxGpuUtilPercent(s).value_or(0) / 100.0);
    row->set_throttle_events(s.throttle_count.value_or(0));
    row->set_competing_cpu(s.other_cpu_cores.value_or(0));
    if (!s.gpus.empty() || !s.top_processes.empty()) {
      row->set_detail_json(HostSampleToJson(s).dump());
    }
  }
  // Best effort: samples describe the run, the result is what must arrive.
  Write(m);
}

}  // namespace benchfleet
