// Host fingerprint: a short hash of the parts of an attempt's environment that
// make two hosts comparable for benchmarking (DESIGN.md §5): CPU model and
// cores, memory (rounded to GiB), GPU models and memory, OS, kernel, CPU
// governor, turbo state and toolchain versions. Two attempts with the same
// fingerprint ran on hosts that should time the same code the same way; the
// controller records it per attempt and campaign history compares baselines
// only within one fingerprint.
//
// Deliberately not part of it: hostname, agent id, GPU UUIDs and labels (the
// identity of a machine, not what it is), and the source commit (what ran, not
// where). Used by the controller's dispatcher; plain structs, no gRPC.
//
// Thread-safety: pure functions; thread-safe.
#ifndef BENCHFLEET_COMMON_FINGERPRINT_H_
#define BENCHFLEET_COMMON_FINGERPRINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace benchfleet {

struct GpuIdentity {
  std::string name;  // "NVIDIA H100 80GB HBM3"
  std::string uuid;  // "GPU-…"; recorded, never fingerprinted
  int64_t memory_total_bytes = 0;
};

// What an attempt ran on: the agent's host facts plus what it reported when it
// accepted the lease.
struct HostEnvironment {
  std::string hostname;
  std::string cpu_model;
  int cpu_cores = 0;
  int64_t memory_bytes = 0;
  std::string os;
  std::string kernel;
  std::vector<GpuIdentity> gpus;
  std::string governor;  // "performance"; several joined by ','; "" = unknown
  std::string turbo;     // "on" | "off" | "" (unknown)
  // name -> first line of its version command ("not found", or the error).
  std::map<std::string, std::string> toolchain;
  std::string commit;  // of the work directory; "" = not a git work tree
  bool dirty = false;
};

// The first 16 lowercase hex digits of SHA-256 over a canonical serialisation
// of the comparable parts listed in the file comment. Stable across processes
// and releases of this format (a change to the serialisation changes its
// version tag, and so every fingerprint); independent of the order of `gpus`
// and `toolchain`.
std::string HostFingerprint(const HostEnvironment& env);

// The text HostFingerprint hashes (exposed for tests and for explaining why two
// fingerprints differ).
std::string FingerprintCanonicalText(const HostEnvironment& env);

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_FINGERPRINT_H_
