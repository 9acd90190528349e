// JSON forms of the probe structs: what benchfleet-probe prints and what the
// agent stores as a sample's detail JSON. Readings that are not available are
// left out (absent = not available); times are Unix nanoseconds plus an RFC
// 3339 UTC string.
//
// Thread-safety: pure functions; thread-safe.
#ifndef BENCHFLEET_AGENT_PROBE_PROBE_JSON_H_
#define BENCHFLEET_AGENT_PROBE_PROBE_JSON_H_

#include "agent/probe/host_facts.h"
#include "agent/probe/host_sample.h"
#include "agent/probe/host_summary.h"
#include "nlohmann/json.hpp"

namespace benchfleet {

nlohmann::json HostFactsToJson(const HostFacts& facts);
nlohmann::json GpuSampleToJson(const GpuSample& gpu);
// Every field of the sample: host scalars, "cores", "temperatures",
// "top_processes", "gpus".
nlohmann::json HostSampleToJson(const HostSample& sample);
nlohmann::json HostStateSummaryToJson(const HostStateSummary& summary);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_PROBE_PROBE_JSON_H_
