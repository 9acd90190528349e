// How both stores keep a step result's host flags ("throttled", "contended",
// ...): one TEXT column holding a JSON array of strings, so any flag text
// round-trips and the two stores stay interchangeable (export/import, tests).
#ifndef BENCHFLEET_CONTROLLER_STORE_HOST_FLAGS_JSON_H_
#define BENCHFLEET_CONTROLLER_STORE_HOST_FLAGS_JSON_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace benchfleet {

// InvalidArgument naming `whose` when a flag is not valid UTF-8.
absl::StatusOr<std::string> HostFlagsToJson(
    const std::vector<std::string>& flags, std::string_view whose);

// DataLoss naming `store` ("store database PATH", "PostgreSQL store URL") and
// `whose` when `json` is not a JSON array of strings.
absl::StatusOr<std::vector<std::string>> HostFlagsFromJson(
    const std::string& json, std::string_view whose, std::string_view store);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_HOST_FLAGS_JSON_H_
