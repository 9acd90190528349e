// Pushing a source bundle to the controller (issue 11): pack a directory,
// ask HasBundle, upload in 1 MiB chunks only when the controller does not hold
// it. Used by `benchfleet bundle push` and `submit --bundle`
// (cli/bundle_commands.h), the bundle tests and bench/bundle_bench.
// Stateless; thread-safe (each call has its own temporary file and calls).
#ifndef BENCHFLEET_CLI_BUNDLE_PUSH_H_
#define BENCHFLEET_CLI_BUNDLE_PUSH_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/bundle/bundle.h"

namespace benchfleet {

struct BundlePush {
  BundleInfo info;             // what was packed
  bool already_held = false;   // the controller had it: nothing uploaded
  int64_t bytes_sent = 0;      // bundle bytes written to the upload stream
  absl::Duration pack_time;    // packing (listing, reading, hashing)
  absl::Duration upload_time;  // HasBundle plus the upload, if any
};

// Packs `dir` (into a temporary file, removed afterwards), asks HasBundle and
// uploads the bundle when the controller does not hold it. Errors: the
// packer's (naming the directory and the cap) or the controller's.
absl::StatusOr<BundlePush> PushBundle(v1::FleetService::Stub* stub,
                                      const std::string& dir,
                                      const PackOptions& options);

// One line for people: "bundle 3f2a… of DIR: 12 files, 1.2 MiB; sent 1.2 MiB"
// or "...; already on the controller, sent 0 B".
std::string DescribePush(const BundlePush& push, const std::string& dir);

}  // namespace benchfleet

#endif  // BENCHFLEET_CLI_BUNDLE_PUSH_H_
