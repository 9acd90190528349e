// Host facts an agent reports when it connects: hostname, CPU model, cores,
// memory, OS and kernel, read from /proc, /etc and uname under a configurable
// root (tests point it at a fake tree). Missing files give empty values, never
// errors. Stateless.
#ifndef BENCHFLEET_AGENT_PROBE_HOST_FACTS_H_
#define BENCHFLEET_AGENT_PROBE_HOST_FACTS_H_

#include <cstdint>
#include <string>

namespace benchfleet {

struct HostFacts {
  std::string hostname;
  std::string cpu_model;
  int cpu_cores = 0;
  int64_t memory_bytes = 0;
  std::string os;
  std::string kernel;
};

// `root` is prepended to /proc/cpuinfo, /proc/meminfo and /etc/os-release ("" =
// the real system). Hostname, core count and kernel come from the running
// system.
HostFacts ReadHostFacts(const std::string& root = "");

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_PROBE_HOST_FACTS_H_
