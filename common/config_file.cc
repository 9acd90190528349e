#include "common/config_file.h"

#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/yaml/located_reader.h"
#include "common/yaml/located_yaml.h"

namespace benchfleet {

absl::StatusOr<std::map<std::string, std::string>> LoadConfigFile(
    const std::string& path, const std::set<std::string>& allowed_keys) {
  return LoadConfigFile(path, allowed_keys, {}, nullptr);
}

absl::StatusOr<std::map<std::string, std::string>> LoadConfigFile(
    const std::string& path, const std::set<std::string>& allowed_keys,
    const std::set<std::string>& mapping_keys,
    std::map<std::string, std::map<std::string, std::string>>* mappings) {
  // Like yaml-cpp's LoadFile: the first document counts, the rest is ignored.
  const yaml::ParseResult parsed =
      yaml::ReadYamlFile(path, {.single_document = false});
  if (!parsed.ok()) {
    const yaml::ParseError& e = parsed.error();
    if (e.kind == yaml::ParseError::Kind::kUnreadable) {
      return absl::NotFoundError(
          absl::StrCat("cannot read config file ", path,
                       ": it does not exist or is not readable"));
    }
    return absl::InvalidArgumentError(
        yaml::FormatAt(path, e.mark, "", e.message));
  }
  const yaml::Node& root = parsed.root;
  std::map<std::string, std::string> out;
  if (root.IsNull()) return out;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":1:1: a config file is a mapping of settings (key: value)"));
  }
  const auto where = [&](const yaml::Node& n, absl::string_view message) {
    return absl::InvalidArgumentError(
        yaml::FormatAt(path, n.mark(), "", message));
  };
  const std::vector<absl::string_view> allowed(allowed_keys.begin(),
                                               allowed_keys.end());
  for (const yaml::CheckedKey& checked : yaml::CheckKeys(root, allowed)) {
    const yaml::Node& key_node = *checked.key;
    const yaml::Node& value = *checked.value;
    const std::string& key = key_node.Scalar();
    // A repeated setting is not refused: the later one wins.
    if (checked.status == yaml::KeyStatus::kUnknown ||
        checked.status == yaml::KeyStatus::kNotPlain) {
      return where(key_node,
                   absl::StrCat("unknown setting '", key, "'; allowed: ",
                                absl::StrJoin(allowed_keys, ", ")));
    }
    if (mapping_keys.contains(key)) {
      if (!value.IsMap() && !value.IsNull()) {
        return where(
            value,
            absl::StrCat(key,
                         ": expected a mapping of names to values (name: "
                         "value)"));
      }
      std::map<std::string, std::string> values;
      for (const auto& [name, text] : value.entries()) {
        if (!name.IsScalar() || !(text.IsScalar() || text.IsNull())) {
          return where(text,
                       absl::StrCat(key, ": each entry must be name: value"));
        }
        values[name.Scalar()] = text.Scalar();
      }
      if (mappings != nullptr) (*mappings)[key] = std::move(values);
      continue;
    }
    if (key == "labels" && value.IsMap()) {
      std::vector<std::string> pairs;
      for (const auto& [label, text] : value.entries()) {
        if (!text.IsScalar()) {
          return where(text, "labels: each label value must be a string");
        }
        pairs.push_back(absl::StrCat(label.Scalar(), "=", text.Scalar()));
      }
      out[key] = absl::StrJoin(pairs, ",");
      continue;
    }
    if (!value.IsScalar()) {
      return where(value, absl::StrCat(key, ": expected a single value"));
    }
    out[key] = value.Scalar();
  }
  return out;
}

absl::Status TakeConfigBool(const std::map<std::string, std::string>& config,
                            const std::string& key, const std::string& path,
                            bool* flag) {
  auto it = config.find(key);
  if (it == config.end()) return absl::OkStatus();
  if (it->second != "true" && it->second != "false") {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", key, ": expected true or false, got \"", it->second, "\""));
  }
  *flag = *flag || it->second == "true";
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::string& text) {
  std::map<std::string, std::string> labels;
  for (absl::string_view pair :
       absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || absl::StripAsciiWhitespace(kv[0]).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("label '", pair,
                       "' is not of the form key=value (e.g. --labels "
                       "gpu=rtx3090,os=linux)"));
    }
    labels[std::string(absl::StripAsciiWhitespace(kv[0]))] =
        std::string(absl::StripAsciiWhitespace(kv[1]));
  }
  return labels;
}

std::string DefaultDataDir() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME");
      xdg != nullptr && xdg[0] == '/') {
    return absl::StrCat(xdg, "/benchfleet");
  }
  if (const char* home = std::getenv("HOME");
      home != nullptr && home[0] == '/') {
    return absl::StrCat(home, "/.local/share/benchfleet");
  }
  return ".benchfleet";
}

}  // namespace benchfleet
