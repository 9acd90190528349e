// The state names of store.h. OpenStore, which picks an implementation, is in
// open_store.cc so that this library does not depend on the implementations.
#include "controller/store/store.h"

#include <string_view>

namespace benchfleet {
namespace {

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

// Indexed by the enumerator's value; the order must follow the enum
// declarations in store.h.
constexpr const char* kExperimentStateNames[] = {"queued", "running", "done",
                                                 "failed", "cancelled"};
constexpr const char* kAttemptStateNames[] = {"running", "done", "lost",
                                              "failed", "cancelled"};
constexpr const char* kAgentStateNames[] = {"idle", "busy", "draining",
                                            "quarantined", "offline"};

template <size_t N>
const char* NameAt(const char* const (&names)[N], int index) {
  return index >= 0 && static_cast<size_t>(index) < N ? names[index]
                                                      : "unknown";
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

bool ParseExperimentState(std::string_view name, ExperimentState* out) {
  return ParseByName(name, kExperimentStateNames, out);
}
bool ParseAttemptState(std::string_view name, AttemptState* out) {
  return ParseByName(name, kAttemptStateNames, out);
}
bool ParseAgentState(std::string_view name, AgentState* out) {
  return ParseByName(name, kAgentStateNames, out);
}

}  // namespace benchfleet
