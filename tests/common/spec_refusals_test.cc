// The spec loader refusing bad fields, section by section, with the exact
// message (file:line:col: field: what is wrong; what is expected).
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/spec_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/spec_test_util.h"

namespace benchfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace ::benchfleet::spec_test;  // NOLINT(build/namespaces)

// ---------------------------------------------------------------- bad specs

TEST(SpecLoaderTest, RefusesRunsThatIsNotANumber) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  runs: ten\n")),
            "spec.yaml:7:9: benchmark.runs: \"ten\" is not a whole number; "
            "expected an integer from 10 to 10000");
}

TEST(SpecLoaderTest, RefusesInputsGivenAsAMapping) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: {name: a, path: a.bin}\n")),
            "spec.yaml:6:11: benchmark.inputs: got a mapping; expected a list "
            "of inputs such as - {name: small, path: inputs/small.bin}");
}

TEST(SpecLoaderTest, RefusesBenchmarkThatIsAString) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark: ./bench\n")),
            "spec.yaml:4:12: benchmark: got \"./bench\"; expected a mapping "
            "with command (or argv), inputs, runs and the other benchmark "
            "settings");
}

TEST(SpecLoaderTest, RefusesUnknownTopLevelKey) {
  EXPECT_EQ(ErrorOf(absl::StrCat("owner: bob\n", kHeader,
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n",
                                 kVariants)),
            "spec.yaml:1:1: owner: unknown key; expected one of the keys "
            "allowed at the top level: apiVersion, kind, name, campaign, idea, "
            "hypothesis, requires, source, workdir, setup, benchmark, "
            "correctness, variants, verdict, gates, notify");
}

TEST(SpecLoaderTest, RefusesUnknownNestedKeyAndSuggestsTheClosest) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  rnus: 10\n")),
            "spec.yaml:7:3: benchmark.rnus: unknown key (did you mean runs?); "
            "expected one of the keys allowed in benchmark: command, argv, "
            "inputs, warmup, runs, max_runs, allow_underpowered, order, "
            "timeout, seed, cpus, metrics");
}

TEST(SpecLoaderTest, RefusesUnknownKeyInsideAnInput) {
  EXPECT_EQ(
      ErrorOf(WithBenchmark("benchmark:\n"
                            "  command: ./bench\n"
                            "  inputs:\n"
                            "    - {name: a, path: a.bin, wieght: 2}\n")),
      "spec.yaml:7:30: benchmark.inputs[0].wieght: unknown key (did you mean "
      "weight?); expected one of the keys allowed in benchmark.inputs[0]: "
      "name, path, weight");
}

TEST(SpecLoaderTest, RefusesBenchmarkWithoutCommand) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  inputs: [{name: a, path: a.bin}]\n")),
            "spec.yaml:5:3: benchmark.command: missing; set benchmark.command "
            "(a shell string) or benchmark.argv (a list, run without a shell)");
}

TEST(SpecLoaderTest, RefusesBothCommandAndArgv) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  argv: [./bench]\n"
                                  "  inputs: [{name: a, path: a.bin}]\n")),
            "spec.yaml:6:9: benchmark.argv: is set together with command; "
            "expected only one of them: command (run by /bin/sh -c) or argv "
            "(run without a shell)");
}

TEST(SpecLoaderTest, RefusesUnderpoweredRunsWithoutOptIn) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  runs: 5\n")),
            "spec.yaml:7:9: benchmark.runs: 5 runs is below the minimum of 10 "
            "per input; raise runs to at least 10 or set allow_underpowered: "
            "true");
}

TEST(SpecLoaderTest, AcceptsUnderpoweredRunsWithOptInAndWarns) {
  absl::StatusOr<ExperimentSpec> spec =
      Parse(WithBenchmark("benchmark:\n"
                          "  command: ./bench\n"
                          "  inputs: [{name: a, path: a.bin}]\n"
                          "  runs: 5\n"
                          "  allow_underpowered: true\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->runs, 5);
  EXPECT_TRUE(spec->allow_underpowered);
  EXPECT_EQ(spec->max_runs, 20);
  EXPECT_THAT(spec->warnings,
              ElementsAre(HasSubstr("spec.yaml:6:11: benchmark.inputs: has 1 "
                                    "input"),
                          "spec.yaml:7:9: benchmark.runs: 5 runs per input is "
                          "below the minimum of 10 (allowed by "
                          "allow_underpowered: true); expect weaker verdicts, "
                          "raise runs to at least 10 for a full-strength "
                          "result"));
}

TEST(SpecLoaderTest, RefusesSingleRunEvenWithOptIn) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  runs: 1\n"
                                  "  allow_underpowered: true\n")),
            "spec.yaml:7:9: benchmark.runs: 1 runs is below 2, too few to "
            "measure variation even with allow_underpowered; raise runs to at "
            "least 2");
}

TEST(SpecLoaderTest, RefusesDuplicateVariantNames) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHeader,
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n"
                                 "variants:\n"
                                 "  - {name: baseline}\n"
                                 "  - {name: fast}\n"
                                 "  - {name: baseline, env: {A: b}}\n")),
            "spec.yaml:10:12: variants[2].name: \"baseline\" is already the "
            "name of variants[0].name; expected a unique name for each "
            "variant");
}

TEST(SpecLoaderTest, RefusesDurationWithoutUnit) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  timeout: 10\n")),
            "spec.yaml:7:12: benchmark.timeout: \"10\" has no unit; expected a "
            "number with a unit (ms, s, m, h), e.g. 500ms, 60s, 15m or 1h30m");
}

TEST(SpecLoaderTest, RefusesNegativeDuration) {
  EXPECT_EQ(ErrorOf(absl::StrCat(WithBenchmark("benchmark:\n"
                                               "  command: ./bench\n"
                                               "  inputs: [{name: a, path: "
                                               "a.bin}]\n"),
                                 "gates: {cooldown: -5s}\n")),
            "spec.yaml:10:19: gates.cooldown: \"-5s\" is negative; expected a "
            "duration of zero or more, e.g. 60s");
}

TEST(SpecLoaderTest, RefusesNegativeCompetingCpu) {
  EXPECT_EQ(ErrorOf(absl::StrCat(WithBenchmark("benchmark:\n"
                                               "  command: ./bench\n"
                                               "  inputs: [{name: a, path: "
                                               "a.bin}]\n"),
                                 "gates: {max_competing_cpu: -1}\n")),
            "spec.yaml:10:28: gates.max_competing_cpu: \"-1\" is negative; "
            "expected CPU cores (0 or more, e.g. 0.25) that other processes "
            "may use");
}

TEST(SpecLoaderTest, RefusesDurationThatIsNotADuration) {
  EXPECT_EQ(ErrorOf(absl::StrCat(WithBenchmark("benchmark:\n"
                                               "  command: ./bench\n"
                                               "  inputs: [{name: a, path: "
                                               "a.bin}]\n"),
                                 "gates: {max_wait: abc}\n")),
            "spec.yaml:10:19: gates.max_wait: \"abc\" is not a duration; "
            "expected a number with a unit (ms, s, m, h), e.g. 500ms, 60s, 15m "
            "or 1h30m");
}

TEST(SpecLoaderTest, RefusesPercentageThatIsNotANumber) {
  EXPECT_EQ(ErrorOf(absl::StrCat(WithBenchmark("benchmark:\n"
                                               "  command: ./bench\n"
                                               "  inputs: [{name: a, path: "
                                               "a.bin}]\n"),
                                 "verdict: {max_cv: ten%}\n")),
            "spec.yaml:10:19: verdict.max_cv: \"ten%\" is not a percentage; "
            "expected a number followed by %, e.g. 10%, or a fraction such as "
            "0.1");
}

TEST(SpecLoaderTest, RefusesNegativePercentage) {
  EXPECT_EQ(ErrorOf(absl::StrCat(WithBenchmark("benchmark:\n"
                                               "  command: ./bench\n"
                                               "  inputs: [{name: a, path: "
                                               "a.bin}]\n"),
                                 "verdict:\n"
                                 "  input_regression: -3%\n")),
            "spec.yaml:11:21: verdict.input_regression: \"-3%\" is negative; "
            "expected a percentage of 0% or more, e.g. 10%");
}

TEST(SpecLoaderTest, RefusesNameLongerThan63Characters) {
  std::string name(64, 'a');
  EXPECT_EQ(
      ErrorOf(absl::StrCat("apiVersion: benchfleet/v1\n"
                           "kind: Experiment\n"
                           "name: ",
                           name,
                           "\n"
                           "benchmark:\n"
                           "  command: ./bench\n"
                           "  inputs: [{name: a, path: a.bin}]\n",
                           kVariants)),
      "spec.yaml:3:7: name: "
      "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" "
      "is 64 characters long; expected at most 63 characters");
}

TEST(SpecLoaderTest, AcceptsNameOf63Characters) {
  std::string name(63, 'a');
  absl::StatusOr<ExperimentSpec> spec = Parse(
      absl::StrCat("apiVersion: benchfleet/v1\nkind: Experiment\nname: ", name,
                   "\nbenchmark:\n"
                   "  command: ./bench\n"
                   "  inputs: [{name: a, path: a.bin}]\n",
                   kVariants));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, name);
}

TEST(SpecLoaderTest, RefusesNameWithBadCharactersAndSuggestsOne) {
  EXPECT_EQ(ErrorOf(absl::StrCat("apiVersion: benchfleet/v1\n"
                                 "kind: Experiment\n"
                                 "name: MPT_hash cache\n"
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n",
                                 kVariants)),
            "spec.yaml:3:7: name: \"MPT_hash cache\" contains 'M'; expected "
            "only a-z, 0-9 and '-', e.g. \"mpt-hash-cache\"");
}

TEST(SpecLoaderTest, RefusesNameStartingWithADash) {
  EXPECT_EQ(ErrorOf(absl::StrCat("apiVersion: benchfleet/v1\n"
                                 "kind: Experiment\n"
                                 "name: -demo\n"
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n",
                                 kVariants)),
            "spec.yaml:3:7: name: \"-demo\" starts with '-'; expected a letter "
            "or digit first");
}

TEST(SpecLoaderTest, RefusesInputPathEscapingTheWorkdir) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs:\n"
                                  "    - {name: a, path: inputs/../../x}\n")),
            "spec.yaml:7:23: benchmark.inputs[0].path: \"inputs/../../x\" "
            "escapes the work directory; expected a path inside it, e.g. "
            "inputs/small.bin");
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs:\n"
                                  "    - {name: a, path: ../x}\n")),
            "spec.yaml:7:23: benchmark.inputs[0].path: \"../x\" escapes the "
            "work directory; expected a path inside it, e.g. "
            "inputs/small.bin");
}

TEST(SpecLoaderTest, RefusesAbsoluteInputPath) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs:\n"
                                  "    - {name: a, path: /etc/passwd}\n")),
            "spec.yaml:7:23: benchmark.inputs[0].path: \"/etc/passwd\" is "
            "absolute; expected a path relative to the work directory, e.g. "
            "inputs/small.bin (copy or link the file into it)");
}

TEST(SpecLoaderTest, NormalizesInputPathsThatStayInside) {
  absl::StatusOr<ExperimentSpec> spec =
      Parse(WithBenchmark("benchmark:\n"
                          "  command: ./bench\n"
                          "  inputs:\n"
                          "    - {name: a, path: ./inputs/../data/a.bin}\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->inputs[0].path, "data/a.bin");
}

TEST(SpecLoaderTest, RefusesEmptyVariantList) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHeader,
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n"
                                 "variants: []\n")),
            "spec.yaml:7:11: variants: has 0 variants; expected at least 2: "
            "the baseline first, then the candidates to compare with it");
}

TEST(SpecLoaderTest, RefusesSingleVariant) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHeader,
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n"
                                 "variants:\n"
                                 "  - {name: baseline}\n")),
            "spec.yaml:8:3: variants: has 1 variant; expected at least 2: the "
            "baseline first, then the candidates to compare with it");
}

TEST(SpecLoaderTest, RefusesUnknownPrimaryMetric) {
  EXPECT_EQ(
      ErrorOf(
          WithBenchmark("benchmark:\n"
                        "  command: ./bench\n"
                        "  inputs: [{name: a, path: a.bin}]\n"
                        "  metrics:\n"
                        "    primary: throughput\n"
                        "    custom:\n"
                        "      - {name: mgas_per_s, regex: 'm: ([0-9.]+)'}\n")),
      "spec.yaml:8:14: benchmark.metrics.primary: \"throughput\" is neither a "
      "built-in nor a declared custom metric; expected one of wall_time, "
      "user_time, sys_time, max_rss, mgas_per_s, or declare it under "
      "benchmark.metrics.custom");
}

TEST(SpecLoaderTest, RefusesCustomMetricRegexThatDoesNotCompile) {
  EXPECT_EQ(
      ErrorOf(WithBenchmark(
          "benchmark:\n"
          "  command: ./bench\n"
          "  inputs: [{name: a, path: a.bin}]\n"
          "  metrics:\n"
          "    custom:\n"
          "      - {name: mgas, regex: 'throughput: ([0-9.]+'}\n")),
      "spec.yaml:9:29: benchmark.metrics.custom[0].regex: \"throughput: "
      "([0-9.]+\" does not compile with RE2 (missing ): throughput: "
      "([0-9.]+); expected an RE2 regular expression (no backreferences or "
      "lookaround) with exactly one capture group around the value, e.g. "
      "'throughput: ([0-9.]+)'");
}

// The agent runs custom metric regexes with RE2, so a pattern only
// std::regex (ECMAScript) accepts must be refused at validate, not silently
// never match on the agent.
TEST(SpecLoaderTest, RefusesCustomMetricRegexWithABackreference) {
  EXPECT_EQ(
      ErrorOf(WithBenchmark("benchmark:\n"
                            "  command: ./bench\n"
                            "  inputs: [{name: a, path: a.bin}]\n"
                            "  metrics:\n"
                            "    custom:\n"
                            "      - {name: ops, regex: '(a)\\1'}\n")),
      "spec.yaml:9:28: benchmark.metrics.custom[0].regex: \"(a)\\1\" does "
      "not compile with RE2 (invalid escape sequence: \\1); expected an RE2 "
      "regular expression (no backreferences or lookaround) with exactly one "
      "capture group around the value, e.g. 'throughput: ([0-9.]+)'");
}

TEST(SpecLoaderTest, RefusesCustomMetricRegexWithALookahead) {
  EXPECT_THAT(
      ErrorOf(
          WithBenchmark("benchmark:\n"
                        "  command: ./bench\n"
                        "  inputs: [{name: a, path: a.bin}]\n"
                        "  metrics:\n"
                        "    custom:\n"
                        "      - {name: ops, regex: 'ops=([0-9]+)(?=x)'}\n")),
      HasSubstr("spec.yaml:9:28: benchmark.metrics.custom[0].regex: "
                "\"ops=([0-9]+)(?=x)\" does not compile with RE2 (invalid "
                "perl operator: (?=); expected an RE2 regular expression"));
}

TEST(SpecLoaderTest, AcceptsCustomMetricRegexInRe2Syntax) {
  // \d, a non-capturing group and a named group's RE2 spelling.
  absl::StatusOr<ExperimentSpec> spec = Parse(WithBenchmark(
      "benchmark:\n"
      "  command: ./bench\n"
      "  inputs: [{name: a, path: a.bin}]\n"
      "  metrics:\n"
      "    custom:\n"
      "      - {name: ops, regex: '^(?:ops|OPS)=(?P<v>\\d+(?:\\.\\d+)?)$'}\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->custom_metrics.size(), 1u);
  EXPECT_EQ(spec->custom_metrics[0].regex,
            "^(?:ops|OPS)=(?P<v>\\d+(?:\\.\\d+)?)$");
}

TEST(SpecLoaderTest, RefusesCustomMetricRegexWithoutCaptureGroup) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  metrics:\n"
                                  "    custom:\n"
                                  "      - name: mgas\n"
                                  "        regex: 'throughput: [0-9.]+'\n")),
            "spec.yaml:10:16: benchmark.metrics.custom[0].regex: "
            "\"throughput: [0-9.]+\" has 0 capture groups; expected an RE2 "
            "regular expression (no backreferences or lookaround) with exactly "
            "one capture group around the value, e.g. 'throughput: ([0-9.]+)'");
}

TEST(SpecLoaderTest, RefusesCustomMetricRegexWithTwoCaptureGroups) {
  EXPECT_THAT(ErrorOf(WithBenchmark("benchmark:\n"
                                    "  command: ./bench\n"
                                    "  inputs: [{name: a, path: a.bin}]\n"
                                    "  metrics:\n"
                                    "    custom:\n"
                                    "      - {name: ops, regex: '(a)=(b)'}\n")),
              HasSubstr("\"(a)=(b)\" has 2 capture groups; expected an RE2 "
                        "regular expression"));
}

TEST(SpecLoaderTest, RefusesCustomMetricNamedLikeABuiltin) {
  EXPECT_EQ(
      ErrorOf(WithBenchmark("benchmark:\n"
                            "  command: ./bench\n"
                            "  inputs: [{name: a, path: a.bin}]\n"
                            "  metrics:\n"
                            "    custom:\n"
                            "      - {name: wall_time, regex: 't=(\\d+)'}\n")),
      "spec.yaml:9:16: benchmark.metrics.custom[0].name: \"wall_time\" "
      "is a built-in metric; expected a new name for a custom metric");
}

TEST(SpecLoaderTest, RefusesMaxRunsBelowRuns) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  runs: 30\n"
                                  "  max_runs: 20\n")),
            "spec.yaml:8:13: benchmark.max_runs: 20 is below runs (30); set "
            "max_runs to at least 30 or remove it (default: the larger of 20 "
            "and runs)");
}

TEST(SpecLoaderTest, RefusesCombinesNamingAnUnknownVariant) {
  EXPECT_EQ(ErrorOf(absl::StrCat(
                kHeader,
                "benchmark:\n"
                "  command: ./bench\n"
                "  inputs: [{name: a, path: a.bin}]\n"
                "variants:\n"
                "  - {name: baseline}\n"
                "  - {name: hash-cache}\n"
                "  - {name: both, combines: [hash-cache, zero-init]}\n")),
            "spec.yaml:10:41: variants[2].combines[1]: \"zero-init\" is not a "
            "variant in this spec; expected one of: baseline, hash-cache");
}

TEST(SpecLoaderTest, RefusesWrongApiVersion) {
  EXPECT_EQ(ErrorOf(absl::StrCat("apiVersion: benchfleet/v2\n"
                                 "kind: Experiment\n"
                                 "name: demo\n"
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n",
                                 kVariants)),
            "spec.yaml:1:13: apiVersion: \"benchfleet/v2\" is not a supported "
            "apiVersion; expected benchfleet/v1");
}

TEST(SpecLoaderTest, RefusesWrongKind) {
  EXPECT_EQ(ErrorOf(absl::StrCat("apiVersion: benchfleet/v1\n"
                                 "kind: Job\n"
                                 "name: demo\n"
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n",
                                 kVariants)),
            "spec.yaml:2:7: kind: \"Job\" is not a supported kind; expected "
            "Experiment");
}

TEST(SpecLoaderTest, RefusesDuplicateInputNames) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs:\n"
                                  "    - {name: light, path: a.bin}\n"
                                  "    - {name: light, path: b.bin}\n")),
            "spec.yaml:8:14: benchmark.inputs[1].name: \"light\" is already "
            "the name of benchmark.inputs[0].name; expected a unique name for "
            "each input");
}

TEST(SpecLoaderTest, RefusesUnknownOrder) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  order: random\n")),
            "spec.yaml:7:10: benchmark.order: \"random\" is not a run order; "
            "expected interleaved or sequential");
}

TEST(SpecLoaderTest, RefusesEmptyInputList) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: []\n")),
            "spec.yaml:6:11: benchmark.inputs: is empty; expected at least one "
            "input, e.g. - {name: small, path: inputs/small.bin}");
}

TEST(SpecLoaderTest, PointsAtTheParentMappingForMissingRequiredKeys) {
  EXPECT_THAT(ErrorLinesOf("apiVersion: benchfleet/v1\n"
                           "benchmark:\n"
                           "  command: ./bench\n"
                           "  inputs:\n"
                           "    - {path: a.bin}\n"),
              ElementsAre("spec.yaml:1:1: kind: missing; add kind: Experiment",
                          "spec.yaml:1:1: name: missing; add name: with 1 to "
                          "63 characters from a-z, 0-9 and '-'",
                          "spec.yaml:1:1: variants: missing; add variants: "
                          "with at least 2 entries, the baseline first",
                          "spec.yaml:5:7: benchmark.inputs[0].name: missing; "
                          "add name: with a-z, 0-9 and '_', '.', '-'"));
}

TEST(SpecLoaderTest, ReportsEveryErrorOnItsOwnLineInDocumentOrder) {
  std::vector<std::string> lines =
      ErrorLinesOf(absl::StrCat(kHeader,
                                "benchmark:\n"
                                "  command: ./bench\n"
                                "  inputs: [{name: a, path: /a.bin}]\n"
                                "  runs: 3\n"
                                "  order: shuffled\n",
                                kVariants, "verdict: {alpha: 0.9}\n"));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_THAT(lines[0], HasSubstr("spec.yaml:6:28: benchmark.inputs[0].path:"));
  EXPECT_EQ(lines[1],
            "spec.yaml:7:9: benchmark.runs: 3 runs is below the minimum of 10 "
            "per input; raise runs to at least 10 or set allow_underpowered: "
            "true");
  EXPECT_THAT(lines[2], HasSubstr("spec.yaml:8:10: benchmark.order:"));
  EXPECT_EQ(lines[3],
            "spec.yaml:12:18: verdict.alpha: \"0.9\" is out of range; expected "
            "a number above 0 and at most 0.5, e.g. 0.05");
}

TEST(SpecLoaderTest, RefusesDuplicateKeys) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  runs: 10\n"
                                  "  runs: 20\n")),
            "spec.yaml:8:3: benchmark.runs: duplicate key (first set on line "
            "7); expected each key once, remove one of them");
}

TEST(SpecLoaderTest, ExplainsUnquotedInputPlaceholderInArgv) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  argv: [./bench, --input, {input}]\n"
                                  "  inputs: [{name: a, path: a.bin}]\n")),
            "spec.yaml:5:28: benchmark.argv[2]: got the mapping {input} (YAML "
            "reads unquoted {...} as a mapping); expected a string (one "
            "argument), so quote it: \"{input}\"");
}

TEST(SpecLoaderTest, RefusesVariantWithBothCommandAndArgv) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHeader,
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n"
                                 "variants:\n"
                                 "  - {name: baseline}\n"
                                 "  - {name: fast, command: ./fast, argv: "
                                 "[./fast]}\n")),
            "spec.yaml:9:41: variants[1].argv: is set together with command; "
            "expected only one of them: command (run by /bin/sh -c) or argv "
            "(run without a shell)");
}

TEST(SpecLoaderTest, RefusesBadEnvironmentVariableName) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHeader,
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}]\n"
                                 "variants:\n"
                                 "  - {name: baseline}\n"
                                 "  - {name: fast, env: {1X: y}}\n")),
            "spec.yaml:9:24: variants[1].env.1X: \"1X\" is not an environment "
            "variable name; expected letters, digits and '_', not starting "
            "with a digit");
}

TEST(SpecLoaderTest, RefusesNegativeSeed) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  seed: -1\n")),
            "spec.yaml:7:9: benchmark.seed: \"-1\" is not an unsigned whole "
            "number; expected a whole number from 0 to 18446744073709551615");
}

TEST(SpecLoaderTest, RefusesUnknownCompareModeAndEscapingCompareFile) {
  std::string bench = WithBenchmark(
      "benchmark:\n"
      "  command: ./bench\n"
      "  inputs: [{name: a, path: a.bin}]\n");
  EXPECT_EQ(ErrorOf(absl::StrCat(bench, "correctness: {compare: stderr}\n")),
            "spec.yaml:10:24: correctness.compare: \"stderr\" is not a compare "
            "mode; expected stdout, none or file:<path>");
  EXPECT_EQ(
      ErrorOf(absl::StrCat(bench, "correctness: {compare: file:../out}\n")),
      "spec.yaml:10:24: correctness.compare: \"../out\" escapes the work "
      "directory; expected a path inside it, e.g. inputs/small.bin");
}

TEST(SpecLoaderCpusTest, AcceptsCpuPinning) {
  absl::StatusOr<ExperimentSpec> spec =
      Parse(WithBenchmark("benchmark:\n"
                          "  command: ./bench\n"
                          "  inputs: [{name: a, path: a.bin}]\n"
                          "  cpus: [2, 3]\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->cpus, ElementsAre(2, 3));
}

TEST(SpecLoaderCpusTest, RefusesACpuListedTwice) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  cpus: [1, 1]\n")),
            "spec.yaml:7:13: benchmark.cpus[1]: CPU 1 is listed twice; list "
            "each CPU once");
}

TEST(SpecLoaderCpusTest, RefusesANegativeCpu) {
  EXPECT_EQ(ErrorOf(WithBenchmark("benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n"
                                  "  cpus: [-1]\n")),
            "spec.yaml:7:10: benchmark.cpus[0]: -1 is not a CPU number; "
            "expected a list of "
            "CPU numbers to pin every run to, e.g. [2, 3]");
}

}  // namespace
}  // namespace benchfleet
