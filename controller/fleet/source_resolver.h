// ResolveSources: at submit, turns each variant's `ref` (branch, tag or
// commit of the spec's source.repo) into the full commit id it names now, so
// that what is measured is fixed when the experiment is queued, whatever
// happens to the branch afterwards (DESIGN.md §3, `source`).
//
// How: one `git ls-remote <repo>` lists the repository's refs; a ref matches
// refs/heads/<ref>, then refs/tags/<ref> (annotated tags peeled to their
// commit), then <ref> itself when it is a full ref name or HEAD. A ref that is
// none of those but looks like a commit id (hex) is checked with
// `git rev-parse --verify <ref>^{commit}` when the repository is on this host
// (a path or file:// URL; abbreviated ids are expanded); for a remote
// repository only a full 40-hex id is accepted (the agent's fetch checks it
// exists). A candidate with no ref takes the baseline's.
//
// Used by FleetApi::Submit. Thread-safe (no state); it blocks on git for up to
// `timeout` per git command.
#ifndef BENCHFLEET_CONTROLLER_FLEET_SOURCE_RESOLVER_H_
#define BENCHFLEET_CONTROLLER_FLEET_SOURCE_RESOLVER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/model/variant_source.h"
#include "common/spec.h"
#include "controller/store/store.h"

namespace benchfleet {

// One record per variant of `spec` (in spec order), each with the spec's repo.
// Empty when the spec has no source.repo. InvalidArgument naming the spec,
// the variant, its ref and where it was written when a ref does not resolve;
// Unavailable naming the repository when git cannot list it (unreachable, not
// a repository, timed out).
absl::StatusOr<std::vector<VariantSourceRecord>> ResolveSources(
    const ExperimentSpec& spec, absl::Duration timeout = absl::Seconds(60));

// Fills in VariantSpec::commit of a stored experiment's spec from the
// commits recorded at submit. OK and nothing changed without source.repo.
// Unavailable when the spec has source.repo but its commits are not (yet)
// stored — the moment between Submit storing the experiment and its commits —
// so that the caller tries again rather than failing the experiment; the
// store's status when it cannot be read.
absl::Status AttachStoredCommits(Store& store, int64_t experiment_id,
                                 ExperimentSpec* spec);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_FLEET_SOURCE_RESOLVER_H_
