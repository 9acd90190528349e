#include "common/spec_loader.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/metric_regex.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kApiVersion = "benchfleet/v1";
constexpr absl::string_view kKind = "Experiment";
constexpr size_t kMaxNameLength = 63;
constexpr int64_t kMaxRuns = 10000;
constexpr int64_t kMaxWarmup = 1000;
// Underpowered runs are allowed on request, but a CV needs at least two
// samples.
constexpr int64_t kMinUnderpoweredRuns = 2;
constexpr size_t kMaxRegexLength = 1024;
// A spec with hundreds of errors is the wrong file; the first ones say enough.
constexpr size_t kMaxErrorsShown = 100;
constexpr size_t kMaxQuotedLength = 60;

constexpr absl::string_view kTopKeys[] = {
    "apiVersion", "kind",    "name",    "campaign", "idea",      "hypothesis",
    "requires",   "source",  "workdir", "setup",    "benchmark", "correctness",
    "variants",   "verdict", "gates",   "notify"};
constexpr absl::string_view kRequiresKeys[] = {"labels"};
constexpr absl::string_view kSourceKeys[] = {"repo"};
constexpr absl::string_view kBenchmarkKeys[] = {"command",
                                                "argv",
                                                "inputs",
                                                "warmup",
                                                "runs",
                                                "max_runs",
                                                "allow_underpowered",
                                                "order",
                                                "timeout",
                                                "seed",
                                                "cpus",
                                                "metrics"};
constexpr absl::string_view kInputKeys[] = {"name", "path", "weight"};
constexpr absl::string_view kMetricsKeys[] = {"primary", "custom"};
constexpr absl::string_view kCustomMetricKeys[] = {"name", "regex", "better"};
constexpr absl::string_view kCorrectnessKeys[] = {"command", "argv", "compare"};
constexpr absl::string_view kVariantKeys[] = {
    "name", "ref", "combines", "env", "command", "argv", "setup"};
constexpr absl::string_view kVerdictKeys[] = {
    "profile", "alpha", "max_cv", "kill_factor", "input_regression"};
constexpr absl::string_view kGateKeys[] = {
    "cooldown", "max_gpu_temp_c", "max_cpu_temp_c",
    "max_load", "max_wait",       "max_competing_cpu"};

constexpr absl::string_view kCommandExpected =
    "a shell command string or an argv list such as [./bench, \"{input}\"]";
constexpr absl::string_view kArgvExpected =
    "an argv list such as [./bench, --input, \"{input}\"]";
constexpr absl::string_view kDurationExpected =
    "a number with a unit (ms, s, m, h), e.g. 500ms, 60s, 15m or 1h30m";
constexpr absl::string_view kPercentExpected =
    "a number followed by %, e.g. 10%, or a fraction such as 0.1";

// Character rules for the names in a spec. All are lowercase so they can be
// used in paths, metric labels and branch names without quoting.
struct NameRule {
  absl::string_view extra_chars;  // allowed besides a-z and 0-9
  absl::string_view description;  // for messages
  char replacement;               // used to suggest a fixed name
};
constexpr NameRule kExperimentName = {"-", "a-z, 0-9 and '-'", '-'};
constexpr NameRule kVariantName = {"+_.-", "a-z, 0-9 and '+', '_', '.', '-'",
                                   '-'};
constexpr NameRule kInputName = {"_.-", "a-z, 0-9 and '_', '.', '-'", '-'};
constexpr NameRule kMetricName = {"_", "a-z, 0-9 and '_'", '_'};

// User text for a message: control characters escaped, long text shortened.
std::string Escape(absl::string_view text) {
  std::string out;
  size_t shown = std::min(text.size(), kMaxQuotedLength);
  for (size_t i = 0; i < shown; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (shown < text.size()) out += "...";
  return out;
}

std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", Escape(text), "\"");
}

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

std::string QuoteChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u < 0x20 || u >= 0x7f)
    return absl::StrCat("byte 0x", absl::Hex(u, absl::kZeroPad2));
  return absl::StrCat("'", std::string(1, c), "'");
}

// Strict decimal number: [-]digits[.digits][e[+-]digits]. absl::SimpleAtod
// alone would also take "inf", "nan", hex and surrounding spaces.
bool IsDecimalNumber(absl::string_view text) {
  size_t i = 0;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
  size_t digits = 0;
  while (i < text.size() && absl::ascii_isdigit(text[i])) ++i, ++digits;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && absl::ascii_isdigit(text[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    size_t exponent_digits = 0;
    while (i < text.size() && absl::ascii_isdigit(text[i])) {
      ++i, ++exponent_digits;
    }
    if (exponent_digits == 0) return false;
  }
  return i == text.size();
}

std::optional<double> ToDouble(absl::string_view text) {
  double value = 0;
  if (!IsDecimalNumber(text) || !absl::SimpleAtod(text, &value) ||
      !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The allowed key closest to a mistyped one, or "" when none is close.
absl::string_view Suggest(absl::string_view key,
                          std::span<const absl::string_view> allowed) {
  std::string lower = absl::AsciiStrToLower(key);
  absl::string_view best;
  size_t best_distance = 3;  // suggest only within two edits
  for (absl::string_view candidate : allowed) {
    size_t d = EditDistance(lower, absl::AsciiStrToLower(candidate));
    if (d < best_distance && d < candidate.size()) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

// Keys come from the user, so they are escaped like any other text.
std::string Child(absl::string_view path, absl::string_view key) {
  return path.empty() ? Escape(key) : absl::StrCat(path, ".", Escape(key));
}

std::string Index(absl::string_view path, size_t i) {
  return absl::StrCat(path, "[", i, "]");
}

// A value in the document with the place to report it at and its field path
// ("benchmark.inputs[0].path").
struct Item {
  YAML::Node node;
  YAML::Mark mark;
  std::string path;
};

// The entries of a mapping whose keys were checked against the allowed set.
class Mapping {
 public:
  Mapping(YAML::Mark mark, std::string path)
      : mark_(mark), path_(std::move(path)) {}

  void Add(std::string key, Item item) {
    entries_.emplace_back(std::move(key), std::move(item));
  }
  // The value under `key`, or nullptr when the key is absent.
  const Item* Find(absl::string_view key) const {
    for (const auto& [k, item] : entries_) {
      if (k == key) return &item;
    }
    return nullptr;
  }
  const YAML::Mark& mark() const { return mark_; }
  const std::string& path() const { return path_; }

 private:
  YAML::Mark mark_;
  std::string path_;
  std::vector<std::pair<std::string, Item>> entries_;
};

// Records where each document starts and ignores everything else.
class DocumentStarts : public YAML::EventHandler {
 public:
  explicit DocumentStarts(std::vector<YAML::Mark>* starts) : starts_(starts) {}
  void OnDocumentStart(const YAML::Mark& mark) override {
    starts_->push_back(mark);
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  std::vector<YAML::Mark>* starts_;
};

struct Diagnostic {
  int line;    // 1-based
  int column;  // 1-based
  std::string text;
};

class SpecParser {
 public:
  SpecParser(std::string display_path, SpecLoadOptions options)
      : display_path_(std::move(display_path)), options_(std::move(options)) {}

  absl::StatusOr<ExperimentSpec> Parse(absl::string_view yaml);

 private:
  // --- diagnostics ---
  Diagnostic Make(const YAML::Mark& mark, absl::string_view field,
                  absl::string_view message) const {
    int line = mark.line >= 0 ? mark.line + 1 : 1;
    int column = mark.column >= 0 ? mark.column + 1 : 1;
    std::string text =
        field.empty()
            ? absl::StrCat(display_path_, ":", line, ":", column, ": ", message)
            : absl::StrCat(display_path_, ":", line, ":", column, ": ", field,
                           ": ", message);
    return {line, column, std::move(text)};
  }
  void Error(const YAML::Mark& mark, absl::string_view field,
             absl::string_view message) {
    errors_.push_back(Make(mark, field, message));
  }
  void Error(const Item& item, absl::string_view message) {
    Error(item.mark, item.path, message);
  }
  void Warn(const Item& item, absl::string_view message) {
    warnings_.push_back(Make(item.mark, item.path, message));
  }
  absl::Status ErrorStatus();

  // Reports that `item` has the wrong shape: "got a list; expected ...".
  void TypeError(const Item& item, absl::string_view expected);

  // --- structure ---
  bool CheckExpandedSize(const YAML::Node& root);
  std::optional<Mapping> ReadMapping(const Item& item,
                                     std::span<const absl::string_view> allowed,
                                     absl::string_view expected);
  std::optional<std::vector<Item>> ReadList(const Item& item,
                                            absl::string_view expected);
  const Item* Require(const Mapping& mapping, absl::string_view key,
                      absl::string_view hint);

  // --- values ---
  std::optional<std::string> ReadScalar(const Item& item,
                                        absl::string_view expected);
  std::optional<std::string> ReadString(const Item& item);
  std::optional<std::string> ReadNonEmptyString(const Item& item,
                                                absl::string_view expected);
  std::optional<int64_t> ReadInt(const Item& item, absl::string_view expected);
  std::optional<double> ReadNumber(const Item& item,
                                   absl::string_view expected);
  std::optional<bool> ReadBool(const Item& item);
  std::optional<absl::Duration> ReadDuration(const Item& item);
  std::optional<double> ReadPercent(const Item& item);
  std::optional<std::string> ReadName(const Item& item, const NameRule& rule);
  std::optional<std::string> ReadRelativePath(const Item& item);
  std::optional<CommandSpec> ReadCommand(const Item& item, bool argv_only);
  std::optional<CommandSpec> ReadCommandKeys(const Mapping& mapping);
  std::optional<std::vector<std::string>> ReadStringList(
      const Item& item, absl::string_view expected);
  std::optional<std::map<std::string, std::string>> ReadStringMap(
      const Item& item, bool env_names);

  // --- sections ---
  void ReadTop(const Mapping& top, ExperimentSpec* spec);
  void ReadBenchmark(const Item& item, ExperimentSpec* spec);
  void ReadInputs(const Item& item, ExperimentSpec* spec);
  void ReadMetrics(const Item& item, ExperimentSpec* spec);
  void ReadCorrectness(const Item& item, ExperimentSpec* spec);
  void ReadVariants(const Item& item, ExperimentSpec* spec);
  void ReadVerdict(const Item& item, VerdictSpec* verdict);
  void ReadGates(const Item& item, GateSpec* gates);
  void ResolveWorkdir(const Mapping& top, ExperimentSpec* spec);

  std::string display_path_;
  SpecLoadOptions options_;
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
  // Input paths with where they were written, for check_input_files.
  std::vector<std::pair<Item, std::string>> input_paths_;
};

absl::Status SpecParser::ErrorStatus() {
  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return std::tie(a.line, a.column) <
                            std::tie(b.line, b.column);
                   });
  std::vector<std::string> lines;
  for (size_t i = 0; i < errors_.size() && i < kMaxErrorsShown; ++i) {
    lines.push_back(errors_[i].text);
  }
  if (errors_.size() > kMaxErrorsShown) {
    const Diagnostic& next = errors_[kMaxErrorsShown];
    lines.push_back(absl::StrCat(
        display_path_, ":", next.line, ":", next.column, ": ",
        errors_.size() - kMaxErrorsShown,
        " more errors not shown; fix the errors above and validate again"));
  }
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

void SpecParser::TypeError(const Item& item, absl::string_view expected) {
  const YAML::Node& node = item.node;
  switch (node.Type()) {
    case YAML::NodeType::Null:
      Error(item, absl::StrCat("has no value; expected ", expected));
      return;
    case YAML::NodeType::Sequence:
      Error(item, absl::StrCat("got a list; expected ", expected));
      return;
    case YAML::NodeType::Map:
      // An unquoted `{input}` is a YAML mapping with one key and no value.
      if (node.size() == 1 && node.begin()->first.IsScalar() &&
          node.begin()->second.IsNull()) {
        std::string key = Escape(node.begin()->first.Scalar());
        Error(item, absl::StrCat("got the mapping {", key,
                                 "} (YAML reads unquoted {...} as a mapping); "
                                 "expected ",
                                 expected, ", so quote it: \"{", key, "}\""));
        return;
      }
      Error(item, absl::StrCat("got a mapping; expected ", expected));
      return;
    default:
      Error(item, absl::StrCat("got ", Quote(node.Scalar()), "; expected ",
                               expected));
      return;
  }
}

// Walks the whole document without recursion, counting each node every time it
// is reached (an alias reached twice counts twice), and stops at kMaxSpecNodes.
// yaml-cpp shares aliased nodes and even builds cycles for `&a [*a]`, so this
// must run before any other walk.
bool SpecParser::CheckExpandedSize(const YAML::Node& root) {
  std::vector<std::pair<YAML::Node, Item>> tops;
  if (root.IsMap()) {
    for (auto it = root.begin(); it != root.end(); ++it) {
      std::string name = it->first.IsScalar() ? Escape(it->first.Scalar()) : "";
      tops.emplace_back(it->second, Item{it->first, it->first.Mark(), name});
    }
  } else {
    tops.emplace_back(root, Item{root, root.Mark(), ""});
  }
  int64_t count = 1;
  std::vector<YAML::Node> stack;
  for (const auto& [value, where] : tops) {
    count += 2;
    stack.assign(1, value);
    while (!stack.empty() && count <= kMaxSpecNodes) {
      YAML::Node node = stack.back();
      stack.pop_back();
      if (node.IsMap()) {
        for (auto it = node.begin(); it != node.end() && count <= kMaxSpecNodes;
             ++it) {
          count += 2;
          stack.push_back(it->first);
          stack.push_back(it->second);
        }
      } else if (node.IsSequence()) {
        for (auto it = node.begin(); it != node.end() && count <= kMaxSpecNodes;
             ++it) {
          count += 1;
          stack.push_back(*it);
        }
      }
    }
    if (count > kMaxSpecNodes) {
      Error(where,
            absl::StrCat("expands to more than ", kMaxSpecNodes,
                         " YAML nodes once aliases (*name) are followed, "
                         "which looks like an alias bomb; expected a "
                         "spec that does not repeat large anchored "
                         "values"));
      return false;
    }
  }
  return true;
}

std::optional<Mapping> SpecParser::ReadMapping(
    const Item& item, std::span<const absl::string_view> allowed,
    absl::string_view expected) {
  if (!item.node.IsMap()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  Mapping mapping(item.mark, item.path);
  std::map<std::string, int, std::less<>> first_line;
  std::string where =
      item.path.empty() ? "at the top level" : absl::StrCat("in ", item.path);
  // Keys and values are copied out: `it->` hands out a temporary pair.
  for (auto it = item.node.begin(); it != item.node.end(); ++it) {
    YAML::Node key = it->first;
    if (!key.IsScalar()) {
      Error(key.Mark(), item.path,
            absl::StrCat("a key is not a plain word; expected keys ", where,
                         " to be one of: ", absl::StrJoin(allowed, ", ")));
      continue;
    }
    std::string name = key.Scalar();
    std::string path = Child(item.path, name);
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      absl::string_view suggestion = Suggest(name, allowed);
      Error(key.Mark(), path,
            absl::StrCat("unknown key",
                         suggestion.empty() ? ""
                                            : absl::StrCat(" (did you mean ",
                                                           suggestion, "?)"),
                         "; expected one of the keys allowed ", where, ": ",
                         absl::StrJoin(allowed, ", ")));
      continue;
    }
    auto [previous, inserted] = first_line.emplace(name, key.Mark().line + 1);
    if (!inserted) {
      Error(key.Mark(), path,
            absl::StrCat("duplicate key (first set on line ", previous->second,
                         "); expected each key once, remove one of them"));
      continue;
    }
    YAML::Node value = it->second;
    // yaml-cpp marks an empty value at the next token, so point at the key
    // instead.
    YAML::Mark mark = value.IsNull() ? key.Mark() : value.Mark();
    mapping.Add(name, Item{value, mark, path});
  }
  return mapping;
}

std::optional<std::vector<Item>> SpecParser::ReadList(
    const Item& item, absl::string_view expected) {
  if (!item.node.IsSequence()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  std::vector<Item> items;
  size_t i = 0;
  for (auto it = item.node.begin(); it != item.node.end(); ++it, ++i) {
    YAML::Mark mark = it->IsNull() ? item.mark : it->Mark();
    items.push_back(Item{*it, mark, Index(item.path, i)});
  }
  return items;
}

const Item* SpecParser::Require(const Mapping& mapping, absl::string_view key,
                                absl::string_view hint) {
  const Item* item = mapping.Find(key);
  if (item == nullptr) {
    Error(mapping.mark(), Child(mapping.path(), key),
          absl::StrCat("missing; ", hint));
  }
  return item;
}

std::optional<std::string> SpecParser::ReadScalar(const Item& item,
                                                  absl::string_view expected) {
  if (!item.node.IsScalar()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  return item.node.Scalar();
}

std::optional<std::string> SpecParser::ReadString(const Item& item) {
  return ReadScalar(item, "a string");
}

std::optional<std::string> SpecParser::ReadNonEmptyString(
    const Item& item, absl::string_view expected) {
  std::optional<std::string> text = ReadScalar(item, expected);
  if (text && absl::StripAsciiWhitespace(*text).empty()) {
    Error(item, absl::StrCat("is empty; expected ", expected));
    return std::nullopt;
  }
  return text;
}

std::optional<int64_t> SpecParser::ReadInt(const Item& item,
                                           absl::string_view expected) {
  std::optional<std::string> text = ReadScalar(item, expected);
  if (!text) return std::nullopt;
  int64_t value = 0;
  if (!IsDecimalNumber(*text) ||
      text->find_first_of(".eE") != std::string::npos ||
      !absl::SimpleAtoi(*text, &value)) {
    Error(item, absl::StrCat(Quote(*text), " is not a whole number; expected ",
                             expected));
    return std::nullopt;
  }
  return value;
}

std::optional<double> SpecParser::ReadNumber(const Item& item,
                                             absl::string_view expected) {
  std::optional<std::string> text = ReadScalar(item, expected);
  if (!text) return std::nullopt;
  std::optional<double> value = ToDouble(*text);
  if (!value) {
    Error(item,
          absl::StrCat(Quote(*text), " is not a number; expected ", expected));
  }
  return value;
}

std::optional<bool> SpecParser::ReadBool(const Item& item) {
  std::optional<std::string> text = ReadScalar(item, "true or false");
  if (!text) return std::nullopt;
  if (*text == "true" || *text == "True" || *text == "TRUE") return true;
  if (*text == "false" || *text == "False" || *text == "FALSE") return false;
  Error(item, absl::StrCat(Quote(*text),
                           " is not a boolean; expected true or false"));
  return std::nullopt;
}

std::optional<absl::Duration> SpecParser::ReadDuration(const Item& item) {
  std::optional<std::string> text = ReadScalar(item, kDurationExpected);
  if (!text) return std::nullopt;
  absl::StatusOr<absl::Duration> d = ParseDuration(*text);
  if (!d.ok()) {
    Error(item, d.status().message());
    return std::nullopt;
  }
  return *d;
}

std::optional<double> SpecParser::ReadPercent(const Item& item) {
  std::optional<std::string> text = ReadScalar(item, kPercentExpected);
  if (!text) return std::nullopt;
  absl::StatusOr<double> p = ParsePercent(*text);
  if (!p.ok()) {
    Error(item, p.status().message());
    return std::nullopt;
  }
  return *p;
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
  if (item.node.IsScalar() && !argv_only) {
    command.shell = item.node.Scalar();
    if (absl::StripAsciiWhitespace(command.shell).empty()) {
      Error(item, absl::StrCat("is empty; expected ", expected));
      return std::nullopt;
    }
    return command;
  }
  if (!item.node.IsSequence()) {
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

std::optional<std::vector<std::string>> SpecParser::ReadStringList(
    const Item& item, absl::string_view expected) {
  std::optional<std::vector<Item>> items = ReadList(item, expected);
  if (!items) return std::nullopt;
  std::vector<std::string> out;
  bool ok = true;
  for (const Item& element : *items) {
    std::optional<std::string> text = ReadNonEmptyString(element, "a string");
    if (text) {
      out.push_back(*text);
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::map<std::string, std::string>> SpecParser::ReadStringMap(
    const Item& item, bool env_names) {
  absl::string_view expected =
      env_names ? "a mapping of variable names to strings, e.g. {MALLOC_CONF: "
                  "\"thp:always\"}"
                : "a mapping of strings to strings, e.g. {gpu: rtx3090}";
  if (!item.node.IsMap()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  std::map<std::string, std::string> out;
  bool ok = true;
  for (auto it = item.node.begin(); it != item.node.end(); ++it) {
    YAML::Node key = it->first;
    if (!key.IsScalar() || key.Scalar().empty()) {
      Error(
          key.Mark(), item.path,
          absl::StrCat("a key is not a non-empty string; expected ", expected));
      ok = false;
      continue;
    }
    std::string name = key.Scalar();
    std::string path = Child(item.path, name);
    if (env_names) {
      bool valid = !absl::ascii_isdigit(name.front()) &&
                   std::all_of(name.begin(), name.end(), [](char c) {
                     return absl::ascii_isalnum(c) || c == '_';
                   });
      if (!valid) {
        Error(key.Mark(), path,
              absl::StrCat(Quote(name),
                           " is not an environment variable name; expected "
                           "letters, digits and '_', not starting with a "
                           "digit"));
        ok = false;
        continue;
      }
    }
    Item value{it->second, it->second.IsNull() ? key.Mark() : it->second.Mark(),
               path};
    std::optional<std::string> text =
        ReadScalar(value, "a string (\"\" for an empty value)");
    if (!text) {
      ok = false;
      continue;
    }
    if (!out.emplace(name, *text).second) {
      Error(key.Mark(), path,
            "duplicate key; expected each key once, remove one of them");
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

void SpecParser::ReadTop(const Mapping& top, ExperimentSpec* spec) {
  if (const Item* item =
          Require(top, "apiVersion", "add apiVersion: benchfleet/v1")) {
    if (std::optional<std::string> v = ReadString(*item)) {
      if (*v == kApiVersion) {
        spec->api_version = *v;
      } else {
        Error(*item, absl::StrCat(Quote(*v),
                                  " is not a supported apiVersion; expected ",
                                  kApiVersion));
      }
    }
  }
  if (const Item* item = Require(top, "kind", "add kind: Experiment")) {
    if (std::optional<std::string> v = ReadString(*item)) {
      if (*v == kKind) {
        spec->kind = *v;
      } else {
        Error(*item,
              absl::StrCat(Quote(*v), " is not a supported kind; expected ",
                           kKind));
      }
    }
  }
  if (const Item* item =
          Require(top, "name",
                  "add name: with 1 to 63 characters from a-z, 0-9 and '-'")) {
    if (auto v = ReadName(*item, kExperimentName)) spec->name = *v;
  }
  if (const Item* item = top.Find("campaign")) {
    if (auto v = ReadName(*item, kExperimentName)) spec->campaign = *v;
  }
  if (const Item* item = top.Find("idea")) {
    if (auto v = ReadName(*item, kExperimentName)) spec->idea = *v;
  }
  if (const Item* item = top.Find("hypothesis")) {
    if (auto v = ReadString(*item)) spec->hypothesis = *v;
  }
  if (const Item* item = top.Find("requires")) {
    if (auto requires_map = ReadMapping(*item, kRequiresKeys,
                                        "a mapping such as {labels: {gpu: "
                                        "rtx3090}}")) {
      if (const Item* labels = requires_map->Find("labels")) {
        if (auto v = ReadStringMap(*labels, /*env_names=*/false)) {
          spec->required_labels = std::move(*v);
        }
      }
    }
  }
  if (const Item* item = top.Find("source")) {
    if (auto source = ReadMapping(
            *item, kSourceKeys, "a mapping such as {repo: /srv/git/app.git}")) {
      if (const Item* repo = Require(
              *source, "repo",
              "add repo: <path or URL of the git repository>, or remove "
              "source to run in the work directory")) {
        if (auto v =
                ReadNonEmptyString(*repo, "a git repository path or URL")) {
          spec->source_repo = *v;
        }
      }
    }
  }
  if (const Item* item = top.Find("setup")) {
    spec->setup = ReadCommand(*item, /*argv_only=*/false);
  }
  if (const Item* item = Require(top, "benchmark",
                                 "add a benchmark: section with command (or "
                                 "argv) and inputs")) {
    ReadBenchmark(*item, spec);
  }
  if (const Item* item = top.Find("correctness")) {
    ReadCorrectness(*item, spec);
  }
  if (const Item* item = Require(top, "variants",
                                 "add variants: with at least 2 entries, the "
                                 "baseline first")) {
    ReadVariants(*item, spec);
  }
  if (const Item* item = top.Find("verdict")) {
    ReadVerdict(*item, &spec->verdict);
  }
  if (const Item* item = top.Find("gates")) {
    ReadGates(*item, &spec->gates);
  }
  if (const Item* item = top.Find("notify")) {
    if (auto v = ReadStringList(
            *item, "a list of notification targets, e.g. [team-chat]")) {
      spec->notify = std::move(*v);
    }
  }
  ResolveWorkdir(top, spec);
}

void SpecParser::ReadBenchmark(const Item& item, ExperimentSpec* spec) {
  std::optional<Mapping> bench = ReadMapping(
      item, kBenchmarkKeys,
      "a mapping with command (or argv), inputs, runs and the other benchmark "
      "settings");
  if (!bench) return;
  if (bench->Find("command") == nullptr && bench->Find("argv") == nullptr) {
    Error(bench->mark(), Child(bench->path(), "command"),
          "missing; set benchmark.command (a shell string) or benchmark.argv "
          "(a list, run without a shell)");
  } else if (auto command = ReadCommandKeys(*bench)) {
    spec->command = std::move(*command);
  }

  if (const Item* inputs =
          Require(*bench, "inputs",
                  "add at least one input, e.g. - {name: small, path: "
                  "inputs/small.bin}")) {
    ReadInputs(*inputs, spec);
  }
  if (const Item* warmup = bench->Find("warmup")) {
    std::string expected = absl::StrCat("an integer from 0 to ", kMaxWarmup);
    if (auto v = ReadInt(*warmup, expected)) {
      if (*v < 0 || *v > kMaxWarmup) {
        Error(*warmup,
              absl::StrCat(*v, " is out of range; expected ", expected));
      } else {
        spec->warmup = static_cast<int>(*v);
      }
    }
  }
  bool allow_underpowered = false;
  if (const Item* allow = bench->Find("allow_underpowered")) {
    if (auto v = ReadBool(*allow)) allow_underpowered = *v;
  }
  spec->allow_underpowered = allow_underpowered;

  std::optional<int64_t> runs;
  if (const Item* runs_item = bench->Find("runs")) {
    runs = ReadInt(*runs_item, absl::StrCat("an integer from ", kMinRuns,
                                            " to ", kMaxRuns));
    if (runs && *runs > kMaxRuns) {
      Error(*runs_item,
            absl::StrCat(*runs, " runs is above the maximum of ", kMaxRuns,
                         " per input; expected at most ", kMaxRuns));
      runs.reset();
    } else if (runs && *runs < kMinRuns && !allow_underpowered) {
      Error(*runs_item,
            absl::StrCat(*runs, " runs is below the minimum of ", kMinRuns,
                         " per input; raise runs to at least ", kMinRuns,
                         " or set allow_underpowered: true"));
      runs.reset();
    } else if (runs && *runs < kMinUnderpoweredRuns) {
      Error(*runs_item,
            absl::StrCat(*runs, " runs is below ", kMinUnderpoweredRuns,
                         ", too few to measure variation even with "
                         "allow_underpowered; raise runs to at least ",
                         kMinUnderpoweredRuns));
      runs.reset();
    } else if (runs && *runs < kMinRuns) {
      Warn(*runs_item,
           absl::StrCat(*runs, " runs per input is below the minimum of ",
                        kMinRuns,
                        " (allowed by allow_underpowered: true); expect weaker "
                        "verdicts, raise runs to at least ",
                        kMinRuns, " for a full-strength result"));
    }
    if (runs) spec->runs = static_cast<int>(*runs);
  }
  spec->max_runs = std::max(20, spec->runs);
  if (const Item* max_runs = bench->Find("max_runs")) {
    std::string expected =
        absl::StrCat("an integer from runs (", spec->runs, ") to ", kMaxRuns);
    if (auto v = ReadInt(*max_runs, expected)) {
      if (*v > kMaxRuns) {
        Error(*max_runs, absl::StrCat(*v, " is above the maximum of ", kMaxRuns,
                                      "; expected ", expected));
      } else if (*v < spec->runs) {
        Error(*max_runs,
              absl::StrCat(*v, " is below runs (", spec->runs,
                           "); set max_runs to at least ", spec->runs,
                           " or remove it (default: the larger of 20 and "
                           "runs)"));
      } else {
        spec->max_runs = static_cast<int>(*v);
      }
    }
  }
  if (const Item* order = bench->Find("order")) {
    if (auto v = ReadString(*order)) {
      if (*v == "interleaved") {
        spec->order = RunOrder::kInterleaved;
      } else if (*v == "sequential") {
        spec->order = RunOrder::kSequential;
      } else {
        Error(*order, absl::StrCat(Quote(*v),
                                   " is not a run order; expected interleaved "
                                   "or sequential"));
      }
    }
  }
  if (const Item* timeout = bench->Find("timeout")) {
    if (auto v = ReadDuration(*timeout)) {
      if (*v <= absl::ZeroDuration()) {
        Error(*timeout, absl::StrCat(Quote(timeout->node.Scalar()),
                                     " is zero; expected a cap per run above "
                                     "zero, e.g. 30m"));
      } else {
        spec->timeout = *v;
      }
    }
  }
  if (const Item* seed = bench->Find("seed")) {
    constexpr absl::string_view kSeedExpected =
        "a whole number from 0 to 18446744073709551615";
    if (auto text = ReadScalar(*seed, kSeedExpected)) {
      uint64_t value = 0;
      if (text->empty() ||
          !std::all_of(text->begin(), text->end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(*text, &value)) {
        Error(*seed, absl::StrCat(Quote(*text),
                                  " is not an unsigned whole number; expected ",
                                  kSeedExpected));
      } else {
        spec->seed = value;
      }
    }
  }
  if (const Item* cpus = bench->Find("cpus")) {
    constexpr absl::string_view kCpusExpected =
        "a list of CPU numbers to pin every run to, e.g. [2, 3]";
    if (std::optional<std::vector<Item>> list =
            ReadList(*cpus, kCpusExpected)) {
      std::set<int> seen;
      for (const Item& c : *list) {
        std::optional<int64_t> v = ReadInt(c, kCpusExpected);
        if (!v) continue;
        if (*v < 0 || *v > 4095) {
          Error(c, absl::StrCat(*v, " is not a CPU number; expected ",
                                kCpusExpected));
        } else if (!seen.insert(static_cast<int>(*v)).second) {
          Error(c, absl::StrCat("CPU ", *v,
                                " is listed twice; list each CPU once"));
        } else {
          spec->cpus.push_back(static_cast<int>(*v));
        }
      }
      if (list->empty())
        Error(*cpus, absl::StrCat("is empty; expected ", kCpusExpected));
    }
  }
  if (const Item* metrics = bench->Find("metrics")) {
    ReadMetrics(*metrics, spec);
  }
}

void SpecParser::ReadInputs(const Item& item, ExperimentSpec* spec) {
  std::optional<std::vector<Item>> inputs = ReadList(
      item, "a list of inputs such as - {name: small, path: inputs/small.bin}");
  if (!inputs) return;
  if (inputs->empty()) {
    Error(item,
          "is empty; expected at least one input, e.g. - {name: small, path: "
          "inputs/small.bin}");
    return;
  }
  std::map<std::string, std::string>
      first_use;  // name -> path of its first use
  for (const Item& input_item : *inputs) {
    std::optional<Mapping> input = ReadMapping(
        input_item, kInputKeys,
        "a mapping such as {name: small, path: inputs/small.bin, weight: 1}");
    if (!input) continue;
    InputSpec parsed;
    bool ok = true;
    if (const Item* name = Require(
            *input, "name", "add name: with a-z, 0-9 and '_', '.', '-'")) {
      if (auto v = ReadName(*name, kInputName)) {
        auto [previous, inserted] = first_use.emplace(*v, name->path);
        if (!inserted) {
          Error(*name, absl::StrCat(Quote(*v), " is already the name of ",
                                    previous->second,
                                    "; expected a unique name for each input"));
          ok = false;
        }
        parsed.name = *v;
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const Item* path = Require(
            *input, "path",
            "add path: with the input file, relative to the work directory")) {
      if (auto v = ReadRelativePath(*path)) {
        parsed.path = *v;
        input_paths_.emplace_back(*path, *v);
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const Item* weight = input->Find("weight")) {
      constexpr absl::string_view kExpected = "a number above 0, e.g. 1";
      if (auto v = ReadNumber(*weight, kExpected)) {
        if (*v <= 0) {
          Error(*weight, absl::StrCat(Quote(weight->node.Scalar()),
                                      " is not above 0; expected ", kExpected));
          ok = false;
        } else {
          parsed.weight = *v;
        }
      } else {
        ok = false;
      }
    }
    if (ok) spec->inputs.push_back(std::move(parsed));
  }
  if (inputs->size() < static_cast<size_t>(kRecommendedInputs)) {
    Warn(item, absl::StrCat("has ", inputs->size(),
                            inputs->size() == 1 ? " input" : " inputs",
                            "; at least ", kRecommendedInputs,
                            " are recommended so that no single input decides "
                            "the verdict"));
  }
}

void SpecParser::ReadMetrics(const Item& item, ExperimentSpec* spec) {
  std::optional<Mapping> metrics =
      ReadMapping(item, kMetricsKeys,
                  "a mapping such as {primary: wall_time, custom: [...]}");
  if (!metrics) return;
  bool custom_ok = true;
  if (const Item* custom = metrics->Find("custom")) {
    std::optional<std::vector<Item>> list = ReadList(
        *custom,
        "a list of metrics such as - {name: mgas_per_s, regex: 'throughput: "
        "([0-9.]+)', better: higher}");
    if (!list) custom_ok = false;
    std::map<std::string, std::string> first_use;
    for (const Item& metric_item : list ? *list : std::vector<Item>{}) {
      std::optional<Mapping> metric = ReadMapping(
          metric_item, kCustomMetricKeys,
          "a mapping such as {name: mgas_per_s, regex: 'throughput: "
          "([0-9.]+)', better: higher}");
      if (!metric) {
        custom_ok = false;
        continue;
      }
      CustomMetricSpec parsed;
      bool ok = true;
      if (const Item* name =
              Require(*metric, "name", "add name: with a-z, 0-9 and '_'")) {
        std::optional<std::string> v = ReadName(*name, kMetricName);
        if (v &&
            std::find(std::begin(kBuiltinMetrics), std::end(kBuiltinMetrics),
                      *v) != std::end(kBuiltinMetrics)) {
          Error(*name, absl::StrCat(Quote(*v),
                                    " is a built-in metric; expected a new "
                                    "name for a custom metric"));
          v.reset();
        }
        if (v) {
          auto [previous, inserted] = first_use.emplace(*v, name->path);
          if (!inserted) {
            Error(*name,
                  absl::StrCat(Quote(*v), " is already the name of ",
                               previous->second,
                               "; expected a unique name for each metric"));
            v.reset();
          }
        }
        if (v) parsed.name = *v;
        ok = ok && v.has_value();
      } else {
        ok = false;
      }
      if (const Item* regex = Require(
              *metric, "regex",
              "add regex: with one capture group around the value, e.g. "
              "'throughput: ([0-9.]+)'")) {
        constexpr absl::string_view kExpected =
            "an RE2 regular expression (no backreferences or lookaround) with "
            "exactly one capture group around the value, e.g. "
            "'throughput: ([0-9.]+)'";
        std::optional<std::string> v = ReadNonEmptyString(*regex, kExpected);
        if (v) {
          const std::string why =
              v->size() > kMaxRegexLength
                  ? absl::StrCat("is ", v->size(),
                                 " characters long; expected at most ",
                                 kMaxRegexLength)
                  : MetricRegexProblem(*v, kExpected);
          if (!why.empty()) {
            Error(*regex, why);
            v.reset();
          }
        }
        if (v) parsed.regex = *v;
        ok = ok && v.has_value();
      } else {
        ok = false;
      }
      if (const Item* better = metric->Find("better")) {
        std::optional<std::string> v = ReadString(*better);
        if (v && *v == "lower") {
          parsed.better = Better::kLower;
        } else if (v && *v == "higher") {
          parsed.better = Better::kHigher;
        } else {
          if (v) {
            Error(*better, absl::StrCat(Quote(*v),
                                        " is not a direction; expected lower "
                                        "or higher"));
          }
          ok = false;
        }
      }
      if (ok) {
        spec->custom_metrics.push_back(std::move(parsed));
      } else {
        custom_ok = false;
      }
    }
  }
  if (const Item* primary = metrics->Find("primary")) {
    std::vector<std::string> known(std::begin(kBuiltinMetrics),
                                   std::end(kBuiltinMetrics));
    for (const CustomMetricSpec& m : spec->custom_metrics)
      known.push_back(m.name);
    std::optional<std::string> v = ReadScalar(
        *primary, absl::StrCat("one of ", absl::StrJoin(known, ", ")));
    if (v && std::find(known.begin(), known.end(), *v) != known.end()) {
      spec->primary_metric = *v;
    } else if (v && custom_ok) {
      // When a custom metric failed to parse, its name may be the one meant
      // here; its own error says what to fix.
      Error(*primary,
            absl::StrCat(Quote(*v),
                         " is neither a built-in nor a declared custom metric; "
                         "expected one of ",
                         absl::StrJoin(known, ", "),
                         ", or declare it under benchmark.metrics.custom"));
    }
  }
}

void SpecParser::ReadCorrectness(const Item& item, ExperimentSpec* spec) {
  std::optional<Mapping> correctness =
      ReadMapping(item, kCorrectnessKeys,
                  "a mapping such as {command: make test, compare: stdout}");
  if (!correctness) return;
  spec->correctness_command = ReadCommandKeys(*correctness);
  if (const Item* compare = correctness->Find("compare")) {
    constexpr absl::string_view kExpected = "stdout, none or file:<path>";
    std::optional<std::string> v = ReadScalar(*compare, kExpected);
    if (!v) return;
    if (*v == "stdout") {
      spec->compare = CompareMode::kStdout;
    } else if (*v == "none") {
      spec->compare = CompareMode::kNone;
    } else if (absl::StartsWith(*v, "file:")) {
      Item path_item = *compare;
      path_item.node = YAML::Node(v->substr(5));
      if (auto path = ReadRelativePath(path_item)) {
        spec->compare = CompareMode::kFile;
        spec->compare_path = *path;
      }
    } else {
      Error(*compare,
            absl::StrCat(Quote(*v), " is not a compare mode; expected ",
                         kExpected));
    }
  }
}

void SpecParser::ReadVariants(const Item& item, ExperimentSpec* spec) {
  std::optional<std::vector<Item>> variants =
      ReadList(item,
               "a list of variants such as - {name: baseline, ref: main}, the "
               "baseline first");
  if (!variants) return;
  if (variants->size() < 2) {
    Error(item, absl::StrCat("has ", variants->size(),
                             variants->size() == 1 ? " variant" : " variants",
                             "; expected at least 2: the baseline first, then "
                             "the candidates to compare with it"));
  }
  std::map<std::string, std::string>
      first_use;  // name -> path of its first use
  // combines may name variants listed later, so they are checked after the
  // loop.
  std::vector<std::pair<size_t, std::vector<Item>>> combines_items;
  bool all_names_ok = true;
  for (const Item& variant_item : *variants) {
    std::optional<Mapping> variant = ReadMapping(
        variant_item, kVariantKeys,
        "a mapping such as {name: hash-cache, ref: bench/001-hash-cache}");
    if (!variant) {
      all_names_ok = false;
      continue;
    }
    // A variant with a bad field is still kept so later checks see its name;
    // the spec is refused anyway.
    VariantSpec parsed;
    if (const Item* name = Require(*variant, "name",
                                   "add name: with a-z, 0-9 and '+', '_', '.', "
                                   "'-'")) {
      if (auto v = ReadName(*name, kVariantName)) {
        auto [previous, inserted] = first_use.emplace(*v, name->path);
        if (!inserted) {
          Error(*name,
                absl::StrCat(Quote(*v), " is already the name of ",
                             previous->second,
                             "; expected a unique name for each variant"));
        }
        parsed.name = *v;
      } else {
        all_names_ok = false;
      }
    } else {
      all_names_ok = false;
    }
    if (const Item* ref = variant->Find("ref")) {
      if (auto v = ReadString(*ref)) parsed.ref = *v;
    }
    std::vector<Item> combines;
    if (const Item* c = variant->Find("combines")) {
      if (auto list =
              ReadList(*c,
                       "a list of other variant names, e.g. [hash-cache, "
                       "zero-init]")) {
        for (const Item& element : *list) {
          if (auto v = ReadNonEmptyString(element, "a variant name")) {
            parsed.combines.push_back(*v);
            combines.push_back(element);
          }
        }
      }
    }
    if (const Item* env = variant->Find("env")) {
      if (auto v = ReadStringMap(*env, /*env_names=*/true)) {
        parsed.env = std::move(*v);
      }
    }
    if (variant->Find("command") != nullptr ||
        variant->Find("argv") != nullptr) {
      parsed.command = ReadCommandKeys(*variant);
    }
    if (const Item* setup = variant->Find("setup")) {
      parsed.setup = ReadCommand(*setup, /*argv_only=*/false);
    }
    combines_items.emplace_back(spec->variants.size(), std::move(combines));
    spec->variants.push_back(std::move(parsed));
  }
  for (const auto& [index, items] : combines_items) {
    const VariantSpec& variant = spec->variants[index];
    for (const Item& element : items) {
      std::string name = element.node.Scalar();
      if (name == variant.name) {
        Error(element, absl::StrCat(Quote(name),
                                    " is this variant itself; expected the "
                                    "names of other variants"));
      } else if (!first_use.contains(name) && all_names_ok) {
        std::vector<std::string> others;
        for (const VariantSpec& v : spec->variants) {
          if (v.name != variant.name) others.push_back(v.name);
        }
        Error(element,
              absl::StrCat(Quote(name),
                           " is not a variant in this spec; expected one of: ",
                           absl::StrJoin(others, ", ")));
      }
    }
  }
}

void SpecParser::ReadVerdict(const Item& item, VerdictSpec* verdict) {
  std::optional<Mapping> mapping = ReadMapping(
      item, kVerdictKeys,
      "a mapping such as {profile: first-pass, alpha: 0.05, max_cv: 10%}");
  if (!mapping) return;
  if (const Item* profile = mapping->Find("profile")) {
    if (auto v = ReadString(*profile)) {
      if (*v == "first-pass") {
        verdict->profile = DecisionProfile::kFirstPass;
      } else if (*v == "optimized") {
        verdict->profile = DecisionProfile::kOptimized;
      } else {
        Error(*profile, absl::StrCat(Quote(*v),
                                     " is not a decision profile; expected "
                                     "first-pass or optimized"));
      }
    }
  }
  if (const Item* alpha = mapping->Find("alpha")) {
    constexpr absl::string_view kExpected =
        "a number above 0 and at most 0.5, e.g. 0.05";
    if (auto v = ReadNumber(*alpha, kExpected)) {
      if (*v <= 0 || *v > 0.5) {
        Error(*alpha, absl::StrCat(Quote(alpha->node.Scalar()),
                                   " is out of range; expected ", kExpected));
      } else {
        verdict->alpha = *v;
      }
    }
  }
  if (const Item* max_cv = mapping->Find("max_cv")) {
    if (auto v = ReadPercent(*max_cv)) {
      if (*v <= 0 || *v > 10) {
        Error(*max_cv,
              absl::StrCat(Quote(max_cv->node.Scalar()),
                           " is out of range; expected a percentage above 0% "
                           "and at most 1000%, e.g. 10%"));
      } else {
        verdict->max_cv = *v;
      }
    }
  }
  if (const Item* kill = mapping->Find("kill_factor")) {
    constexpr absl::string_view kExpected = "a number above 1, e.g. 1.10";
    if (auto v = ReadNumber(*kill, kExpected)) {
      if (*v <= 1) {
        Error(*kill, absl::StrCat(Quote(kill->node.Scalar()),
                                  " is not above 1; expected ", kExpected));
      } else {
        verdict->kill_factor = *v;
      }
    }
  }
  if (const Item* regression = mapping->Find("input_regression")) {
    if (auto v = ReadPercent(*regression)) {
      if (*v > 10) {
        Error(*regression,
              absl::StrCat(Quote(regression->node.Scalar()),
                           " is out of range; expected a percentage from 0% "
                           "to 1000%, e.g. 5%"));
      } else {
        verdict->input_regression = *v;
      }
    }
  }
}

void SpecParser::ReadGates(const Item& item, GateSpec* gates) {
  std::optional<Mapping> mapping = ReadMapping(
      item, kGateKeys,
      "a mapping such as {cooldown: 60s, max_gpu_temp_c: 50, max_load: 0.3}");
  if (!mapping) return;
  if (const Item* cooldown = mapping->Find("cooldown")) {
    if (auto v = ReadDuration(*cooldown)) gates->cooldown = *v;
  }
  if (const Item* max_wait = mapping->Find("max_wait")) {
    if (auto v = ReadDuration(*max_wait)) gates->max_wait = *v;
  }
  auto read_temp = [this](const Item* temp, double* out) {
    if (temp == nullptr) return;
    constexpr absl::string_view kExpected =
        "degrees Celsius above 0 and at most 150, e.g. 50";
    if (auto v = ReadNumber(*temp, kExpected)) {
      if (*v <= 0 || *v > 150) {
        Error(*temp, absl::StrCat(Quote(temp->node.Scalar()),
                                  " is out of range; expected ", kExpected));
      } else {
        *out = *v;
      }
    }
  };
  read_temp(mapping->Find("max_gpu_temp_c"), &gates->max_gpu_temp_c);
  read_temp(mapping->Find("max_cpu_temp_c"), &gates->max_cpu_temp_c);
  if (const Item* load = mapping->Find("max_load")) {
    constexpr absl::string_view kExpected =
        "a load average of 0 or more, e.g. 0.3";
    if (auto v = ReadNumber(*load, kExpected)) {
      if (*v < 0) {
        Error(*load, absl::StrCat(Quote(load->node.Scalar()),
                                  " is negative; expected ", kExpected));
      } else {
        gates->max_load = *v;
      }
    }
  }
  if (const Item* cpu = mapping->Find("max_competing_cpu")) {
    constexpr absl::string_view kExpected =
        "CPU cores (0 or more, e.g. 0.25) that other processes may use";
    if (auto v = ReadNumber(*cpu, kExpected)) {
      if (*v < 0) {
        Error(*cpu, absl::StrCat(Quote(cpu->node.Scalar()),
                                 " is negative; expected ", kExpected));
      } else {
        gates->max_competing_cpu = *v;
      }
    }
  }
}

void SpecParser::ResolveWorkdir(const Mapping& top, ExperimentSpec* spec) {
  const Item* workdir = top.Find("workdir");
  fs::path dir(options_.base_dir);
  if (workdir != nullptr) {
    std::optional<std::string> text = ReadNonEmptyString(
        *workdir, "a directory, absolute or relative to the spec file");
    if (!text) return;
    dir /= *text;  // an absolute workdir replaces the base
  }
  std::string normal = dir.lexically_normal().generic_string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  spec->workdir = normal;

  // With source, commands and inputs live in a checkout that does not exist
  // yet.
  if (!options_.check_input_files || !spec->source_repo.empty()) return;
  std::error_code ec;
  if (!fs::is_directory(spec->workdir, ec)) {
    Item where =
        workdir != nullptr ? *workdir : Item{{}, top.mark(), "workdir"};
    Error(where, absl::StrCat("\"", spec->workdir, "\"",
                              " is not a directory on this host; expected an "
                              "existing directory, create it or fix workdir"));
    return;
  }
  for (const auto& [item, path] : input_paths_) {
    fs::path full = fs::path(spec->workdir) / path;
    if (!fs::is_regular_file(full, ec)) {
      Error(item,
            absl::StrCat(Quote(path), " does not exist in ", spec->workdir,
                         "; expected an existing file, create it or fix "
                         "the path"));
    }
  }
}

absl::StatusOr<ExperimentSpec> SpecParser::Parse(absl::string_view yaml) {
  ExperimentSpec spec;
  spec.source_path = display_path_;
  if (yaml.size() > kMaxSpecBytes) {
    Error(YAML::Mark(), "",
          absl::StrCat("the spec is larger than ", kMaxSpecBytes,
                       " bytes (1 MiB); expected a smaller spec, keep data in "
                       "input files"));
    return ErrorStatus();
  }
  spec.source_text = std::string(yaml);

  // yaml-cpp 0.7's LoadAll never returns on a stray ',' at document level: the
  // parser emits an empty document without consuming the token, forever
  // (jbeder/yaml-cpp#1040, fixed after 0.7). So documents are counted here, at
  // most two, and a document that starts where the previous one did is a syntax
  // error; the tree then comes from Load.
  std::vector<YAML::Mark> document_starts;
  YAML::Node root;
  try {
    std::istringstream stream(spec.source_text);
    YAML::Parser parser(stream);
    DocumentStarts handler(&document_starts);
    while (document_starts.size() < 2 && parser.HandleNextDocument(handler)) {
    }
    if (document_starts.size() == 2 &&
        document_starts[1].pos == document_starts[0].pos) {
      const YAML::Mark& at = document_starts[0];
      std::string token =
          at.pos >= 0 && static_cast<size_t>(at.pos) < yaml.size()
              ? QuoteChar(yaml[at.pos])
              : "token";
      Error(at, "",
            absl::StrCat("invalid YAML: unexpected ", token,
                         "; fix the YAML syntax at or before this point "
                         "(brackets, quotes, indentation)"));
      return ErrorStatus();
    }
    if (document_starts.size() > 1) {
      Error(document_starts[1], "",
            "the file holds more than one YAML document; expected exactly "
            "one, remove the extra --- sections");
      return ErrorStatus();
    }
    if (!document_starts.empty()) root = YAML::Load(spec.source_text);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp 0.7 words this as "bad file".
    Error(e.mark, "",
          absl::StrCat("invalid YAML: nested more than ", e.depth(),
                       " levels deep; expected a spec nested a few levels"));
    return ErrorStatus();
  } catch (const YAML::ParserException& e) {
    Error(e.mark, "",
          absl::StrCat("invalid YAML: ", e.msg,
                       "; fix the YAML syntax at or before this point "
                       "(brackets, quotes, indentation)"));
    return ErrorStatus();
  } catch (const YAML::Exception& e) {
    Error(e.mark, "", absl::StrCat("invalid YAML: ", e.msg));
    return ErrorStatus();
  }
  if (!root.IsDefined() || root.IsNull()) {
    Error(YAML::Mark(), "",
          "the spec is empty; expected a mapping that starts with apiVersion: "
          "benchfleet/v1");
    return ErrorStatus();
  }
  try {
    if (!CheckExpandedSize(root)) return ErrorStatus();
    Item root_item{root, root.Mark(), ""};
    if (!root.IsMap()) {
      TypeError(root_item,
                "a mapping with apiVersion, kind, name, benchmark and variants "
                "at the top level");
      return ErrorStatus();
    }
    std::optional<Mapping> top = ReadMapping(root_item, kTopKeys, "");
    if (top) ReadTop(*top, &spec);
  } catch (const YAML::Exception& e) {
    // The walk only reads what it checked, so this is a loader bug; still an
    // error, not a crash.
    Error(e.mark, "", absl::StrCat("could not read the spec: ", e.what()));
  }
  if (!errors_.empty()) return ErrorStatus();
  std::stable_sort(warnings_.begin(), warnings_.end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return std::tie(a.line, a.column) <
                            std::tie(b.line, b.column);
                   });
  for (Diagnostic& w : warnings_) spec.warnings.push_back(std::move(w.text));
  return spec;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDuration(std::string_view std_text) {
  absl::string_view text(std_text.data(), std_text.size());
  auto not_a_duration = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        Quote(text), " is not a duration; expected ", kDurationExpected));
  };
  if (text.empty()) return not_a_duration();
  if (text.front() == '-') {
    return absl::InvalidArgumentError(absl::StrCat(
        Quote(text),
        " is negative; expected a duration of zero or more, e.g. 60s"));
  }
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() &&
           (absl::ascii_isdigit(text[i]) || text[i] == '.')) {
      ++i;
    }
    absl::string_view number = text.substr(start, i - start);
    std::optional<double> value;
    // Nine integer digits are far beyond any sensible duration and safe from
    // overflow.
    if (number.find('e') == absl::string_view::npos &&
        number.substr(0, number.find('.')).size() <= 9) {
      value = ToDouble(number);
    }
    if (!value) return not_a_duration();
    if (i == text.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Quote(text), " has no unit; expected ", kDurationExpected));
    }
    absl::string_view rest = text.substr(i);
    if (absl::StartsWith(rest, "ms")) {
      total += absl::Milliseconds(*value);
      i += 2;
    } else if (absl::StartsWith(rest, "s")) {
      total += absl::Seconds(*value);
      i += 1;
    } else if (absl::StartsWith(rest, "m")) {
      total += absl::Minutes(*value);
      i += 1;
    } else if (absl::StartsWith(rest, "h")) {
      total += absl::Hours(*value);
      i += 1;
    } else {
      return not_a_duration();
    }
  }
  return total;
}

absl::StatusOr<double> ParsePercent(std::string_view std_text) {
  absl::string_view text(std_text.data(), std_text.size());
  bool percent = !text.empty() && text.back() == '%';
  absl::string_view number = percent ? text.substr(0, text.size() - 1) : text;
  std::optional<double> value = ToDouble(number);
  if (!value) {
    return absl::InvalidArgumentError(absl::StrCat(
        Quote(text), " is not a percentage; expected ", kPercentExpected));
  }
  if (*value < 0 || std::signbit(*value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(text),
                     " is negative; expected a percentage of 0% or more, e.g. "
                     "10%"));
  }
  return percent ? *value / 100 : *value;
}

absl::StatusOr<ExperimentSpec> ParseSpec(std::string_view yaml,
                                         const std::string& display_path,
                                         const SpecLoadOptions& options) {
  if (!fs::path(options.base_dir).is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ParseSpec for ", display_path, ": base_dir \"", options.base_dir, "\"",
        " is not absolute; pass the absolute directory of the spec file"));
  }
  return SpecParser(display_path, options)
      .Parse(absl::string_view(yaml.data(), yaml.size()));
}

absl::StatusOr<ExperimentSpec> LoadSpecFile(const std::string& path,
                                            const SpecLoadOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read spec file \"", path,
        "\": it is a directory; pass the path of the spec's .yaml file"));
  }
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read spec file \"", path, "\": ", std::strerror(errno),
        "; check the path and permissions"));
  }
  // Read one byte past the limit so an oversized file is refused without
  // reading it all.
  std::string text(kMaxSpecBytes + 1, '\0');
  size_t size = std::fread(text.data(), 1, text.size(), file);
  bool failed = std::ferror(file) != 0;
  int read_errno = errno;
  std::fclose(file);
  if (failed) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read spec file \"", path, "\": ", std::strerror(read_errno),
        "; check the path and permissions"));
  }
  text.resize(size);

  SpecLoadOptions resolved = options;
  if (resolved.base_dir.empty()) {
    resolved.base_dir = fs::absolute(fs::path(path), ec).parent_path().string();
  } else {
    resolved.base_dir = fs::absolute(fs::path(resolved.base_dir), ec).string();
  }
  if (ec) {
    return absl::NotFoundError(absl::StrCat(
        "cannot resolve the directory of \"", path, "\": ", ec.message()));
  }
  return SpecParser(path, std::move(resolved)).Parse(text);
}

}  // namespace benchfleet
