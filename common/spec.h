// The experiment spec as plain structs: what `benchfleet validate` checks, what
// the controller stores and drives. Produced by common/spec_loader (through
// the located-YAML reader in common/yaml/, the only place yaml-cpp is used);
// read by the controller's attempt driver and the CLI.
// Plain data; not thread-safe.
//
// Conventions: durations are absl::Duration; percentages are fractions (10% ->
// 0.10); the first variant is the baseline every other variant is compared
// with.
#ifndef BENCHFLEET_COMMON_SPEC_H_
#define BENCHFLEET_COMMON_SPEC_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace benchfleet {

enum class Better { kLower, kHigher };
enum class RunOrder { kInterleaved, kSequential };
enum class CompareMode { kStdout, kFile, kNone };
enum class DecisionProfile { kFirstPass, kOptimized };

// A command is either a shell string (run with /bin/sh -c) or an argv vector
// (no shell). Exactly one of the two is set in a valid spec.
struct CommandSpec {
  std::string shell;
  std::vector<std::string> argv;
  bool empty() const { return shell.empty() && argv.empty(); }
};

struct InputSpec {
  std::string name;     // [a-z0-9_.-]+, unique within the spec
  std::string path;     // relative to the work directory, never escaping it
  double weight = 1.0;  // > 0; relative input frequency for the aggregate
};

struct CustomMetricSpec {
  std::string name;   // [a-z0-9_]+, not one of the built-in metric names
  std::string regex;  // ECMAScript regex with exactly one capture group,
                      // applied to stdout
  Better better = Better::kLower;
};

struct VariantSpec {
  std::string name;  // [a-z0-9+_.-]+, unique
  // A branch, tag or commit of source.repo this variant is built from. Only
  // with source.repo (a ref without it is refused). With source.repo the
  // baseline must name one; a candidate without one uses the baseline's ref
  // (e.g. a variant that only changes env). Resolved to a commit at submit.
  std::string ref;
  // Where `ref` was written ("spec.yaml:12:5"), for errors found after
  // parsing (an unknown ref at submit); empty when the variant has no ref.
  std::string ref_location;
  // The full commit id `ref` resolved to at submit. Never read from YAML: the
  // controller fills it in from the store (Store::ListExperimentSources) when
  // it loads a stored spec; empty without source.repo.
  std::string commit;
  std::vector<std::string>
      combines;  // names of other variants this one compounds
  std::map<std::string, std::string> env;  // extra environment for every step
  std::optional<CommandSpec> command;      // overrides benchmark.command
  std::optional<CommandSpec> setup;        // overrides the top-level setup
};

struct VerdictSpec {
  DecisionProfile profile = DecisionProfile::kFirstPass;
  double alpha = 0.05;             // (0, 0.5]
  double max_cv = 0.10;            // (0, 10]
  double kill_factor = 1.10;       // > 1
  double input_regression = 0.05;  // [0, 10]
};

struct GateSpec {
  absl::Duration cooldown = absl::Seconds(60);
  double max_gpu_temp_c = 50;
  double max_cpu_temp_c = 70;
  double max_load = 0.3;
  absl::Duration max_wait = absl::Minutes(15);
  // CPU (in cores) that processes other than the agent and its job may use
  // before a step waits; 0 leaves it to the agent's own limit.
  double max_competing_cpu = 0;
};

struct ExperimentSpec {
  // Where the spec came from (for messages); not part of the YAML.
  std::string source_path;
  // The verbatim YAML text, kept so the controller can store and re-validate
  // it.
  std::string source_text;

  std::string api_version;  // "benchfleet/v1"
  std::string kind;         // "Experiment"
  std::string name;  // [a-z0-9-], 1..63 chars, starts with a letter or digit
  std::string campaign;    // optional, same charset as name
  std::string idea;        // optional, same charset as name
  std::string hypothesis;  // optional free text
  std::map<std::string, std::string> required_labels;  // requires.labels
  // source.repo: a git repository path or URL (file://, https://, ssh).
  // Set: every step of a variant runs in a clean, read-only checkout of that
  // variant's commit on the agent, and inputs are relative to it. Empty: run
  // in workdir.
  std::string source_repo;
  // source.bundle: a directory relative to the spec file ("." for its own)
  // that the CLI packs and uploads (common/bundle). Set: every step runs in a
  // clean, read-only copy of that tree on the agent, and inputs are relative
  // to it. source_files: what to pack (empty: git-tracked and untracked
  // files that are not ignored, or every file outside git).
  std::string source_bundle;
  std::vector<std::string> source_files;
  // The SHA-256 of the bundle uploaded at submit; never read from YAML: the
  // controller fills it in from the stored experiment. Also set when the
  // spec has no source and was submitted with `benchfleet submit --bundle`.
  std::string source_bundle_digest;
  // Absolute directory the commands run in (spec `workdir:`, default: the spec
  // file's directory made absolute by the loader).
  std::string workdir;

  std::optional<CommandSpec> setup;  // untimed, once per variant
  CommandSpec command;               // benchmark.command or benchmark.argv
  std::vector<InputSpec> inputs;     // >= 1; fewer than 5 adds a warning
  int warmup = 3;                    // >= 0
  int runs = 10;                     // >= 10 unless allow_underpowered
  int max_runs = 20;                 // >= runs
  bool allow_underpowered = false;
  RunOrder order = RunOrder::kInterleaved;
  absl::Duration timeout = absl::Minutes(30);  // absolute cap per run, > 0
  std::optional<uint64_t>
      seed;  // benchmark.seed; absent = chosen and recorded at run time
  std::vector<int>
      cpus;  // benchmark.cpus: pin every run to these CPUs (empty = no pinning)

  std::string primary_metric =
      "wall_time";  // wall_time|user_time|sys_time|max_rss|<custom>
  std::vector<CustomMetricSpec> custom_metrics;

  std::optional<CommandSpec>
      correctness_command;  // once per variant; failure -> REJECT
  CompareMode compare = CompareMode::kStdout;
  std::string compare_path;  // for CompareMode::kFile, relative to the workdir

  std::vector<VariantSpec> variants;  // >= 2; variants[0] is the baseline
  VerdictSpec verdict;
  GateSpec gates;
  std::vector<std::string> notify;

  // Non-fatal findings (e.g. fewer than 5 inputs), each "file:line:col: field:
  // message".
  std::vector<std::string> warnings;

  const VariantSpec& baseline() const { return variants.front(); }

  // Whether steps run in a copy of the code made for them on the agent
  // (source.repo or source.bundle) rather than in workdir.
  bool HasSource() const {
    return !source_repo.empty() || !source_bundle.empty() ||
           !source_bundle_digest.empty();
  }
  // The directory the bundle is packed from on the submitting host.
  std::string BundleDir() const;
  // Where inputs are found on the submitting host: the bundle directory with
  // source.bundle, else workdir.
  std::string InputsDir() const {
    return source_bundle.empty() ? workdir : BundleDir();
  }

  // The ref `v` is built from with source.repo: its own, or the baseline's
  // when it names none (a variant that only changes env or command).
  const std::string& RefOf(const VariantSpec& v) const {
    return v.ref.empty() ? baseline().ref : v.ref;
  }
};

// The built-in metric names, valid as benchmark.metrics.primary.
inline constexpr const char* kBuiltinMetrics[] = {"wall_time", "user_time",
                                                  "sys_time", "max_rss"};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_SPEC_H_
