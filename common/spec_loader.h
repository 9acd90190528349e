// The spec loader: turns an experiment spec (YAML, DESIGN.md §3) into an
// ExperimentSpec, checking every field and reporting every problem with its
// file, line, column and field. Used by `benchfleet validate`/`submit`
// (LoadSpecFile) and by the controller, which re-validates each spec it
// receives (ParseSpec). The YAML is parsed by common/yaml/ (the one
// located-YAML reader) and the schema is read section by section in
// common/spec/; no yaml-cpp type appears here. ParseDuration and ParsePercent
// (declared in common/yaml/yaml_values.h) come with this header.
//
// Untrusted input is bounded: the text may be at most kMaxSpecBytes, and the
// document may expand to at most kMaxSpecNodes nodes once aliases are followed,
// so an alias bomb
// ("billion laughs") or a self-referencing alias is refused instead of
// expanded.
//
// All functions are thread-safe (they share no state).
#ifndef BENCHFLEET_COMMON_SPEC_LOADER_H_
#define BENCHFLEET_COMMON_SPEC_LOADER_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/spec.h"
#include "common/yaml/yaml_values.h"  // ParseDuration, ParsePercent

namespace benchfleet {

// Largest spec text accepted, in bytes (1 MiB).
inline constexpr size_t kMaxSpecBytes = 1 << 20;
// Largest number of YAML nodes a spec may expand to, counting a node once per
// alias use.
inline constexpr int kMaxSpecNodes = 100000;
// The smallest benchmark.runs accepted without `allow_underpowered: true`.
inline constexpr int kMinRuns = 10;
// Fewer inputs than this load with a warning.
inline constexpr int kRecommendedInputs = 5;

struct SpecLoadOptions {
  // Directory a relative `workdir:` resolves against, and the default workdir.
  // This is the directory that holds the spec file (not the resolved workdir: a
  // spec with `workdir: sub` re-validated against its own resolved workdir
  // would give .../sub/sub). LoadSpecFile: default is the spec file's
  // directory; a relative value is made absolute against the current directory.
  // ParseSpec: must be absolute.
  std::string base_dir;
  // When true, the work directory and every input file must exist on this host
  // (the CLI on the host that will run the experiment). Ignored for specs with
  // `source:`, whose inputs live in a checkout that does not exist yet.
  bool check_input_files = false;
};

// Reads and validates the spec file at `path`.
// Returns the spec with defaults applied, workdir absolute and normalized,
// source_path = `path`, source_text = the file's bytes, and non-fatal findings
// in `warnings`. Fails with NotFound when the file cannot be read (the message
// names the path), and with InvalidArgument listing ALL problems, one per line,
// each "FILE:LINE:COL: FIELD: what is wrong; what is expected" (1-based line
// and column).
absl::StatusOr<ExperimentSpec> LoadSpecFile(
    const std::string& path, const SpecLoadOptions& options = {});

// Same as LoadSpecFile for text already in memory. `display_path` names the
// spec in messages and becomes source_path; `options.base_dir` must be absolute
// (InvalidArgument otherwise).
absl::StatusOr<ExperimentSpec> ParseSpec(std::string_view yaml,
                                         const std::string& display_path,
                                         const SpecLoadOptions& options);

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_SPEC_LOADER_H_
