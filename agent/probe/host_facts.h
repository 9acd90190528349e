// Collects the host facts an agent reports when it connects: hostname, CPU
// model, cores, memory, OS and kernel, read from /proc, /etc and uname under a
// configurable root (tests point it at a fake tree). The struct, HostFacts, is
// the domain model's (common/model/host_facts.h). Missing files give empty
// values, never errors. Stateless; thread-safe.
#ifndef BENCHFLEET_AGENT_PROBE_HOST_FACTS_H_
#define BENCHFLEET_AGENT_PROBE_HOST_FACTS_H_

#include <string>

#include "common/model/host_facts.h"

namespace benchfleet {

// `root` is prepended to /proc/cpuinfo, /proc/meminfo and /etc/os-release ("" =
// the real system). Hostname, core count and kernel come from the running
// system.
HostFacts ReadHostFacts(const std::string& root = "");

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_PROBE_HOST_FACTS_H_
