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
// where). Used by the controller's dispatcher; computed from the model's
// HostEnvironment (common/model/host_facts.h); plain structs, no gRPC.
//
// Thread-safety: pure functions; thread-safe.
#ifndef BENCHFLEET_COMMON_FINGERPRINT_H_
#define BENCHFLEET_COMMON_FINGERPRINT_H_

#include <string>

#include "common/model/host_facts.h"

namespace benchfleet {

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
