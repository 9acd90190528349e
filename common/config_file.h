// Flat key/value configuration files for benchfleet-controller and
// benchfleet-agent
// (`--config FILE`). A config file is a YAML mapping of scalars; a `labels:`
// mapping is flattened to "k=v,k2=v2". Command-line flags override file values.
// Parsed by the located-YAML reader (common/yaml/located_yaml.h). Stateless;
// thread-safe.
#ifndef BENCHFLEET_COMMON_CONFIG_FILE_H_
#define BENCHFLEET_COMMON_CONFIG_FILE_H_

#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"

namespace benchfleet {

// Reads `path`; InvalidArgument names file:line:col for syntax errors,
// non-scalar values and keys outside `allowed_keys` (listing the allowed ones).
absl::StatusOr<std::map<std::string, std::string>> LoadConfigFile(
    const std::string& path, const std::set<std::string>& allowed_keys);

// Same, where each key in `mapping_keys` (also listed in `allowed_keys`) holds
// a mapping of scalars (`toolchain: {rustc: rustc --version}`) that goes to
// (*mappings)[key] instead of the flat result; an empty value becomes "".
// InvalidArgument (file:line:col) when such a key holds anything else.
absl::StatusOr<std::map<std::string, std::string>> LoadConfigFile(
    const std::string& path, const std::set<std::string>& allowed_keys,
    const std::set<std::string>& mapping_keys,
    std::map<std::string, std::map<std::string, std::string>>* mappings);

// A yes/no setting of a loaded config: when `key` is present it must be
// "true" or "false" (InvalidArgument naming `path`, the key and the value
// otherwise), and "true" turns `*flag` on; a flag already on stays on (the
// command line wins).
absl::Status TakeConfigBool(const std::map<std::string, std::string>& config,
                            const std::string& key, const std::string& path,
                            bool* flag);

// "k=v,k2=v2" -> map; InvalidArgument on a malformed pair.
absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::string& text);

// $XDG_DATA_HOME/benchfleet, else $HOME/.local/share/benchfleet, else
// ./.benchfleet.
std::string DefaultDataDir();

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_CONFIG_FILE_H_
