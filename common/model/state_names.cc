// The state names of experiment.h and agent.h and the role names of token.h, in
// one place so that the lookup (and the message for an unknown name) is written
// once.
#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/model/agent.h"
#include "common/model/experiment.h"
#include "common/model/token.h"

namespace benchfleet {
namespace {

// Indexed by the enumerator's value; the order must follow the enum
// declarations in experiment.h and agent.h.
constexpr const char* kExperimentStateNames[] = {"queued", "running", "done",
                                                 "failed", "cancelled"};
constexpr const char* kAttemptStateNames[] = {
    "running", "done", "lost", "failed", "cancelled", "host-not-ready"};
constexpr const char* kAgentStateNames[] = {"idle", "busy", "draining",
                                            "quarantined", "offline"};
constexpr const char* kRoleNames[] = {"viewer", "submitter", "admin"};

template <size_t N>
const char* NameAt(const char* const (&names)[N], int index) {
  return index >= 0 && static_cast<size_t>(index) < N ? names[index]
                                                      : "unknown";
}

template <typename Enum, size_t N>
bool ParseByName(std::string_view name, const char* const (&names)[N],
                 Enum* out) {
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i]) {
      *out = static_cast<Enum>(i);
      return true;
    }
  }
  return false;
}

template <typename Enum, size_t N>
absl::StatusOr<Enum> FromName(std::string_view name,
                              const char* const (&names)[N], const char* what) {
  Enum out{};
  if (ParseByName(name, names, &out)) return out;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ", what, " \"", std::string(name),
                   "\"; expected one of ", absl::StrJoin(names, ", ")));
}

}  // namespace

const char* ExperimentStateName(ExperimentState s) {
  return NameAt(kExperimentStateNames, static_cast<int>(s));
}
const char* AttemptStateName(AttemptState s) {
  return NameAt(kAttemptStateNames, static_cast<int>(s));
}
const char* AgentStateName(AgentState s) {
  return NameAt(kAgentStateNames, static_cast<int>(s));
}
const char* RoleName(Role role) {
  return NameAt(kRoleNames, static_cast<int>(role));
}

bool ParseExperimentState(std::string_view name, ExperimentState* out) {
  return ParseByName(name, kExperimentStateNames, out);
}
bool ParseAttemptState(std::string_view name, AttemptState* out) {
  return ParseByName(name, kAttemptStateNames, out);
}
bool ParseAgentState(std::string_view name, AgentState* out) {
  return ParseByName(name, kAgentStateNames, out);
}

absl::StatusOr<ExperimentState> ExperimentStateFromName(std::string_view name) {
  return FromName<ExperimentState>(name, kExperimentStateNames,
                                   "experiment state");
}
absl::StatusOr<AttemptState> AttemptStateFromName(std::string_view name) {
  return FromName<AttemptState>(name, kAttemptStateNames, "attempt state");
}
absl::StatusOr<AgentState> AgentStateFromName(std::string_view name) {
  return FromName<AgentState>(name, kAgentStateNames, "agent state");
}

absl::StatusOr<Role> RoleFromName(std::string_view name) {
  return FromName<Role>(name, kRoleNames, "role");
}

}  // namespace benchfleet
