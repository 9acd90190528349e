// The state names of store.h and RedactUrl. OpenStore, which picks an
// implementation, is in open_store.cc so that this library does not depend on
// the implementations.
#include "controller/store/store.h"

#include <algorithm>
#include <string>
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
constexpr const char* kAttemptStateNames[] = {
    "running", "done", "lost", "failed", "cancelled", "host-not-ready"};
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

std::string RedactUrl(std::string_view text) {
  std::string out(text);
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const size_t start = scheme + 3;
    const size_t end = std::min(out.find_first_of("/?", start), out.size());
    const size_t at = out.rfind('@', end);
    if (at != std::string::npos && at >= start) {
      const size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) {
        out.replace(colon + 1, at - colon - 1, "***");
      }
    }
  }
  constexpr std::string_view kKey = "password=";
  for (size_t pos = out.find(kKey); pos != std::string::npos;
       pos = out.find(kKey, pos + 1)) {
    const size_t value = pos + kKey.size();
    size_t end = value;
    if (end < out.size() && out[end] == '\'') {  // key='quoted value'
      for (++end; end < out.size() && out[end] != '\''; ++end) {
        if (out[end] == '\\') ++end;
      }
      end = std::min(end + 1, out.size());
    } else {
      end = std::min(out.find_first_of("& \t\n", value), out.size());
    }
    out.replace(value, end - value, "***");
  }
  return out;
}

}  // namespace benchfleet
