// Environment record: the JSON an attempt stores as its environment (what it
// ran on and with which seed), for `benchfleet show ID --env`, for reproducing
// the order and for comparing hosts, plus the JSON of one step's host summary.
// Used by the Dispatcher when it leases an attempt and when the agent accepts
// it. Pure functions over plain structs; thread-safe.
#ifndef BENCHFLEET_CONTROLLER_SCHEDULER_ENVIRONMENT_RECORD_H_
#define BENCHFLEET_CONTROLLER_SCHEDULER_ENVIRONMENT_RECORD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/fingerprint.h"
#include "common/model/host_facts.h"
#include "controller/attempt/attempt_driver.h"

namespace benchfleet {

// Who ran the attempt: the agent's identity and its host facts from its hello.
struct EnvironmentOrigin {
  std::string agent_id;
  std::map<std::string, std::string> labels;
  HostFacts facts;  // from its hello
};

// The attempt's environment record as compact JSON. The keys are a contract
// (README, campaign history): seed, agent_id, hostname, cpu_model, cpu_cores,
// memory_bytes, os, kernel, labels, gpus, governor, turbo, toolchain, commit,
// dirty, fingerprint, agent_reported. `reported` is what the agent sent with
// its acceptance (std::nullopt until then); the host facts always come from
// `origin`. Until the agent reports, the fingerprint covers the host facts only
// (and so differs from any complete one). Bytes that are not UTF-8 are
// replaced.
std::string EnvironmentRecordJson(
    const EnvironmentOrigin& origin, uint64_t seed,
    const std::optional<HostEnvironment>& reported);

// StepResultRecord::host_json: the summary under v1::HostSummary's field
// names; "{}" when the agent sent none. Bytes that are not UTF-8 (a process
// name is whatever bytes the host gave it) are replaced.
std::string HostSummaryJson(const std::optional<StepHostSummary>& host);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SCHEDULER_ENVIRONMENT_RECORD_H_
