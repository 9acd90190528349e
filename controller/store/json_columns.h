// The JSON text columns both stores share, so that the two write the same
// text and stay interchangeable (export/import, the conformance tests):
// label maps (a JSON object of strings) and a step result's host flags
// ("throttled", "contended", ...: a JSON array of strings).
#ifndef BENCHFLEET_CONTROLLER_STORE_JSON_COLUMNS_H_
#define BENCHFLEET_CONTROLLER_STORE_JSON_COLUMNS_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace benchfleet {

// InvalidArgument naming `whose` when a key or value is not valid UTF-8.
absl::StatusOr<std::string> LabelsToJson(
    const std::map<std::string, std::string>& labels, std::string_view whose);

// DataLoss naming `store` ("store database PATH", "PostgreSQL store URL") and
// `whose` when `json` is not a JSON object of strings.
absl::StatusOr<std::map<std::string, std::string>> LabelsFromJson(
    const std::string& json, std::string_view whose, std::string_view store);

// InvalidArgument naming `whose` when a flag is not valid UTF-8.
absl::StatusOr<std::string> HostFlagsToJson(
    const std::vector<std::string>& flags, std::string_view whose);

// DataLoss naming `store` ("store database PATH", "PostgreSQL store URL") and
// `whose` when `json` is not a JSON array of strings.
absl::StatusOr<std::vector<std::string>> HostFlagsFromJson(
    const std::string& json, std::string_view whose, std::string_view store);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_JSON_COLUMNS_H_
