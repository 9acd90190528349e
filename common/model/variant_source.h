// VariantSourceRecord: the commit one variant of an experiment was measured
// at, resolved from its spec `ref` when the experiment was submitted
// (controller/fleet/source_resolver.h), stored with the experiment
// (Store::RecordExperimentSources), sent to the agent in the lease and shown
// by `show` and `export`. Plain data.
#ifndef BENCHFLEET_COMMON_MODEL_VARIANT_SOURCE_H_
#define BENCHFLEET_COMMON_MODEL_VARIANT_SOURCE_H_

#include <string>

namespace benchfleet {

struct VariantSourceRecord {
  std::string variant;  // the spec's variant name
  std::string repo;     // the spec's source.repo, as written
  std::string ref;      // as written in the spec (the baseline's when none)
  std::string commit;   // full 40-hex commit id
  // In a lease only (the experiment's record keeps it, not the sources
  // table): with source.bundle, the SHA-256 of the tree every variant runs
  // from; repo, ref and commit are then empty.
  std::string bundle_digest;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_VARIANT_SOURCE_H_
