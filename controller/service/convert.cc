#include "controller/service/convert.h"

#include <algorithm>

#include "absl/time/time.h"

namespace benchfleet {

v1::StepOrder ToProto(int64_t attempt_id, const std::string& token,
                      const PlannedStep& step) {
  v1::StepOrder o;
  o.set_attempt_id(attempt_id);
  o.set_lease_token(token);
  o.set_step_seq(step.seq);
  switch (step.kind) {
    case StepKind::kSetup:
      o.set_kind(v1::STEP_KIND_SETUP);
      break;
    case StepKind::kCorrectness:
      o.set_kind(v1::STEP_KIND_CORRECTNESS);
      break;
    case StepKind::kWarmup:
      o.set_kind(v1::STEP_KIND_WARMUP);
      break;
    case StepKind::kMeasure:
      o.set_kind(v1::STEP_KIND_MEASURE);
      break;
  }
  o.set_variant(step.variant);
  o.set_input(step.input);
  for (const std::string& a : step.argv) o.add_argv(a);
  o.set_cwd(step.cwd);
  for (const auto& [k, v] : step.env) (*o.mutable_env())[k] = v;
  if (step.timeout != absl::InfiniteDuration()) {
    // Microseconds, rounded up so that a bound is never shortened; the
    // whole-millisecond field (also rounded up) is for agents that predate it.
    o.set_timeout_us(
        std::max<int64_t>(1, absl::ToInt64Microseconds(absl::Ceil(
                                 step.timeout, absl::Microseconds(1)))));
    o.set_timeout_ms(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(
                                 step.timeout, absl::Milliseconds(1)))));
  }
  o.set_compare_file(step.compare_file);
  for (int cpu : step.cpus) o.add_cpus(cpu);
  for (const auto& [name, regex] : step.metrics) {
    v1::MetricPattern* m = o.add_metrics();
    m->set_name(name);
    m->set_regex(regex);
  }
  return o;
}

StepOutcome FromProto(const v1::StepResult& r) {
  StepOutcome o;
  o.seq = r.step_seq();
  o.wall_ns = r.wall_ns();
  o.user_ns = r.user_ns();
  o.sys_ns = r.sys_ns();
  o.max_rss_bytes = r.max_rss_bytes();
  o.exit_code = r.exit_code();
  o.term_signal = r.term_signal();
  o.timed_out = r.timed_out();
  o.output_digest = r.output_digest();
  for (const auto& [k, v] : r.metrics()) o.metrics[k] = v;
  o.error = r.error();
  o.stderr_tail = r.stderr_tail();
  o.host_flags.assign(r.host_flags().begin(), r.host_flags().end());
  // Through absl::Duration, which saturates: an agent's out-of-range value
  // must not overflow (found by fuzz/agent_message_fuzzer.cc).
  o.gate_wait_ns = absl::ToInt64Nanoseconds(
      r.gate_wait_us() > 0 ? absl::Microseconds(r.gate_wait_us())
                           : absl::Milliseconds(r.gate_wait_ms()));
  o.gate_blocked_by = r.gate_blocked_by();
  o.host_not_ready = r.host_not_ready();
  if (r.has_host()) {
    const v1::HostSummary& h = r.host();
    StepHostSummary& host = o.host.emplace();
    host.samples = h.samples();
    host.max_cpu_temp_c = h.max_cpu_temp_c();
    host.max_gpu_temp_c = h.max_gpu_temp_c();
    host.min_freq_mhz = h.min_freq_mhz();
    host.mean_cpu_util = h.mean_cpu_util();
    host.throttle_delta = h.throttle_delta();
    host.max_competing_cpu = h.max_competing_cpu();
    host.top_competitor = h.top_competitor();
  }
  return o;
}

AgentHello FromProto(const v1::Hello& h) {
  AgentHello hello;
  hello.agent_id = h.agent_id();
  for (const auto& [k, v] : h.labels()) hello.labels[k] = v;
  hello.facts.hostname = h.facts().hostname();
  hello.facts.cpu_model = h.facts().cpu_model();
  hello.facts.cpu_cores = h.facts().cpu_cores();
  hello.facts.memory_bytes = h.facts().memory_bytes();
  hello.facts.os = h.facts().os();
  hello.facts.kernel = h.facts().kernel();
  hello.version = h.version();
  hello.current_attempt_id = h.current_attempt_id();
  hello.current_lease_token = h.current_lease_token();
  return hello;
}

v1::Experiment ToProto(const ExperimentView& view) {
  const ExperimentRecord& r = view.record;
  v1::Experiment e;
  e.set_id(r.id);
  e.set_number(r.number);
  e.set_name(r.name);
  e.set_campaign(r.campaign);
  e.set_state(ExperimentStateName(r.state));
  e.set_state_reason(r.state_reason);
  e.set_created_at_unix_ms(absl::ToUnixMillis(r.created_at));
  e.set_updated_at_unix_ms(absl::ToUnixMillis(r.updated_at));
  e.set_attempts(r.attempts);
  v1::Progress* p = e.mutable_progress();
  p->set_runs_done(view.progress.steps_done);
  p->set_runs_total(view.progress.steps_total);
  p->set_current_step(view.progress.current);
  p->set_agent_id(view.agent_id);
  p->set_hostname(view.hostname);
  p->set_attempt_id(view.attempt_id);
  e.set_report_text(r.report_text);
  e.set_report_json(r.report_json);
  e.set_bundle_digest(r.bundle_digest);
  return e;
}

v1::Agent ToProto(const AgentRecord& a, bool connected,
                  int64_t current_experiment_id) {
  v1::Agent out;
  out.set_id(a.id);
  out.set_hostname(a.hostname);
  for (const auto& [k, v] : a.labels) (*out.mutable_labels())[k] = v;
  out.set_state(connected ? AgentStateName(a.state) : "offline");
  out.set_cordoned(a.cordoned);
  out.set_last_seen_unix_ms(absl::ToUnixMillis(a.last_seen));
  out.set_facts_json(a.facts_json);
  out.set_connected(connected);
  out.set_current_experiment_id(current_experiment_id);
  return out;
}

v1::GateSpec ToProto(const GateSpec& g) {
  v1::GateSpec out;
  out.set_cooldown_us(absl::ToInt64Microseconds(g.cooldown));
  out.set_cooldown_ms(absl::ToInt64Milliseconds(g.cooldown));
  out.set_max_gpu_temp_c(g.max_gpu_temp_c);
  out.set_max_cpu_temp_c(g.max_cpu_temp_c);
  out.set_max_load(g.max_load);
  out.set_max_wait_us(absl::ToInt64Microseconds(g.max_wait));
  out.set_max_wait_ms(absl::ToInt64Milliseconds(g.max_wait));
  out.set_max_competing_cpu(g.max_competing_cpu);
  return out;
}

std::vector<SampleRecord> FromProto(const v1::SampleBatch& b) {
  std::vector<SampleRecord> out;
  out.reserve(b.samples_size());
  for (const v1::HostSampleRow& row : b.samples()) {
    SampleRecord r;
    r.attempt_id = b.attempt_id();
    r.step_seq = b.step_seq();
    r.taken_at = absl::FromUnixMicros(row.taken_at_unix_us());
    r.cpu_util = row.cpu_util();
    r.load1 = row.load1();
    r.mem_available_bytes = row.mem_available_bytes();
    r.min_freq_mhz = row.min_freq_mhz();
    r.max_cpu_temp_c = row.max_cpu_temp_c();
    r.max_gpu_temp_c = row.max_gpu_temp_c();
    r.gpu_util = row.gpu_util();
    r.throttle_events = row.throttle_events();
    r.competing_cpu = row.competing_cpu();
    r.detail_json = row.detail_json();
    out.push_back(std::move(r));
  }
  return out;
}

HostEnvironment FromProto(const v1::AttemptEnvironment& e) {
  HostEnvironment env;
  env.governor = e.governor();
  env.turbo = e.turbo();
  for (const v1::GpuInfo& g : e.gpus())
    env.gpus.push_back(GpuIdentity{g.name(), g.uuid(), g.memory_total_bytes()});
  for (const auto& [name, version] : e.toolchain())
    env.toolchain[name] = version;
  env.commit = e.commit();
  env.dirty = e.dirty();
  return env;
}

v1::Attempt ToProto(const AttemptRecord& a) {
  v1::Attempt out;
  out.set_id(a.id);
  out.set_agent_id(a.agent_id);
  out.set_state(AttemptStateName(a.state));
  out.set_reason(a.reason);
  out.set_started_at_unix_ms(absl::ToUnixMillis(a.started_at));
  out.set_ended_at_unix_ms(a.state == AttemptState::kRunning ||
                                   a.ended_at == absl::UnixEpoch()
                               ? 0
                               : absl::ToUnixMillis(a.ended_at));
  out.set_environment_json(a.environment_json);
  return out;
}

v1::HistoryRow ToProto(const HistoryRow& r) {
  v1::HistoryRow out;
  out.set_time_unix_ms(absl::ToUnixMillis(r.time));
  out.set_experiment_id(r.experiment_id);
  out.set_experiment_number(r.experiment_number);
  out.set_experiment(r.experiment_name);
  out.set_campaign(r.campaign);
  out.set_input(r.input);
  out.set_variant(r.variant);
  out.set_baseline(r.baseline);
  out.set_median(r.median);
  out.set_n(r.n);
  out.set_cv(r.cv);
  out.set_change(r.change);
  out.set_verdict(r.verdict);
  out.set_input_verdict(r.input_verdict);
  out.set_metric(r.metric);
  out.set_unit(r.unit);
  out.set_commit(r.commit);
  out.set_fingerprint(r.fingerprint);
  out.set_hostname(r.hostname);
  return out;
}

}  // namespace benchfleet
