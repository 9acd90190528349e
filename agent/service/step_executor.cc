#include "agent/service/step_executor.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/probe/host_summary.h"
#include "agent/service/agent_convert.h"
#include "agent/service/order_fields.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

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

GateOptions MergeGates(const HostGateLimits& host, const v1::GateSpec& spec,
                       bool attempt_start) {
  // The stricter of the host's own limit and the spec's wins; 0 means "not
  // set".
  auto stricter = [](double host_value, double spec_value) {
    if (host_value <= 0) return spec_value;
    if (spec_value <= 0) return host_value;
    return std::min(host_value, spec_value);
  };
  GateOptions g;
  g.cooldown = std::max(host.cooldown, GateCooldown(spec));
  g.max_gpu_temp_c = stricter(host.max_gpu_temp_c, spec.max_gpu_temp_c());
  g.max_cpu_temp_c = stricter(host.max_cpu_temp_c, spec.max_cpu_temp_c());
  g.max_load = attempt_start ? stricter(host.max_load, spec.max_load()) : 0;
  g.max_competing_cpu =
      stricter(host.max_competing_cpu, spec.max_competing_cpu());
  g.max_wait = GateMaxWait(spec).value_or(host.max_wait);
  return g;
}

StepExecutor::StepExecutor(StepExecutorOptions options, ProcessRunner* runner,
                           Probe* probe, Clock* clock, StepSampler* sampler)
    : options_(std::move(options)),
      runner_(runner),
      probe_(probe),
      clock_(clock),
      sampler_(sampler) {}

std::string StepExecutor::AttemptDir(int64_t attempt_id) const {
  return absl::StrCat(options_.workdir, "/attempts/", attempt_id);
}

StepOutcome StepExecutor::Execute(
    const v1::StepOrder& o, const StepContext& context,
    const std::atomic<bool>* cancel,
    const std::function<void(const std::string&)>& set_status) {
  StepOutcome out;
  v1::StepResult& r = out.result;
  r.set_attempt_id(o.attempt_id());
  r.set_lease_token(o.lease_token());
  r.set_step_seq(o.step_seq());

  const std::string dir = AttemptDir(o.attempt_id());
  RunRequest req =
      RunRequestFromOrder(o, options_.base_env, options_.agent_id, dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  req.cancel = cancel;
  req.record_path = JobRecordPath(options_.workdir);

  // Gates: before the attempt's first step (cooldown, temperatures, load,
  // competing processes) and before every run (temperatures, competing
  // processes; the job itself keeps the load average up, so load is an
  // attempt-level gate only).
  const bool is_run =
      o.kind() == v1::STEP_KIND_MEASURE || o.kind() == v1::STEP_KIND_WARMUP;
  if (context.attempt_start || is_run) {
    const absl::Time cooldown_until =
        context.last_attempt_end == absl::InfinitePast()
            ? absl::InfinitePast()
            : context.last_attempt_end +
                  MergeGates(options_.gates, context.gates, true).cooldown;
    GateOptions gate_options =
        MergeGates(options_.gates, context.gates, context.attempt_start);
    gate_options.own_work_ended_at = last_job_end_;
    GateOutcome gate = WaitForGates(
        *probe_, *clock_, gate_options,
        context.attempt_start ? cooldown_until : absl::InfinitePast(), cancel,
        [&set_status](const std::string& blockers) {
          if (set_status) {
            set_status(absl::StrCat("waiting for the host: ", blockers));
          }
        });
    if (set_status) set_status("");
    r.set_gate_wait_us(absl::ToInt64Microseconds(gate.waited));
    r.set_gate_wait_ms(absl::ToInt64Milliseconds(gate.waited));
    r.set_gate_blocked_by(gate.waited_for);
    if (!gate.passed) {
      r.set_error(gate.reason);
      r.set_exit_code(-1);
      // Not met within max_wait (a cancelled wait is never reported: the
      // lease or the step is gone).
      r.set_host_not_ready(!gate.cancelled);
      return out;
    }
  }

  if (is_run) sampler_->Begin();
  absl::StatusOr<RunResult> run = runner_->Run(req);
  if (run.ok() && !run->leftovers.empty()) {
    spdlog::warn(
        "step {} of attempt {} left {} process(es) outside its "
        "process group; killed: {}",
        o.step_seq(), o.attempt_id(), run->leftovers.size(),
        absl::StrJoin(run->leftovers, "; "));
  }
  last_job_end_ = clock_->Now();
  if (is_run) {
    std::vector<HostSample> samples = sampler_->End();
    HostSummaryOptions sopts;
    sopts.cpus.assign(o.cpus().begin(), o.cpus().end());
    sopts.contended_process_cpu_cores = options_.contended_cpu_cores;
    HostSummaryToProto(SummarizeHostSamples(samples, sopts), &r);
    if (!samples.empty()) out.samples = SamplesToProto(o, samples);
  }
  if (!run.ok()) {
    r.set_error(std::string(run.status().message()));
    r.set_exit_code(-1);
    return out;
  }
  RunResultToProto(*run, &r);
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
    for (const auto& [k, v] :
         ExtractMetrics(run->stdout_head, MetricPatterns(o)))
      (*r.mutable_metrics())[k] = v;
  }
  // Captures of successful steps are not needed once measured.
  if (run->exit_code == 0 && !run->timed_out) {
    std::filesystem::remove(req.stdout_path, ec);
    std::filesystem::remove(req.stderr_path, ec);
  }
  return out;
}

}  // namespace benchfleet
