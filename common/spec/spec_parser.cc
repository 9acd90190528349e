#include "common/spec/spec_parser.h"

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

namespace benchfleet {

std::string ExperimentSpec::BundleDir() const {
  if (source_bundle.empty()) return "";
  std::string dir = (std::filesystem::path(workdir) / source_bundle)
                        .lexically_normal()
                        .generic_string();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

}  // namespace benchfleet

namespace benchfleet::spec_internal {

namespace fs = std::filesystem;

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
    if (auto source = ReadMapping(*item, kSourceKeys,
                                  "a mapping such as {repo: /srv/git/app.git} "
                                  "or {bundle: .}")) {
      const Item* repo = source->Find("repo");
      const Item* bundle = source->Find("bundle");
      const Item* files = source->Find("files");
      if (repo != nullptr && bundle != nullptr) {
        Error(*bundle,
              "source has both repo and bundle; keep repo to build each "
              "variant from its ref, or bundle to send this directory's "
              "files");
      } else if (repo == nullptr && bundle == nullptr) {
        Error(*item,
              "source needs repo: <path or URL of the git repository> or "
              "bundle: <directory to send, relative to the spec, usually .>; "
              "or remove source to run in the work directory");
      }
      if (repo != nullptr) {
        if (auto v =
                ReadNonEmptyString(*repo, "a git repository path or URL")) {
          spec->source_repo = *v;
        }
        if (files != nullptr) {
          Error(*files,
                "files: lists what a bundle holds; with repo the checkout "
                "holds the whole commit, remove files");
        }
      }
      if (bundle != nullptr) {
        if (auto v = ReadNonEmptyString(
                *bundle,
                "a directory relative to the spec file, such as . (the "
                "spec's own directory)")) {
          if (!v->empty() && (*v)[0] == '/') {
            Error(*bundle,
                  "the bundle directory must be relative to the spec file "
                  "(such as . or src); an absolute path would not mean the "
                  "same on another host");
          } else {
            spec->source_bundle = *v;
          }
        }
        if (files != nullptr) {
          if (auto v = ReadStringList(*files,
                                      "a list of paths relative to the "
                                      "bundle directory")) {
            for (const std::string& f : *v) {
              if (f.empty() || f[0] == '/' ||
                  absl::StrContains(absl::StrCat("/", f, "/"), "/../")) {
                Error(*files, absl::StrCat(Quote(f),
                                           " is not a path inside the bundle "
                                           "directory; list relative paths "
                                           "without .."));
              }
            }
            spec->source_files = std::move(*v);
          }
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

  // With source.repo, commands and inputs live in a checkout that does not
  // exist yet; with source.bundle, in the bundle directory, here.
  if (!options_.check_input_files || !spec->source_repo.empty()) return;
  const std::string inputs_dir = spec->InputsDir();
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
    fs::path full = fs::path(inputs_dir) / path;
    if (!fs::is_regular_file(full, ec)) {
      Error(item, absl::StrCat(Quote(path), " does not exist in ", inputs_dir,
                               "; expected an existing file, create it or fix "
                               "the path"));
    }
  }
}

absl::StatusOr<ExperimentSpec> SpecParser::Parse(absl::string_view text) {
  ExperimentSpec spec;
  spec.source_path = display_path();
  if (text.size() > kMaxSpecBytes) {
    Error(yaml::Mark(), "",
          absl::StrCat("the spec is larger than ", kMaxSpecBytes,
                       " bytes (1 MiB); expected a smaller spec, keep data in "
                       "input files"));
    return ErrorStatus(kMaxErrorsShown);
  }
  spec.source_text = std::string(text);

  const yaml::ParseResult parsed =
      yaml::ParseYaml(spec.source_text, {.single_document = true,
                                         .allow_anchors = true,
                                         .max_nodes = kMaxSpecNodes});
  if (!parsed.ok()) {
    using Kind = yaml::ParseError::Kind;
    const yaml::ParseError& e = parsed.error();
    constexpr absl::string_view kFixSyntax =
        "; fix the YAML syntax at or before this point (brackets, quotes, "
        "indentation)";
    if (e.kind == Kind::kSecondDocument && e.restarts_in_place) {
      Error(e.mark, "", absl::StrCat("invalid YAML: ", e.message, kFixSyntax));
    } else if (e.kind == Kind::kSecondDocument) {
      Error(e.mark, "",
            "the file holds more than one YAML document; expected exactly "
            "one, remove the extra --- sections");
    } else if (e.kind == Kind::kTooDeep) {
      // yaml-cpp 0.7 words this as "bad file".
      Error(e.mark, "",
            absl::StrCat("invalid YAML: nested more than ", e.depth,
                         " levels deep; expected a spec nested a few levels"));
    } else if (e.kind == Kind::kSyntax) {
      Error(e.mark, "", absl::StrCat("invalid YAML: ", e.message, kFixSyntax));
    } else if (e.kind == Kind::kTooManyNodes) {
      Error(e.mark, yaml::Escape(e.top_key),
            absl::StrCat("expands to more than ", kMaxSpecNodes,
                         " YAML nodes once aliases (*name) are followed, "
                         "which looks like an alias bomb; expected a "
                         "spec that does not repeat large anchored "
                         "values"));
    } else {
      Error(e.mark, "", absl::StrCat("invalid YAML: ", e.message));
    }
    return ErrorStatus(kMaxErrorsShown);
  }
  const yaml::Node& root = parsed.root;
  if (root.IsNull()) {
    Error(yaml::Mark(), "",
          "the spec is empty; expected a mapping that starts with apiVersion: "
          "benchfleet/v1");
    return ErrorStatus(kMaxErrorsShown);
  }
  Item root_item{&root, root.mark(), ""};
  if (!root.IsMap()) {
    TypeError(root_item,
              "a mapping with apiVersion, kind, name, benchmark and variants "
              "at the top level");
    return ErrorStatus(kMaxErrorsShown);
  }
  std::optional<Mapping> top = ReadMapping(root_item, kTopKeys, "");
  if (top) ReadTop(*top, &spec);
  if (has_errors()) return ErrorStatus(kMaxErrorsShown);
  spec.warnings = TakeWarnings();
  return spec;
}

}  // namespace benchfleet::spec_internal
