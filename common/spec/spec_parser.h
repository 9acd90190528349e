// Internal to the spec loader (common/spec_loader.h): the SpecParser that
// reads an experiment spec section by section, and the schema's constants
// (allowed keys, limits, name rules). Each section's reader lives in its own
// file under common/spec/: spec_parser.cc (the document and its top level,
// workdir), spec_values.cc (names, paths, commands, string maps),
// spec_benchmark.cc (benchmark, inputs, metrics), spec_variants.cc
// (correctness, variants), spec_verdict.cc (verdict, gates). The YAML itself
// is parsed and walked by common/yaml/.
//
// Not part of the public API: only common/spec/ and common/spec_loader.cc
// include this. A SpecParser reads one document and is not thread-safe.
#ifndef BENCHFLEET_COMMON_SPEC_SPEC_PARSER_H_
#define BENCHFLEET_COMMON_SPEC_SPEC_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/spec.h"
#include "common/spec_loader.h"
#include "common/yaml/located_reader.h"
#include "common/yaml/yaml_values.h"

namespace benchfleet::spec_internal {

using yaml::Item;
using yaml::Mapping;
using yaml::Quote;
using yaml::QuoteChar;

inline constexpr absl::string_view kApiVersion = "benchfleet/v1";
inline constexpr absl::string_view kKind = "Experiment";
inline constexpr size_t kMaxNameLength = 63;
inline constexpr int64_t kMaxRuns = 10000;
inline constexpr int64_t kMaxWarmup = 1000;
// Underpowered runs are allowed on request, but a CV needs at least two
// samples.
inline constexpr int64_t kMinUnderpoweredRuns = 2;
inline constexpr size_t kMaxRegexLength = 1024;
// A spec with hundreds of errors is the wrong file; the first ones say enough.
inline constexpr size_t kMaxErrorsShown = 100;

inline constexpr absl::string_view kTopKeys[] = {
    "apiVersion", "kind",    "name",    "campaign", "idea",      "hypothesis",
    "requires",   "source",  "workdir", "setup",    "benchmark", "correctness",
    "variants",   "verdict", "gates",   "notify"};
inline constexpr absl::string_view kRequiresKeys[] = {"labels"};
inline constexpr absl::string_view kSourceKeys[] = {"repo", "bundle", "files"};
inline constexpr absl::string_view kBenchmarkKeys[] = {"command",
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
inline constexpr absl::string_view kInputKeys[] = {"name", "path", "weight"};
inline constexpr absl::string_view kMetricsKeys[] = {"primary", "custom"};
inline constexpr absl::string_view kCustomMetricKeys[] = {"name", "regex",
                                                          "better"};
inline constexpr absl::string_view kCorrectnessKeys[] = {"command", "argv",
                                                         "compare"};
inline constexpr absl::string_view kVariantKeys[] = {
    "name", "ref", "combines", "env", "command", "argv", "setup"};
inline constexpr absl::string_view kVerdictKeys[] = {
    "profile", "alpha", "max_cv", "kill_factor", "input_regression"};
inline constexpr absl::string_view kGateKeys[] = {
    "cooldown", "max_gpu_temp_c", "max_cpu_temp_c",
    "max_load", "max_wait",       "max_competing_cpu"};

inline constexpr absl::string_view kCommandExpected =
    "a shell command string or an argv list such as [./bench, \"{input}\"]";
inline constexpr absl::string_view kArgvExpected =
    "an argv list such as [./bench, --input, \"{input}\"]";

// Character rules for the names in a spec. All are lowercase so they can be
// used in paths, metric labels and branch names without quoting.
struct NameRule {
  absl::string_view extra_chars;  // allowed besides a-z and 0-9
  absl::string_view description;  // for messages
  char replacement;               // used to suggest a fixed name
};
inline constexpr NameRule kExperimentName = {"-", "a-z, 0-9 and '-'", '-'};
inline constexpr NameRule kVariantName = {
    "+_.-", "a-z, 0-9 and '+', '_', '.', '-'", '-'};
inline constexpr NameRule kInputName = {"_.-", "a-z, 0-9 and '_', '.', '-'",
                                        '-'};
inline constexpr NameRule kMetricName = {"_", "a-z, 0-9 and '_'", '_'};

// What is wrong with a custom metric regex, "" if nothing: it is checked with
// the very compilation the agent applies to stdout (RE2, not std::regex).
std::string MetricRegexProblem(const std::string& pattern,
                               absl::string_view expected);

class SpecParser : public yaml::LocatedReader {
 public:
  SpecParser(std::string display_path, SpecLoadOptions options)
      : LocatedReader(std::move(display_path)), options_(std::move(options)) {}

  absl::StatusOr<ExperimentSpec> Parse(absl::string_view yaml);

 private:
  // --- values (spec_values.cc) ---
  std::optional<std::string> ReadName(const Item& item, const NameRule& rule);
  std::optional<std::string> ReadRelativePath(const Item& item);
  std::optional<CommandSpec> ReadCommand(const Item& item, bool argv_only);
  std::optional<CommandSpec> ReadCommandKeys(const Mapping& mapping);
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

  SpecLoadOptions options_;
  // Input paths with where they were written, for check_input_files.
  std::vector<std::pair<Item, std::string>> input_paths_;
};

}  // namespace benchfleet::spec_internal

#endif  // BENCHFLEET_COMMON_SPEC_SPEC_PARSER_H_
