// What a host is: HostFacts (hostname, CPU model, cores, memory, OS, kernel —
// what an agent reports when it connects) and HostEnvironment (the facts plus
// what the agent reports when it accepts a lease: GPUs, governor, turbo,
// toolchain versions, the work tree's commit), from which common/fingerprint
// computes the host fingerprint.
//
// Part of the domain model (common/model/, library benchfleet::model). The
// agent fills these (agent/probe/host_facts.h reads HostFacts from /proc,
// /etc and uname; agent/service/environment.h collects a HostEnvironment);
// the controller receives them through the proto conversions in its service
// adapters. Plain data; thread-safe.
#ifndef BENCHFLEET_COMMON_MODEL_HOST_FACTS_H_
#define BENCHFLEET_COMMON_MODEL_HOST_FACTS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace benchfleet {

// Missing values are empty / zero, never errors.
struct HostFacts {
  std::string hostname;
  std::string cpu_model;
  int cpu_cores = 0;
  int64_t memory_bytes = 0;
  std::string os;
  std::string kernel;
};

struct GpuIdentity {
  std::string name;  // "NVIDIA H100 80GB HBM3"
  std::string uuid;  // "GPU-…"; recorded, never fingerprinted
  int64_t memory_total_bytes = 0;
};

// What an attempt ran on: the agent's host facts plus what it reported when it
// accepted the lease. It extends HostFacts (rather than holding one) so that
// code written against the facts' fields reads them here unchanged, and a
// HostFacts can be assigned into it: `static_cast<HostFacts&>(env) = facts`.
struct HostEnvironment : HostFacts {
  std::vector<GpuIdentity> gpus;
  std::string governor;  // "performance"; several joined by ','; "" = unknown
  std::string turbo;     // "on" | "off" | "" (unknown)
  // name -> first line of its version command ("not found", or the error).
  std::map<std::string, std::string> toolchain;
  std::string commit;  // of the work directory; "" = not a git work tree
  bool dirty = false;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_HOST_FACTS_H_
