// Typed reading of a located-YAML tree (common/yaml/located_yaml.h) that
// collects diagnostics instead of stopping at the first one: each problem is
// "FILE:LINE:COL: field.path: what was wrong; expected ..." and the caller
// gets all of them, ordered by place. Mappings are read against their allowed
// keys (unknown keys get "did you mean ...?" by edit distance, duplicates are
// refused); scalars convert to strings, whole numbers, numbers, booleans,
// durations and percentages with the wording the spec loader has always used.
//
// Used by the spec loader's section readers (common/spec/). CheckKeys, the
// rule for a mapping's keys behind ReadMapping, is also used by the readers
// that word their messages their own way and stop at the first problem: the
// --config files (common/config_file.cc) and the history file
// (controller/history/history_file.cc). A LocatedReader is not thread-safe;
// use one per document; CheckKeys is pure. Items and CheckedKeys point into
// the tree they were read from, which must outlive them.
#ifndef BENCHFLEET_COMMON_YAML_LOCATED_READER_H_
#define BENCHFLEET_COMMON_YAML_LOCATED_READER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/yaml/located_yaml.h"

namespace benchfleet::yaml {

// "path.key" with the key escaped (keys come from the user); "key" at the top.
std::string Child(absl::string_view path, absl::string_view key);
// "path[i]".
std::string Index(absl::string_view path, size_t i);

// A value in the document with the place to report it at and its field path
// ("benchmark.inputs[0].path").
struct Item {
  const Node* node = nullptr;
  Mark mark;
  std::string path;
};

// The entries of a mapping whose keys were checked against the allowed set.
class Mapping {
 public:
  Mapping(Mark mark, std::string path) : mark_(mark), path_(std::move(path)) {}

  void Add(std::string key, Item item) {
    entries_.emplace_back(std::move(key), std::move(item));
  }
  // The value under `key`, or nullptr when the key is absent.
  const Item* Find(absl::string_view key) const;
  const Mark& mark() const { return mark_; }
  const std::string& path() const { return path_; }

 private:
  Mark mark_;
  std::string path_;
  std::vector<std::pair<std::string, Item>> entries_;
};

// ---- The keys of a mapping ----

// What CheckKeys found for one key.
enum class KeyStatus {
  kAllowed,    // one of the allowed keys, first time in the mapping
  kNotPlain,   // the key is not a scalar (a list or mapping used as a key)
  kUnknown,    // not one of the allowed keys
  kDuplicate,  // an allowed key seen before in the same mapping
};

struct CheckedKey {
  const Node* key = nullptr;
  const Node* value = nullptr;
  KeyStatus status = KeyStatus::kAllowed;
  // kUnknown: the allowed key it is closest to (Suggest, yaml_values.h), ""
  // when none is close. Points into `allowed`.
  absl::string_view suggestion;
  // kDuplicate: where the key was first set.
  Mark first;
};

// The one rule for a mapping's keys: each must be a plain scalar, one of
// `allowed`, and appear once. Returns every entry of `mapping` in document
// order with what is wrong with its key (duplicates are counted among the
// allowed keys only); empty when `mapping` is not a mapping. Callers word
// the messages.
std::vector<CheckedKey> CheckKeys(const Node& mapping,
                                  std::span<const absl::string_view> allowed);

struct Diagnostic {
  int line;    // 1-based
  int column;  // 1-based
  std::string text;
};

class LocatedReader {
 public:
  // `display_path` starts every message.
  explicit LocatedReader(std::string display_path)
      : display_path_(std::move(display_path)) {}

  const std::string& display_path() const { return display_path_; }

  // --- diagnostics ---
  void Error(const Mark& mark, absl::string_view field,
             absl::string_view message);
  void Error(const Item& item, absl::string_view message) {
    Error(item.mark, item.path, message);
  }
  void Warn(const Item& item, absl::string_view message);
  bool has_errors() const { return !errors_.empty(); }
  // InvalidArgument with the errors ordered by place, one per line; past
  // `max_shown`, one more line says how many were left out.
  absl::Status ErrorStatus(size_t max_shown);
  // The warnings ordered by place (moved out).
  std::vector<std::string> TakeWarnings();

  // Reports that `item` has the wrong shape: "got a list; expected ...".
  void TypeError(const Item& item, absl::string_view expected);

  // --- structure ---
  // The mapping at `item` with keys from `allowed`; unknown keys (with a
  // suggestion) and duplicates are reported and left out.
  std::optional<Mapping> ReadMapping(const Item& item,
                                     std::span<const absl::string_view> allowed,
                                     absl::string_view expected);
  std::optional<std::vector<Item>> ReadList(const Item& item,
                                            absl::string_view expected);
  // The value under `key`; "missing; <hint>" at the mapping when absent.
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
  // A list of non-empty strings.
  std::optional<std::vector<std::string>> ReadStringList(
      const Item& item, absl::string_view expected);

 private:
  Diagnostic Make(const Mark& mark, absl::string_view field,
                  absl::string_view message) const;

  std::string display_path_;
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
};

}  // namespace benchfleet::yaml

#endif  // BENCHFLEET_COMMON_YAML_LOCATED_READER_H_
