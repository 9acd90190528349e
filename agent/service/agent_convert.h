// The agent's proto <-> model conversions, all in one place: host facts for the
// hello, the attempt environment for a lease's acceptance, a step order into a
// RunRequest, a RunResult and a run's host summary into a StepResult, and a
// run's host samples into a SampleBatch. The rest of the agent works on the
// model structs (HostFacts, HostEnvironment, RunRequest, RunResult,
// HostStateSummary, HostSample).
//
// Used by Agent (agent/service/agent.cc) and StepExecutor
// (agent/service/step_executor.cc). Pure functions; thread-safe.
#ifndef BENCHFLEET_AGENT_SERVICE_AGENT_CONVERT_H_
#define BENCHFLEET_AGENT_SERVICE_AGENT_CONVERT_H_

#include <string>
#include <utility>
#include <vector>

#include "agent/probe/host_facts.h"
#include "agent/probe/host_sample.h"
#include "agent/probe/host_summary.h"
#include "agent/runner/process_runner.h"
#include "benchfleet/v1/agent.pb.h"
#include "common/fingerprint.h"

namespace benchfleet {

void HostFactsToProto(const HostFacts& facts, v1::HostFacts* out);

v1::AttemptEnvironment EnvironmentToProto(const HostEnvironment& env);

// The process to run for `order`: its argv, cwd, cpus and timeout; its
// environment is `base_env` (KEY=VALUE) with BENCHFLEET_AGENT_ID=`agent_id` and
// the order's variables over it; stdout and stderr are captured as
// <attempt_dir>/<step_seq>.stdout and .stderr. The cancel flag is left unset.
RunRequest RunRequestFromOrder(const v1::StepOrder& order,
                               const std::vector<std::string>& base_env,
                               const std::string& agent_id,
                               const std::string& attempt_dir);

// The order's metric patterns as (name, regex).
std::vector<std::pair<std::string, std::string>> MetricPatterns(
    const v1::StepOrder& order);

// Sets the measured fields of `out`: times, peak RSS, exit code, signal,
// timeout.
void RunResultToProto(const RunResult& run, v1::StepResult* out);

// Sets out->host and out->host_flags from a run's summary.
void HostSummaryToProto(const HostStateSummary& summary, v1::StepResult* out);

// The samples taken during `order`'s run, as sent to the controller.
v1::SampleBatch SamplesToProto(const v1::StepOrder& order,
                               const std::vector<HostSample>& samples);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_AGENT_CONVERT_H_
