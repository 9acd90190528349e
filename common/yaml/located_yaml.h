// The located-YAML reader: the one place benchfleet parses YAML text. It runs
// yaml-cpp (catching its exceptions here), checks the document's shape
// (number of documents, anchors and aliases, expanded size) and hands back an
// owned tree in which every node keeps where it was written. The spec loader
// (common/spec_loader.h), the --config files (common/config_file.h) and the
// history file (controller/history/history_file.h) read their schemas from
// this tree; common/yaml/located_reader.h adds typed access that collects
// "FILE:LINE:COL: field.path: what was wrong; what to do" diagnostics.
//
// No yaml-cpp type appears here. Functions are pure and thread-safe; a Node
// is an immutable value once built.
#ifndef BENCHFLEET_COMMON_YAML_LOCATED_YAML_H_
#define BENCHFLEET_COMMON_YAML_LOCATED_YAML_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace benchfleet::yaml {

// Where a node was written, 0-based as yaml-cpp counts; -1 when unknown
// (an empty document). Line() and Column() are what messages print.
struct Mark {
  int pos = -1;
  int line = -1;
  int column = -1;
  int Line() const { return line >= 0 ? line + 1 : 1; }
  int Column() const { return column >= 0 ? column + 1 : 1; }
};

class Node {
 public:
  enum class Kind { kNull, kScalar, kSequence, kMap };
  using Entry = std::pair<Node, Node>;

  Node() = default;
  // A scalar made by a reader (e.g. the part of "file:<path>" after the
  // prefix), to be read like one from the document.
  static Node MakeScalar(std::string text, Mark mark) {
    Node node;
    node.kind_ = Kind::kScalar;
    node.scalar_ = std::move(text);
    node.mark_ = mark;
    return node;
  }

  Kind kind() const { return kind_; }
  bool IsNull() const { return kind_ == Kind::kNull; }
  bool IsScalar() const { return kind_ == Kind::kScalar; }
  bool IsSequence() const { return kind_ == Kind::kSequence; }
  bool IsMap() const { return kind_ == Kind::kMap; }
  // The text of a scalar ("" otherwise).
  const std::string& Scalar() const { return scalar_; }
  // The resolved tag ("tag:yaml.org,2002:binary"), "?" or "!" when untagged.
  const std::string& Tag() const { return tag_; }
  // Where the node starts. For an empty value (`key:`) yaml-cpp marks the
  // next token, so readers point at the key instead.
  const Mark& mark() const { return mark_; }
  // Elements of a sequence, entries of a map, in document order.
  const std::vector<Node>& items() const { return items_; }
  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return IsMap() ? entries_.size() : items_.size(); }

 private:
  friend class TreeBuilder;
  Kind kind_ = Kind::kNull;
  std::string scalar_;
  std::string tag_;
  Mark mark_;
  std::vector<Node> items_;
  std::vector<Entry> entries_;
};

struct ParseOptions {
  // More than one document is an error (kSecondDocument); otherwise the first
  // is read and the rest ignored.
  bool single_document = true;
  // Anchors (&a) and aliases (*a) are errors (kAnchor, kAlias).
  bool allow_anchors = true;
  // The most nodes the document may expand to, counting a node once per alias
  // use (kTooManyNodes beyond that), so alias bombs and self-referencing
  // aliases are refused before they are expanded.
  int64_t max_nodes = 1000000;
};

struct ParseError {
  enum class Kind {
    kUnreadable,      // ReadYamlFile could not open the file
    kSyntax,          // yaml-cpp's parser refused the text
    kTooDeep,         // nested deeper than yaml-cpp allows; depth is set
    kOther,           // any other yaml-cpp exception
    kSecondDocument,  // restarts_in_place: a stray token (e.g. ',') at
                      // document level made yaml-cpp start an empty
                      // document at the same place; `message` then reads
                      // "unexpected ','"
    kAnchor,
    kAlias,
    kTooManyNodes,  // top_key: the top-level key (raw text) whose value
                    // crossed the limit, "" when the root is not a mapping
  };
  Kind kind = Kind::kSyntax;
  Mark mark;
  std::string message;  // yaml-cpp's wording, or as described above
  int depth = 0;
  bool restarts_in_place = false;
  std::string top_key;
};

// A parsed document, or why there is none. An empty text (or comments only)
// gives a null root with an unknown Mark.
struct ParseResult {
  Node root;
  std::vector<ParseError> errors;  // empty on success; at most one today
  bool ok() const { return errors.empty(); }
  const ParseError& error() const { return errors.front(); }
  // Whether the text held at least one document.
  bool has_document = false;
};

ParseResult ParseYaml(std::string_view text, const ParseOptions& options = {});
// Reads the file at `path` and parses it; kUnreadable when it cannot be
// opened.
ParseResult ReadYamlFile(const std::string& path,
                         const ParseOptions& options = {});

// "FILE:LINE:COL: field: message", or "FILE:LINE:COL: message" when `field`
// is empty.
std::string FormatAt(absl::string_view file, const Mark& mark,
                     absl::string_view field, absl::string_view message);

}  // namespace benchfleet::yaml

#endif  // BENCHFLEET_COMMON_YAML_LOCATED_YAML_H_
