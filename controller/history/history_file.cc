#include "controller/history/history_file.h"

#include <openssl/sha.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/yaml/located_reader.h"
#include "common/yaml/located_yaml.h"
#include "common/yaml/yaml_values.h"
#include "controller/history/history.h"

namespace benchfleet {
namespace {

constexpr char kApiVersion[] = "benchfleet/v1";
constexpr char kKind[] = "History";
constexpr char kBinaryTag[] = "tag:yaml.org,2002:binary";
constexpr char kTimeFormat[] = "%Y-%m-%dT%H:%M:%E6SZ";

// ---- Writing ----

// The code point at `i` of valid UTF-8 `s` and its length; {-1, 1} when the
// bytes there are not valid UTF-8 (overlong forms and surrogates included).
std::pair<int32_t, size_t> DecodeUtf8(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return {b0, 1};
  size_t len = 0;
  int32_t cp = 0;
  int32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {-1, 1};
  }
  if (i + len > s.size()) return {-1, 1};
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return {-1, 1};
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return {-1, 1};
  }
  return {cp, len};
}

bool IsUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto [cp, len] = DecodeUtf8(s, i);
    if (cp < 0) return false;
    i += len;
  }
  return true;
}

// A YAML scalar that reads back as exactly `s`: double-quoted with escapes
// for everything YAML does not print verbatim, or base64 for non-UTF-8 text.
std::string Quote(std::string_view s) {
  if (!IsUtf8(s)) {
    return absl::StrCat("!!binary \"", yaml::EncodeBase64(s), "\"");
  }
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    auto [cp, len] = DecodeUtf8(s, i);
    if (cp == '"') {
      out += "\\\"";
    } else if (cp == '\\') {
      out += "\\\\";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      out += absl::StrFormat("\\x%02x", cp);
    } else if (cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF) {
      out += absl::StrFormat("\\u%04x", cp);
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  out += "\"";
  return out;
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : absl::StrCat(v);
}

std::string FormatTimestamp(absl::Time t) {
  return Quote(absl::FormatTime(kTimeFormat, t, absl::UTCTimeZone()));
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

void WriteEntry(const HistoryEntry& entry, std::string& out) {
  const ExperimentRecord& e = entry.experiment;
  const AttemptRecord& a = entry.attempt;
  const auto line = [&](const std::string& indent, const std::string& key,
                        const std::string& value) {
    absl::StrAppend(&out, indent, key, ": ", value, "\n");
  };
  const std::string k4 = "    ";
  absl::StrAppend(&out, "  - origin: ", Quote(OriginOf(entry)), "\n");
  line(k4, "number", absl::StrCat(e.number));
  line(k4, "name", Quote(e.name));
  line(k4, "campaign", Quote(e.campaign));
  line(k4, "idea", Quote(e.idea));
  line(k4, "created_at", FormatTimestamp(e.created_at));
  line(k4, "updated_at", FormatTimestamp(e.updated_at));
  line(k4, "submitted_by", Quote(e.submitted_by));
  line(k4, "spec_path", Quote(e.spec_path));
  line(k4, "workdir", Quote(e.workdir));
  if (e.required_labels.empty()) {
    line(k4, "required_labels", "{}");
  } else {
    absl::StrAppend(&out, k4, "required_labels:\n");
    for (const auto& [key, value] : e.required_labels) {
      absl::StrAppend(&out, k4, "  ", Quote(key), ": ", Quote(value), "\n");
    }
  }
  line(k4, "attempts", absl::StrCat(e.attempts));
  line(k4, "max_attempts", absl::StrCat(e.max_attempts));
  line(k4, "state_reason", Quote(e.state_reason));
  line(k4, "discarded_before", Quote(e.discarded_before));
  if (entry.verdicts.empty()) {
    line(k4, "verdicts", "[]");
  } else {
    absl::StrAppend(&out, k4, "verdicts:\n");
    for (const VerdictRecord& v : entry.verdicts) {
      absl::StrAppend(&out, k4, "  - variant: ", Quote(v.variant), "\n");
      line("        ", "verdict", Quote(v.verdict));
      line("        ", "change", FormatDouble(v.change));
      line("        ", "reason", Quote(v.reason));
      line("        ", "detail_json", Quote(v.detail_json));
    }
  }
  // Derived from report_json and the environment for readers of the file;
  // import ignores it and derives it again.
  absl::StatusOr<std::vector<HistoryRow>> rows = BuildHistoryRows({entry});
  if (!rows.ok() || rows->empty()) {
    line(k4, "results", "[]");
  } else {
    absl::StrAppend(&out, k4, "results:\n");
    for (const HistoryRow& r : *rows) {
      absl::StrAppend(
          &out, k4, "  - {input: ", Quote(r.input),
          ", variant: ", Quote(r.variant),
          ", baseline: ", r.baseline ? "true" : "false",
          ", median: ", FormatDouble(r.median), ", n: ", r.n,
          ", cv: ", FormatDouble(r.cv), ", change: ", FormatDouble(r.change),
          ", verdict: ", Quote(r.verdict), ", unit: ", Quote(r.unit), "}\n");
    }
  }
  const HostIdentity host = HostIdentityOf(a.environment_json);
  absl::StrAppend(&out, k4, "attempt:\n");
  const std::string k6 = "      ";
  line(k6, "agent_id", Quote(a.agent_id));
  line(k6, "seed", absl::StrCat(a.seed));
  line(k6, "started_at", FormatTimestamp(a.started_at));
  line(k6, "ended_at", FormatTimestamp(a.ended_at));
  line(k6, "reason", Quote(a.reason));
  line(k6, "hostname", Quote(host.hostname));
  line(k6, "fingerprint", Quote(host.fingerprint));
  line(k6, "commit", Quote(host.commit));
  line(k6, "environment_json", Quote(a.environment_json));
  line(k4, "spec_yaml", Quote(e.spec_yaml));
  line(k4, "report_json", Quote(e.report_json));
  line(k4, "report_text", Quote(e.report_text));
}

// ---- Reading ----

// The reader walks the located-YAML tree (common/yaml/located_yaml.h), which
// has already refused anchors, aliases and a second document; it stops at the
// first problem.
class Reader {
 public:
  explicit Reader(std::string display_path) : path_(std::move(display_path)) {}

  absl::StatusOr<std::vector<HistoryEntry>> Read(std::string_view text);

 private:
  using Node = yaml::Node;
  using KeyValue = std::pair<const Node*, const Node*>;
  using FieldMap = std::map<std::string, KeyValue>;

  absl::Status Error(const yaml::Mark& mark, const std::string& field,
                     const std::string& message) const {
    return absl::InvalidArgumentError(
        yaml::FormatAt(path_, mark, field, message));
  }

  // The mapping at `node` as key -> (key node, value node); refuses
  // duplicate and unknown keys and reports missing ones.
  absl::StatusOr<FieldMap> Fields(
      const Node& node, const yaml::Mark& where, const std::string& field,
      const std::vector<std::string>& required,
      const std::vector<std::string>& optional = {}) const {
    if (!node.IsMap()) {
      return Error(node.IsNull() ? where : node.mark(), field,
                   "expected a mapping (key: value lines)");
    }
    std::vector<absl::string_view> allowed(required.begin(), required.end());
    allowed.insert(allowed.end(), optional.begin(), optional.end());
    FieldMap out;
    for (const yaml::CheckedKey& checked : yaml::CheckKeys(node, allowed)) {
      const Node& key_node = *checked.key;
      const std::string& key = key_node.Scalar();
      switch (checked.status) {
        case yaml::KeyStatus::kNotPlain:
          return Error(key_node.mark(), field, "expected a plain key");
        case yaml::KeyStatus::kUnknown:
          return Error(
              key_node.mark(), field,
              absl::StrCat(
                  "unknown key \"", key.substr(0, 60),
                  "\"; expected one of: ", absl::StrJoin(required, ", "),
                  optional.empty() ? "" : ", ", absl::StrJoin(optional, ", ")));
        case yaml::KeyStatus::kDuplicate:
          return Error(key_node.mark(), field,
                       absl::StrCat("key \"", key, "\" appears twice"));
        case yaml::KeyStatus::kAllowed:
          out.emplace(key, KeyValue(&key_node, checked.value));
          break;
      }
    }
    for (const std::string& key : required) {
      if (!out.count(key)) {
        return Error(node.mark(), field,
                     absl::StrCat("missing key \"", key, "\""));
      }
    }
    return out;
  }

  static std::string Join(const std::string& field, const std::string& key) {
    return field.empty() ? key : absl::StrCat(field, ".", key);
  }
  // yaml-cpp marks an empty value at the next token, so point at the key.
  static yaml::Mark MarkOf(const KeyValue& kv) {
    return kv.second->IsNull() ? kv.first->mark() : kv.second->mark();
  }

  absl::StatusOr<std::string> String(const FieldMap& m, const std::string& key,
                                     const std::string& field) const {
    const KeyValue& kv = m.at(key);
    const Node& v = *kv.second;
    if (!v.IsScalar()) {
      return Error(MarkOf(kv), Join(field, key),
                   "expected a string in double quotes");
    }
    if (v.Tag() == kBinaryTag) {
      std::string bytes = yaml::DecodeBase64(v.Scalar());
      if (bytes.empty() && !v.Scalar().empty()) {
        return Error(MarkOf(kv), Join(field, key),
                     "expected base64 text after !!binary");
      }
      return bytes;
    }
    return v.Scalar();
  }

  absl::StatusOr<int64_t> Int(const FieldMap& m, const std::string& key,
                              const std::string& field) const {
    const KeyValue& kv = m.at(key);
    std::optional<int64_t> out;
    if (kv.second->IsScalar()) out = yaml::ToInt64(kv.second->Scalar());
    if (!out) return Error(MarkOf(kv), Join(field, key), "expected an integer");
    return *out;
  }

  absl::StatusOr<uint64_t> Uint(const FieldMap& m, const std::string& key,
                                const std::string& field) const {
    const KeyValue& kv = m.at(key);
    std::optional<uint64_t> out;
    if (kv.second->IsScalar()) out = yaml::ToUint64(kv.second->Scalar());
    if (!out) {
      return Error(MarkOf(kv), Join(field, key),
                   "expected an unsigned integer (0 to 18446744073709551615)");
    }
    return *out;
  }

  absl::StatusOr<double> Double(const FieldMap& m, const std::string& key,
                                const std::string& field) const {
    const KeyValue& kv = m.at(key);
    std::optional<double> out =
        yaml::ToYamlFloat(kv.second->IsScalar() ? kv.second->Scalar() : "");
    if (!out) {
      return Error(MarkOf(kv), Join(field, key),
                   "expected a number (or .nan, .inf, -.inf)");
    }
    return *out;
  }

  absl::StatusOr<absl::Time> Time(const FieldMap& m, const std::string& key,
                                  const std::string& field) const {
    const KeyValue& kv = m.at(key);
    std::optional<absl::Time> out;
    if (kv.second->IsScalar()) out = yaml::ToRfc3339Time(kv.second->Scalar());
    if (!out) {
      return Error(MarkOf(kv), Join(field, key),
                   "expected an RFC 3339 time such as "
                   "\"2026-03-01T12:00:00.000000Z\"");
    }
    return *out;
  }

  absl::StatusOr<HistoryEntry> ReadEntry(const Node& node,
                                         const std::string& field);

  const std::string path_;
};

absl::StatusOr<HistoryEntry> Reader::ReadEntry(const Node& node,
                                               const std::string& field) {
  HistoryEntry entry;
  ExperimentRecord& e = entry.experiment;
  AttemptRecord& a = entry.attempt;
  ASSIGN_OR_RETURN(FieldMap m, Fields(node, node.mark(), field,
                                      {"origin",
                                       "number",
                                       "name",
                                       "campaign",
                                       "idea",
                                       "created_at",
                                       "updated_at",
                                       "submitted_by",
                                       "spec_path",
                                       "workdir",
                                       "required_labels",
                                       "attempts",
                                       "max_attempts",
                                       "state_reason",
                                       "discarded_before",
                                       "verdicts",
                                       "attempt",
                                       "spec_yaml",
                                       "report_json",
                                       "report_text"},
                                      {"results"}));
  ASSIGN_OR_RETURN(e.origin, String(m, "origin", field));
  if (e.origin.empty() || e.origin.size() > 200) {
    return Error(MarkOf(m.at("origin")), Join(field, "origin"),
                 "expected a non-empty origin key of at most 200 bytes");
  }
  ASSIGN_OR_RETURN(e.number, Int(m, "number", field));
  ASSIGN_OR_RETURN(e.name, String(m, "name", field));
  ASSIGN_OR_RETURN(e.campaign, String(m, "campaign", field));
  ASSIGN_OR_RETURN(e.idea, String(m, "idea", field));
  ASSIGN_OR_RETURN(e.created_at, Time(m, "created_at", field));
  ASSIGN_OR_RETURN(e.updated_at, Time(m, "updated_at", field));
  ASSIGN_OR_RETURN(e.submitted_by, String(m, "submitted_by", field));
  ASSIGN_OR_RETURN(e.spec_path, String(m, "spec_path", field));
  ASSIGN_OR_RETURN(e.workdir, String(m, "workdir", field));
  {
    const auto& kv = m.at("required_labels");
    const std::string lf = Join(field, "required_labels");
    if (!kv.second->IsMap()) {
      return Error(MarkOf(kv), lf, "expected a mapping of label: value");
    }
    for (const auto& [label, value] : kv.second->entries()) {
      if (!label.IsScalar() || !value.IsScalar()) {
        return Error(label.mark(), lf,
                     "expected string keys and string values");
      }
      e.required_labels[label.Scalar()] = value.Scalar();
    }
  }
  ASSIGN_OR_RETURN(const int64_t attempts, Int(m, "attempts", field));
  ASSIGN_OR_RETURN(const int64_t max_attempts, Int(m, "max_attempts", field));
  if (attempts < 0 || attempts > 1000000) {
    return Error(MarkOf(m.at("attempts")), Join(field, "attempts"),
                 "expected a count from 0 to 1000000");
  }
  if (max_attempts < 1 || max_attempts > 1000000) {
    return Error(MarkOf(m.at("max_attempts")), Join(field, "max_attempts"),
                 "expected a count from 1 to 1000000");
  }
  e.attempts = static_cast<int>(attempts);
  e.max_attempts = static_cast<int>(max_attempts);
  ASSIGN_OR_RETURN(e.state_reason, String(m, "state_reason", field));
  ASSIGN_OR_RETURN(e.discarded_before, String(m, "discarded_before", field));
  ASSIGN_OR_RETURN(e.spec_yaml, String(m, "spec_yaml", field));
  ASSIGN_OR_RETURN(e.report_json, String(m, "report_json", field));
  ASSIGN_OR_RETURN(e.report_text, String(m, "report_text", field));
  e.state = ExperimentState::kDone;

  {
    const auto& kv = m.at("verdicts");
    const std::string vf = Join(field, "verdicts");
    if (!kv.second->IsSequence()) {
      return Error(MarkOf(kv), vf, "expected a list of verdicts ([] for none)");
    }
    for (size_t i = 0; i < kv.second->size(); ++i) {
      const std::string f = absl::StrCat(vf, "[", i, "]");
      ASSIGN_OR_RETURN(
          FieldMap v,
          Fields(kv.second->items()[i], kv.second->mark(), f,
                 {"variant", "verdict", "change", "reason", "detail_json"}));
      VerdictRecord verdict;
      ASSIGN_OR_RETURN(verdict.variant, String(v, "variant", f));
      ASSIGN_OR_RETURN(verdict.verdict, String(v, "verdict", f));
      ASSIGN_OR_RETURN(verdict.change, Double(v, "change", f));
      ASSIGN_OR_RETURN(verdict.reason, String(v, "reason", f));
      ASSIGN_OR_RETURN(verdict.detail_json, String(v, "detail_json", f));
      entry.verdicts.push_back(std::move(verdict));
    }
  }
  if (m.count("results") && !m.at("results").second->IsSequence()) {
    return Error(MarkOf(m.at("results")), Join(field, "results"),
                 "expected a list (it is derived from report_json and "
                 "ignored on import)");
  }
  {
    const std::string af = Join(field, "attempt");
    const auto& kv = m.at("attempt");
    ASSIGN_OR_RETURN(FieldMap at,
                     Fields(*kv.second, MarkOf(kv), af,
                            {"agent_id", "seed", "started_at", "ended_at",
                             "reason", "environment_json"},
                            {"hostname", "fingerprint", "commit"}));
    ASSIGN_OR_RETURN(a.agent_id, String(at, "agent_id", af));
    ASSIGN_OR_RETURN(a.seed, Uint(at, "seed", af));
    ASSIGN_OR_RETURN(a.started_at, Time(at, "started_at", af));
    ASSIGN_OR_RETURN(a.ended_at, Time(at, "ended_at", af));
    ASSIGN_OR_RETURN(a.reason, String(at, "reason", af));
    ASSIGN_OR_RETURN(a.environment_json, String(at, "environment_json", af));
    a.state = AttemptState::kDone;
  }
  return entry;
}

absl::StatusOr<std::vector<HistoryEntry>> Reader::Read(std::string_view text) {
  if (text.size() > kMaxHistoryFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": the file is ", text.size(), " bytes; a history file may be ",
        "at most ", kMaxHistoryFileBytes,
        " bytes: export less at a time (--benchmark, --since) and import the "
        "parts one by one"));
  }
  // No anchors or aliases: yaml-cpp shares aliased nodes, so an alias bomb
  // would expand on every walk.
  const yaml::ParseResult parsed =
      yaml::ParseYaml(text, {.single_document = true,
                             .allow_anchors = false,
                             .max_nodes = std::numeric_limits<int64_t>::max()});
  if (!parsed.ok()) {
    using Kind = yaml::ParseError::Kind;
    const yaml::ParseError& problem = parsed.error();
    switch (problem.kind) {
      case Kind::kSecondDocument:
        return Error(problem.mark, "",
                     "found a second YAML document; expected one document "
                     "per file");
      case Kind::kAnchor:
        return Error(problem.mark, "",
                     "found an anchor (&name); anchors and aliases are not "
                     "allowed in a history file");
      case Kind::kAlias:
        return Error(problem.mark, "",
                     "found an alias (*name); anchors and aliases are not "
                     "allowed in a history file");
      default:
        return Error(problem.mark, "",
                     absl::StrCat("not valid YAML: ", problem.message));
    }
  }
  const Node& root = parsed.root;
  if (!root.IsMap()) {
    return Error(root.mark(), "",
                 "expected a history file: a mapping with apiVersion: "
                 "benchfleet/v1, kind: History, version and experiments");
  }
  ASSIGN_OR_RETURN(FieldMap top,
                   Fields(root, root.mark(), "",
                          {"apiVersion", "kind", "version", "experiments"}));
  ASSIGN_OR_RETURN(std::string api, String(top, "apiVersion", ""));
  if (api != kApiVersion) {
    return Error(MarkOf(top.at("apiVersion")), "apiVersion",
                 absl::StrCat("expected \"", kApiVersion, "\""));
  }
  ASSIGN_OR_RETURN(std::string kind, String(top, "kind", ""));
  if (kind != kKind) {
    return Error(MarkOf(top.at("kind")), "kind",
                 absl::StrCat("expected \"", kKind, "\""));
  }
  ASSIGN_OR_RETURN(int64_t version, Int(top, "version", ""));
  if (version < 1 || version > kHistoryFileVersion) {
    return Error(MarkOf(top.at("version")), "version",
                 absl::StrCat("expected version 1 to ", kHistoryFileVersion,
                              "; a newer benchfleet wrote this file: import "
                              "it with that version"));
  }
  const auto& kv = top.at("experiments");
  if (!kv.second->IsSequence()) {
    return Error(MarkOf(kv), "experiments",
                 "expected a list of experiments ([] for none)");
  }
  std::vector<HistoryEntry> out;
  for (size_t i = 0; i < kv.second->size(); ++i) {
    ASSIGN_OR_RETURN(
        HistoryEntry entry,
        ReadEntry(kv.second->items()[i], absl::StrCat("experiments[", i, "]")));
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace

std::string OriginOf(const HistoryEntry& entry) {
  if (!entry.experiment.origin.empty()) return entry.experiment.origin;
  const std::string key =
      absl::StrCat("benchfleet history origin\n", entry.attempt.lease_token,
                   "\n", absl::ToUnixMicros(entry.experiment.created_at), "\n",
                   entry.experiment.name);
  return absl::StrCat("bf1:", Sha256Hex(key).substr(0, 40));
}

std::string WriteHistoryFile(const std::vector<HistoryEntry>& entries) {
  std::string out =
      "# benchfleet history file; format: docs/history-file.md\n"
      "apiVersion: benchfleet/v1\n"
      "kind: History\n";
  absl::StrAppend(&out, "version: ", kHistoryFileVersion, "\n");
  if (entries.empty()) {
    out += "experiments: []\n";
    return out;
  }
  out += "experiments:\n";
  for (const HistoryEntry& entry : entries) WriteEntry(entry, out);
  return out;
}

absl::StatusOr<std::vector<HistoryEntry>> ParseHistoryFile(
    std::string_view text, const std::string& display_path) {
  return Reader(display_path).Read(text);
}

}  // namespace benchfleet
