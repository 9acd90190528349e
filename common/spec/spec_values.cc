#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/metric_regex.h"
#include "common/spec/spec_parser.h"

namespace benchfleet::spec_internal {

namespace fs = std::filesystem;

// What is wrong with a custom metric regex, "" if nothing: it is checked with
// the very compilation the agent applies to stdout (RE2, not std::regex).
std::string MetricRegexProblem(const std::string& pattern,
                               absl::string_view expected) {
  absl::StatusOr<int> groups = MetricRegexCaptureGroups(pattern);
  if (!groups.ok()) {
    return absl::StrCat(Quote(pattern), " does not compile with RE2 (",
                        groups.status().message(), "); expected ", expected);
  }
  if (*groups != 1) {
    return absl::StrCat(Quote(pattern), " has ", *groups,
                        " capture groups; expected ", expected);
  }
  return "";
}

std::optional<std::string> SpecParser::ReadName(const Item& item,
                                                const NameRule& rule) {
  std::string expected = absl::StrCat("1 to ", kMaxNameLength,
                                      " characters from ", rule.description);
  std::optional<std::string> name = ReadScalar(item, expected);
  if (!name) return std::nullopt;
  if (name->empty()) {
    Error(item, absl::StrCat("is empty; expected ", expected));
    return std::nullopt;
  }
  if (name->size() > kMaxNameLength) {
    Error(item, absl::StrCat(Quote(*name), " is ", name->size(),
                             " characters long; expected at most ",
                             kMaxNameLength, " characters"));
    return std::nullopt;
  }
  auto allowed = [&rule](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) ||
           rule.extra_chars.find(c) != absl::string_view::npos;
  };
  auto bad = std::find_if_not(name->begin(), name->end(), allowed);
  if (bad != name->end()) {
    std::string fixed;
    for (char c : *name) {
      char lower = absl::ascii_tolower(c);
      fixed.push_back(allowed(lower) ? lower : rule.replacement);
    }
    Error(item, absl::StrCat(Quote(*name), " contains ", QuoteChar(*bad),
                             "; expected only ", rule.description, ", e.g. ",
                             Quote(fixed)));
    return std::nullopt;
  }
  if (!absl::ascii_isalnum(name->front())) {
    Error(item,
          absl::StrCat(Quote(*name), " starts with ", QuoteChar(name->front()),
                       "; expected a letter or digit first"));
    return std::nullopt;
  }
  return name;
}

// Input and compare paths live inside the work directory: relative, and still
// inside it after lexical normalization. (Symlinks are the host's business, not
// the spec's.)
std::optional<std::string> SpecParser::ReadRelativePath(const Item& item) {
  constexpr absl::string_view kExpected =
      "a path relative to the work directory, e.g. inputs/small.bin";
  std::optional<std::string> text = ReadScalar(item, kExpected);
  if (!text) return std::nullopt;
  if (text->empty()) {
    Error(item, absl::StrCat("is empty; expected ", kExpected));
    return std::nullopt;
  }
  if (text->find('\0') != std::string::npos) {
    Error(item, absl::StrCat(Quote(*text), " contains a NUL byte; expected ",
                             kExpected));
    return std::nullopt;
  }
  fs::path path(*text);
  if (path.is_absolute()) {
    Error(item, absl::StrCat(Quote(*text), " is absolute; expected ", kExpected,
                             " (copy or link the file into it)"));
    return std::nullopt;
  }
  fs::path normal = path.lexically_normal();
  if (!normal.empty() && *normal.begin() == "..") {
    Error(item, absl::StrCat(Quote(*text),
                             " escapes the work directory; expected a path "
                             "inside it, e.g. inputs/small.bin"));
    return std::nullopt;
  }
  if (normal.empty() || normal == ".") {
    Error(item, absl::StrCat(Quote(*text),
                             " names the work directory itself; expected a "
                             "file inside it, e.g. inputs/small.bin"));
    return std::nullopt;
  }
  return normal.generic_string();
}

std::optional<CommandSpec> SpecParser::ReadCommand(const Item& item,
                                                   bool argv_only) {
  absl::string_view expected = argv_only ? kArgvExpected : kCommandExpected;
  CommandSpec command;
  if (item.node->IsScalar() && !argv_only) {
    command.shell = item.node->Scalar();
    if (absl::StripAsciiWhitespace(command.shell).empty()) {
      Error(item, absl::StrCat("is empty; expected ", expected));
      return std::nullopt;
    }
    return command;
  }
  if (!item.node->IsSequence()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  std::optional<std::vector<Item>> args = ReadList(item, expected);
  if (!args) return std::nullopt;
  if (args->empty()) {
    Error(item, absl::StrCat("is an empty list; expected ", expected));
    return std::nullopt;
  }
  bool ok = true;
  for (const Item& arg : *args) {
    std::optional<std::string> text =
        ReadScalar(arg, "a string (one argument)");
    if (!text) {
      ok = false;
      continue;
    }
    command.argv.push_back(*text);
  }
  if (!ok) return std::nullopt;
  if (command.argv.front().empty()) {
    Error((*args)[0],
          "the program name is empty; expected the program to run, "
          "e.g. ./bench");
    return std::nullopt;
  }
  return command;
}

// `command` (string or list) and `argv` (list) are two spellings of one field.
std::optional<CommandSpec> SpecParser::ReadCommandKeys(const Mapping& mapping) {
  const Item* command = mapping.Find("command");
  const Item* argv = mapping.Find("argv");
  if (command != nullptr && argv != nullptr) {
    Error(*argv,
          "is set together with command; expected only one of them: command "
          "(run by /bin/sh -c) or argv (run without a shell)");
    return std::nullopt;
  }
  if (command != nullptr) return ReadCommand(*command, /*argv_only=*/false);
  if (argv != nullptr) return ReadCommand(*argv, /*argv_only=*/true);
  return std::nullopt;
}

std::optional<std::map<std::string, std::string>> SpecParser::ReadStringMap(
    const Item& item, bool env_names) {
  absl::string_view expected =
      env_names ? "a mapping of variable names to strings, e.g. {MALLOC_CONF: "
                  "\"thp:always\"}"
                : "a mapping of strings to strings, e.g. {gpu: rtx3090}";
  if (!item.node->IsMap()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  std::map<std::string, std::string> out;
  bool ok = true;
  for (const auto& [key, value_node] : item.node->entries()) {
    if (!key.IsScalar() || key.Scalar().empty()) {
      Error(
          key.mark(), item.path,
          absl::StrCat("a key is not a non-empty string; expected ", expected));
      ok = false;
      continue;
    }
    std::string name = key.Scalar();
    std::string path = yaml::Child(item.path, name);
    if (env_names) {
      bool valid = !absl::ascii_isdigit(name.front()) &&
                   std::all_of(name.begin(), name.end(), [](char c) {
                     return absl::ascii_isalnum(c) || c == '_';
                   });
      if (!valid) {
        Error(key.mark(), path,
              absl::StrCat(Quote(name),
                           " is not an environment variable name; expected "
                           "letters, digits and '_', not starting with a "
                           "digit"));
        ok = false;
        continue;
      }
    }
    Item value{&value_node,
               value_node.IsNull() ? key.mark() : value_node.mark(), path};
    std::optional<std::string> text =
        ReadScalar(value, "a string (\"\" for an empty value)");
    if (!text) {
      ok = false;
      continue;
    }
    if (!out.emplace(name, *text).second) {
      Error(key.mark(), path,
            "duplicate key; expected each key once, remove one of them");
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace benchfleet::spec_internal
