#include "agent/service/agent_convert.h"

#include <chrono>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/probe/probe_json.h"
#include "agent/service/order_fields.h"

namespace benchfleet {

void HostFactsToProto(const HostFacts& facts, v1::HostFacts* out) {
  out->set_hostname(facts.hostname);
  out->set_cpu_model(facts.cpu_model);
  out->set_cpu_cores(facts.cpu_cores);
  out->set_memory_bytes(facts.memory_bytes);
  out->set_os(facts.os);
  out->set_kernel(facts.kernel);
}

v1::AttemptEnvironment EnvironmentToProto(const HostEnvironment& env) {
  v1::AttemptEnvironment e;
  e.set_governor(env.governor);
  e.set_turbo(env.turbo);
  for (const GpuIdentity& g : env.gpus) {
    v1::GpuInfo* gpu = e.add_gpus();
    gpu->set_name(g.name);
    gpu->set_uuid(g.uuid);
    gpu->set_memory_total_bytes(g.memory_total_bytes);
  }
  for (const auto& [name, version] : env.toolchain)
    (*e.mutable_toolchain())[name] = version;
  e.set_commit(env.commit);
  e.set_dirty(env.dirty);
  return e;
}

RunRequest RunRequestFromOrder(const v1::StepOrder& order,
                               const std::vector<std::string>& base_env,
                               const std::string& agent_id,
                               const std::string& attempt_dir) {
  RunRequest req;
  req.argv.assign(order.argv().begin(), order.argv().end());
  req.cwd = order.cwd();
  std::map<std::string, std::string> env;
  for (const std::string& e : base_env) {
    auto eq = e.find('=');
    if (eq != std::string::npos) env[e.substr(0, eq)] = e.substr(eq + 1);
  }
  // Which agent runs the job (e.g. for a job that keeps per-host caches).
  env["BENCHFLEET_AGENT_ID"] = agent_id;
  for (const auto& [k, v] : order.env()) env[k] = v;
  for (const auto& [k, v] : env) req.env.push_back(absl::StrCat(k, "=", v));
  if (const absl::Duration timeout = StepTimeout(order);
      timeout != absl::InfiniteDuration()) {
    req.timeout = timeout;
  }
  // The job's cookie names it (agent/runner/job_tree.h); a restarted agent
  // looks for "<agent id>/".
  req.job =
      absl::StrCat(agent_id, "/", order.attempt_id(), "/", order.step_seq());
  req.stdout_path = absl::StrCat(attempt_dir, "/", order.step_seq(), ".stdout");
  req.stderr_path = absl::StrCat(attempt_dir, "/", order.step_seq(), ".stderr");
  for (int cpu : order.cpus()) req.cpus.push_back(cpu);
  return req;
}

std::vector<std::pair<std::string, std::string>> MetricPatterns(
    const v1::StepOrder& order) {
  std::vector<std::pair<std::string, std::string>> patterns;
  for (const auto& p : order.metrics())
    patterns.emplace_back(p.name(), p.regex());
  return patterns;
}

void RunResultToProto(const RunResult& run, v1::StepResult* out) {
  out->set_wall_ns(run.wall_ns);
  out->set_user_ns(run.user_ns);
  out->set_sys_ns(run.sys_ns);
  out->set_max_rss_bytes(run.max_rss_bytes);
  out->set_exit_code(run.exit_code);
  out->set_term_signal(run.term_signal);
  out->set_timed_out(run.timed_out);
}

void HostSummaryToProto(const HostStateSummary& summary, v1::StepResult* out) {
  v1::HostSummary* h = out->mutable_host();
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
  for (const std::string& f : summary.flags) out->add_host_flags(f);
}

v1::SampleBatch SamplesToProto(const v1::StepOrder& order,
                               const std::vector<HostSample>& samples) {
  v1::SampleBatch b;
  b.set_attempt_id(order.attempt_id());
  b.set_lease_token(order.lease_token());
  b.set_step_seq(order.step_seq());
  for (const HostSample& s : samples) {
    v1::HostSampleRow* row = b.add_samples();
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
  return b;
}

}  // namespace benchfleet
