// AgentRecord: the controller's registry entry for one agent (labels, host
// facts, state, cordon), its AgentState and the state names.
//
// Part of the domain model (common/model/, library benchfleet::model): used by
// the store, the scheduler and the service adapters. Plain data and pure
// functions; thread-safe.
#ifndef BENCHFLEET_COMMON_MODEL_AGENT_H_
#define BENCHFLEET_COMMON_MODEL_AGENT_H_

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace benchfleet {

enum class AgentState { kIdle, kBusy, kDraining, kQuarantined, kOffline };

// "idle", "busy", "draining", "quarantined", "offline"; "unknown" for a value
// outside the enum.
const char* AgentStateName(AgentState s);
// The inverse of AgentStateName (exact match); false and `*out` unchanged for
// any other text.
bool ParseAgentState(std::string_view name, AgentState* out);
// As ParseAgentState, but an unknown name is InvalidArgument saying which text
// was refused and listing the accepted names.
absl::StatusOr<AgentState> AgentStateFromName(std::string_view name);

struct AgentRecord {
  std::string id;
  std::string hostname;
  std::map<std::string, std::string> labels;
  std::string facts_json;  // host facts (CPU model, cores, memory, OS, kernel)
  AgentState state = AgentState::kOffline;
  bool cordoned = false;  // drained by an operator: receives no new work
  absl::Time last_seen = absl::UnixEpoch();
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_AGENT_H_
