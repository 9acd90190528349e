#include "controller/store/json_columns.h"

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace benchfleet {

absl::StatusOr<std::string> LabelsToJson(
    const std::map<std::string, std::string>& labels, std::string_view whose) {
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [key, value] : labels) object[key] = value;
  try {
    return object.dump();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        std::string(whose) + ": label keys and values must be valid UTF-8 (" +
        e.what() + ")");
  }
}

absl::StatusOr<std::map<std::string, std::string>> LabelsFromJson(
    const std::string& json, std::string_view whose, std::string_view store) {
  const nlohmann::json parsed =
      nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  std::map<std::string, std::string> labels;
  bool valid = parsed.is_object();
  if (valid) {
    for (const auto& [key, value] : parsed.items()) {
      if (!value.is_string()) {
        valid = false;
        break;
      }
      labels.emplace(key, value.get<std::string>());
    }
  }
  if (!valid) {
    return absl::DataLossError(
        std::string(store) + ": " + std::string(whose) +
        " are not a JSON object of strings; the database was modified "
        "outside benchfleet or is damaged");
  }
  return labels;
}

absl::StatusOr<std::string> HostFlagsToJson(
    const std::vector<std::string>& flags, std::string_view whose) {
  try {
    return nlohmann::json(flags).dump();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(std::string(whose) +
                                      ": host flags must be valid UTF-8 (" +
                                      e.what() + ")");
  }
}

absl::StatusOr<std::vector<std::string>> HostFlagsFromJson(
    const std::string& json, std::string_view whose, std::string_view store) {
  const nlohmann::json parsed =
      nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> flags;
  bool valid = parsed.is_array();
  if (valid) {
    for (const nlohmann::json& flag : parsed) {
      if (!flag.is_string()) {
        valid = false;
        break;
      }
      flags.push_back(flag.get<std::string>());
    }
  }
  if (!valid) {
    return absl::DataLossError(
        std::string(store) + ": " + std::string(whose) +
        " are not a JSON array of strings; the database was modified "
        "outside benchfleet or is damaged");
  }
  return flags;
}

}  // namespace benchfleet
