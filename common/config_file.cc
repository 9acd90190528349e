#include "common/config_file.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "yaml-cpp/yaml.h"

namespace benchfleet {

absl::StatusOr<std::map<std::string, std::string>> LoadConfigFile(
    const std::string& path, const std::set<std::string>& allowed_keys) {
  return LoadConfigFile(path, allowed_keys, {}, nullptr);
}

absl::StatusOr<std::map<std::string, std::string>> LoadConfigFile(
    const std::string& path, const std::set<std::string>& allowed_keys,
    const std::set<std::string>& mapping_keys,
    std::map<std::string, std::map<std::string, std::string>>* mappings) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(
        absl::StrCat("cannot read config file ", path,
                     ": it does not exist or is not readable"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  std::map<std::string, std::string> out;
  if (root.IsNull()) return out;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":1:1: a config file is a mapping of settings (key: value)"));
  }
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    const auto where = [&](const YAML::Node& n) {
      return absl::StrCat(path, ":", n.Mark().line + 1, ":",
                          n.Mark().column + 1, ": ");
    };
    if (!allowed_keys.contains(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(kv.first), "unknown setting '", key,
                       "'; allowed: ", absl::StrJoin(allowed_keys, ", ")));
    }
    if (mapping_keys.contains(key)) {
      if (!kv.second.IsMap() && !kv.second.IsNull()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where(kv.second), key,
            ": expected a mapping of names to values (name: value)"));
      }
      std::map<std::string, std::string> values;
      if (kv.second.IsMap()) {
        for (const auto& m : kv.second) {
          if (!m.first.IsScalar() ||
              !(m.second.IsScalar() || m.second.IsNull())) {
            return absl::InvalidArgumentError(absl::StrCat(
                where(m.second), key, ": each entry must be name: value"));
          }
          values[m.first.as<std::string>()] =
              m.second.IsNull() ? "" : m.second.as<std::string>();
        }
      }
      if (mappings != nullptr) (*mappings)[key] = std::move(values);
      continue;
    }
    if (key == "labels" && kv.second.IsMap()) {
      std::vector<std::string> pairs;
      for (const auto& l : kv.second) {
        if (!l.second.IsScalar()) {
          return absl::InvalidArgumentError(absl::StrCat(
              where(l.second), "labels: each label value must be a string"));
        }
        pairs.push_back(absl::StrCat(l.first.as<std::string>(), "=",
                                     l.second.as<std::string>()));
      }
      out[key] = absl::StrJoin(pairs, ",");
      continue;
    }
    if (!kv.second.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(kv.second), key, ": expected a single value"));
    }
    out[key] = kv.second.as<std::string>();
  }
  return out;
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
