#include "controller/fleet/source_resolver.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/git/git_command.h"

namespace benchfleet {
namespace {

// The repository as a local path git can be run in, if it is on this host.
std::optional<std::string> LocalPath(const std::string& repo) {
  if (absl::StartsWith(repo, "file://")) return repo.substr(7);
  if (absl::StartsWith(repo, "/")) return repo;
  return std::nullopt;
}

bool LooksLikeCommitId(const std::string& ref) {
  if (ref.size() < 4 || ref.size() > 40) return false;
  for (char c : ref) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::optional<std::string> Lookup(
    const std::map<std::string, std::string>& refs, const std::string& ref) {
  for (const std::string& name : {absl::StrCat("refs/heads/", ref),
                                  absl::StrCat("refs/tags/", ref, "^{}"),
                                  absl::StrCat("refs/tags/", ref)}) {
    if (auto it = refs.find(name); it != refs.end()) return it->second;
  }
  if (absl::StartsWith(ref, "refs/") || ref == "HEAD") {
    if (auto it = refs.find(absl::StrCat(ref, "^{}")); it != refs.end())
      return it->second;
    if (auto it = refs.find(ref); it != refs.end()) return it->second;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::vector<VariantSourceRecord>> ResolveSources(
    const ExperimentSpec& spec, absl::Duration timeout) {
  std::vector<VariantSourceRecord> out;
  if (spec.source_repo.empty()) return out;
  const std::string& repo = spec.source_repo;
  GitRequest list;
  // "--" keeps a repo that starts with '-' from being read as an option.
  list.args = {"ls-remote", "--", repo};
  list.timeout = timeout;
  absl::StatusOr<GitResult> listed = RunGit(list);
  if (!listed.ok()) return listed.status();
  if (!listed->ok()) {
    return absl::UnavailableError(absl::StrCat(
        spec.source_path, ": source.repo: cannot list the refs of ", repo,
        " from the controller (", listed->Describe(list),
        "); check the path or URL and that the controller's user can read it"));
  }
  std::map<std::string, std::string> refs;  // ref name -> commit
  for (absl::string_view line : absl::StrSplit(listed->out, '\n')) {
    std::vector<std::string> parts = absl::StrSplit(line, '\t');
    if (parts.size() == 2 && IsFullCommitId(parts[0]))
      refs[parts[1]] = parts[0];
  }
  for (const VariantSpec& v : spec.variants) {
    VariantSourceRecord r;
    r.variant = v.name;
    r.repo = repo;
    r.ref = spec.RefOf(v);
    const std::string where =
        v.ref_location.empty()
            ? absl::StrCat(spec.source_path, ": variants: ", v.name,
                           " (no ref; the baseline's)")
            : absl::StrCat(v.ref_location, ": variant ", v.name);
    if (std::optional<std::string> commit = Lookup(refs, r.ref)) {
      r.commit = *commit;
    } else if (LooksLikeCommitId(r.ref)) {
      if (std::optional<std::string> path = LocalPath(repo)) {
        GitRequest parse;
        parse.args = {"rev-parse", "--verify", "--quiet",
                      absl::StrCat(r.ref, "^{commit}")};
        parse.cwd = *path;
        parse.timeout = timeout;
        absl::StatusOr<GitResult> parsed = RunGit(parse);
        if (!parsed.ok()) return parsed.status();
        const std::string id(absl::StripAsciiWhitespace(parsed->out));
        if (parsed->ok() && IsFullCommitId(id)) r.commit = id;
      } else if (IsFullCommitId(absl::AsciiStrToLower(r.ref))) {
        r.commit = absl::AsciiStrToLower(r.ref);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": ref '", r.ref,
            "' looks like an abbreviated commit id of ", repo,
            ", which cannot be checked remotely; write the full 40-digit "
            "commit id, or a branch or tag"));
      }
    }
    if (r.commit.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ref '", r.ref, "' is not a branch, tag or commit of ", repo,
          "; `git ls-remote ", repo,
          "` lists its branches and tags. Nothing was queued"));
    }
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status AttachStoredCommits(Store& store, int64_t experiment_id,
                                 ExperimentSpec* spec) {
  if (spec->source_repo.empty()) return absl::OkStatus();
  absl::StatusOr<std::vector<VariantSourceRecord>> stored =
      store.ListExperimentSources(experiment_id);
  if (!stored.ok()) return stored.status();
  for (VariantSpec& v : spec->variants) {
    for (const VariantSourceRecord& s : *stored) {
      if (s.variant == v.name) v.commit = s.commit;
    }
    if (v.commit.empty()) {
      return absl::UnavailableError(absl::StrCat(
          "experiment ", experiment_id, ": the commit of variant ", v.name,
          " is not stored (yet); it is recorded at submit"));
    }
  }
  return absl::OkStatus();
}

}  // namespace benchfleet
