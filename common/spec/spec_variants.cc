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
#include "common/spec/spec_parser.h"

namespace benchfleet::spec_internal {

namespace fs = std::filesystem;

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
      const yaml::Node path_node =
          yaml::Node::MakeScalar(v->substr(5), compare->mark);
      Item path_item = *compare;
      path_item.node = &path_node;
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
      if (!spec->source_bundle.empty()) {
        Error(*ref,
              "with source.bundle every variant runs the uploaded tree; a ref "
              "needs source: {repo: ...} instead, or remove ref");
      } else if (spec->source_repo.empty()) {
        // Accepting it would measure the work directory while the user
        // believes the ref was measured.
        Error(*ref,
              "a ref needs a repository to resolve it in; add source: {repo: "
              "<path or URL of the git repository>} at the top level, or "
              "remove ref to run this variant in the work directory");
      } else if (auto v = ReadNonEmptyString(
                     *ref, "a branch, tag or commit of source.repo")) {
        parsed.ref = *v;
        parsed.ref_location = absl::StrCat(
            display_path(), ":", ref->mark.Line(), ":", ref->mark.Column());
      }
    } else if (!spec->source_repo.empty() && spec->variants.empty()) {
      Error(variant_item,
            "the baseline needs a ref: with source.repo, add ref: <branch, tag "
            "or commit> to the first variant (the others default to the "
            "baseline's ref)");
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
      std::string name = element.node->Scalar();
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

}  // namespace benchfleet::spec_internal
