#include "common/yaml/located_reader.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/yaml/yaml_values.h"

namespace benchfleet::yaml {
namespace {

void SortByPlace(std::vector<Diagnostic>* diagnostics) {
  std::stable_sort(diagnostics->begin(), diagnostics->end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return std::tie(a.line, a.column) <
                            std::tie(b.line, b.column);
                   });
}

}  // namespace

std::string Child(absl::string_view path, absl::string_view key) {
  return path.empty() ? Escape(key) : absl::StrCat(path, ".", Escape(key));
}

std::string Index(absl::string_view path, size_t i) {
  return absl::StrCat(path, "[", i, "]");
}

std::vector<CheckedKey> CheckKeys(const Node& mapping,
                                  std::span<const absl::string_view> allowed) {
  std::vector<CheckedKey> out;
  if (!mapping.IsMap()) return out;
  out.reserve(mapping.size());
  std::map<std::string, Mark, std::less<>> first;
  for (const auto& [key, value] : mapping.entries()) {
    CheckedKey checked;
    checked.key = &key;
    checked.value = &value;
    if (!key.IsScalar()) {
      checked.status = KeyStatus::kNotPlain;
    } else if (std::find(allowed.begin(), allowed.end(), key.Scalar()) ==
               allowed.end()) {
      checked.status = KeyStatus::kUnknown;
      checked.suggestion = Suggest(key.Scalar(), allowed);
    } else if (auto [it, inserted] = first.emplace(key.Scalar(), key.mark());
               !inserted) {
      checked.status = KeyStatus::kDuplicate;
      checked.first = it->second;
    }
    out.push_back(checked);
  }
  return out;
}

const Item* Mapping::Find(absl::string_view key) const {
  for (const auto& [k, item] : entries_) {
    if (k == key) return &item;
  }
  return nullptr;
}

Diagnostic LocatedReader::Make(const Mark& mark, absl::string_view field,
                               absl::string_view message) const {
  return {mark.Line(), mark.Column(),
          FormatAt(display_path_, mark, field, message)};
}

void LocatedReader::Error(const Mark& mark, absl::string_view field,
                          absl::string_view message) {
  errors_.push_back(Make(mark, field, message));
}

void LocatedReader::Warn(const Item& item, absl::string_view message) {
  warnings_.push_back(Make(item.mark, item.path, message));
}

absl::Status LocatedReader::ErrorStatus(size_t max_shown) {
  SortByPlace(&errors_);
  std::vector<std::string> lines;
  for (size_t i = 0; i < errors_.size() && i < max_shown; ++i) {
    lines.push_back(errors_[i].text);
  }
  if (errors_.size() > max_shown) {
    const Diagnostic& next = errors_[max_shown];
    lines.push_back(absl::StrCat(
        display_path_, ":", next.line, ":", next.column, ": ",
        errors_.size() - max_shown,
        " more errors not shown; fix the errors above and validate again"));
  }
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

std::vector<std::string> LocatedReader::TakeWarnings() {
  SortByPlace(&warnings_);
  std::vector<std::string> out;
  for (Diagnostic& w : warnings_) out.push_back(std::move(w.text));
  warnings_.clear();
  return out;
}

void LocatedReader::TypeError(const Item& item, absl::string_view expected) {
  const Node& node = *item.node;
  switch (node.kind()) {
    case Node::Kind::kNull:
      Error(item, absl::StrCat("has no value; expected ", expected));
      return;
    case Node::Kind::kSequence:
      Error(item, absl::StrCat("got a list; expected ", expected));
      return;
    case Node::Kind::kMap:
      // An unquoted `{input}` is a YAML mapping with one key and no value.
      if (node.size() == 1 && node.entries().front().first.IsScalar() &&
          node.entries().front().second.IsNull()) {
        std::string key = Escape(node.entries().front().first.Scalar());
        Error(item, absl::StrCat("got the mapping {", key,
                                 "} (YAML reads unquoted {...} as a mapping); "
                                 "expected ",
                                 expected, ", so quote it: \"{", key, "}\""));
        return;
      }
      Error(item, absl::StrCat("got a mapping; expected ", expected));
      return;
    case Node::Kind::kScalar:
      Error(item, absl::StrCat("got ", Quote(node.Scalar()), "; expected ",
                               expected));
      return;
  }
}

std::optional<Mapping> LocatedReader::ReadMapping(
    const Item& item, std::span<const absl::string_view> allowed,
    absl::string_view expected) {
  if (!item.node->IsMap()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  Mapping mapping(item.mark, item.path);
  std::string where =
      item.path.empty() ? "at the top level" : absl::StrCat("in ", item.path);
  for (const CheckedKey& checked : CheckKeys(*item.node, allowed)) {
    const Node& key = *checked.key;
    const Node& value = *checked.value;
    if (checked.status == KeyStatus::kNotPlain) {
      Error(key.mark(), item.path,
            absl::StrCat("a key is not a plain word; expected keys ", where,
                         " to be one of: ", absl::StrJoin(allowed, ", ")));
      continue;
    }
    const std::string& name = key.Scalar();
    std::string path = Child(item.path, name);
    if (checked.status == KeyStatus::kUnknown) {
      Error(key.mark(), path,
            absl::StrCat(
                "unknown key",
                checked.suggestion.empty()
                    ? ""
                    : absl::StrCat(" (did you mean ", checked.suggestion, "?)"),
                "; expected one of the keys allowed ", where, ": ",
                absl::StrJoin(allowed, ", ")));
      continue;
    }
    if (checked.status == KeyStatus::kDuplicate) {
      Error(key.mark(), path,
            absl::StrCat("duplicate key (first set on line ",
                         checked.first.Line(),
                         "); expected each key once, remove one of them"));
      continue;
    }
    // yaml-cpp marks an empty value at the next token, so point at the key
    // instead.
    Mark mark = value.IsNull() ? key.mark() : value.mark();
    mapping.Add(name, Item{&value, mark, path});
  }
  return mapping;
}

std::optional<std::vector<Item>> LocatedReader::ReadList(
    const Item& item, absl::string_view expected) {
  if (!item.node->IsSequence()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  std::vector<Item> items;
  size_t i = 0;
  for (const Node& element : item.node->items()) {
    Mark mark = element.IsNull() ? item.mark : element.mark();
    items.push_back(Item{&element, mark, Index(item.path, i++)});
  }
  return items;
}

const Item* LocatedReader::Require(const Mapping& mapping,
                                   absl::string_view key,
                                   absl::string_view hint) {
  const Item* item = mapping.Find(key);
  if (item == nullptr) {
    Error(mapping.mark(), Child(mapping.path(), key),
          absl::StrCat("missing; ", hint));
  }
  return item;
}

std::optional<std::string> LocatedReader::ReadScalar(
    const Item& item, absl::string_view expected) {
  if (!item.node->IsScalar()) {
    TypeError(item, expected);
    return std::nullopt;
  }
  return item.node->Scalar();
}

std::optional<std::string> LocatedReader::ReadString(const Item& item) {
  return ReadScalar(item, "a string");
}

std::optional<std::string> LocatedReader::ReadNonEmptyString(
    const Item& item, absl::string_view expected) {
  std::optional<std::string> text = ReadScalar(item, expected);
  if (text && absl::StripAsciiWhitespace(*text).empty()) {
    Error(item, absl::StrCat("is empty; expected ", expected));
    return std::nullopt;
  }
  return text;
}

std::optional<int64_t> LocatedReader::ReadInt(const Item& item,
                                              absl::string_view expected) {
  std::optional<std::string> text = ReadScalar(item, expected);
  if (!text) return std::nullopt;
  std::optional<int64_t> value = ToWholeNumber(*text);
  if (!value) {
    Error(item, absl::StrCat(Quote(*text), " is not a whole number; expected ",
                             expected));
  }
  return value;
}

std::optional<double> LocatedReader::ReadNumber(const Item& item,
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

std::optional<bool> LocatedReader::ReadBool(const Item& item) {
  std::optional<std::string> text = ReadScalar(item, "true or false");
  if (!text) return std::nullopt;
  std::optional<bool> value = ToBool(*text);
  if (!value) {
    Error(item, absl::StrCat(Quote(*text),
                             " is not a boolean; expected true or false"));
  }
  return value;
}

std::optional<absl::Duration> LocatedReader::ReadDuration(const Item& item) {
  std::optional<std::string> text = ReadScalar(item, kDurationExpected);
  if (!text) return std::nullopt;
  absl::StatusOr<absl::Duration> d = ParseDuration(*text);
  if (!d.ok()) {
    Error(item, d.status().message());
    return std::nullopt;
  }
  return *d;
}

std::optional<double> LocatedReader::ReadPercent(const Item& item) {
  std::optional<std::string> text = ReadScalar(item, kPercentExpected);
  if (!text) return std::nullopt;
  absl::StatusOr<double> p = ParsePercent(*text);
  if (!p.ok()) {
    Error(item, p.status().message());
    return std::nullopt;
  }
  return *p;
}

std::optional<std::vector<std::string>> LocatedReader::ReadStringList(
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

}  // namespace benchfleet::yaml
