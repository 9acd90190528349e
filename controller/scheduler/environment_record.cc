#include "controller/scheduler/environment_record.h"

#include <utility>

#include "nlohmann/json.hpp"

namespace benchfleet {

std::string EnvironmentRecordJson(
    const EnvironmentOrigin& origin, uint64_t seed,
    const std::optional<HostEnvironment>& reported) {
  HostEnvironment env = reported.value_or(HostEnvironment{});
  static_cast<HostFacts&>(env) = origin.facts;
  nlohmann::json gpus = nlohmann::json::array();
  for (const GpuIdentity& g : env.gpus) {
    gpus.push_back({{"name", g.name},
                    {"uuid", g.uuid},
                    {"memory_total_bytes", g.memory_total_bytes}});
  }
  nlohmann::json j;
  j["seed"] = std::to_string(seed);
  j["agent_id"] = origin.agent_id;
  j["hostname"] = env.hostname;
  j["cpu_model"] = env.cpu_model;
  j["cpu_cores"] = env.cpu_cores;
  j["memory_bytes"] = env.memory_bytes;
  j["os"] = env.os;
  j["kernel"] = env.kernel;
  j["labels"] = origin.labels;
  j["gpus"] = std::move(gpus);
  j["governor"] = env.governor;
  j["turbo"] = env.turbo;
  j["toolchain"] = env.toolchain;
  j["commit"] = env.commit;
  j["dirty"] = env.dirty;
  j["fingerprint"] = HostFingerprint(env);
  j["agent_reported"] = reported.has_value();
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string HostSummaryJson(const std::optional<StepHostSummary>& host) {
  nlohmann::json out = nlohmann::json::object();
  if (host) {
    out["samples"] = host->samples;
    out["max_cpu_temp_c"] = host->max_cpu_temp_c;
    out["max_gpu_temp_c"] = host->max_gpu_temp_c;
    out["min_freq_mhz"] = host->min_freq_mhz;
    out["mean_cpu_util"] = host->mean_cpu_util;
    out["throttle_delta"] = host->throttle_delta;
    out["max_competing_cpu"] = host->max_competing_cpu;
    out["top_competitor"] = host->top_competitor;
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace benchfleet
