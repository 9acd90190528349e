// The spec loader as a whole: reading files, YAML-level limits (syntax,
// documents, nesting, alias bombs, size), workdir resolution and complete
// specs with their defaults. Field-by-field refusals: spec_refusals_test.cc.
#include "common/spec_loader.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/spec_test_util.h"

namespace benchfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace ::benchfleet::spec_test;  // NOLINT(build/namespaces)

TEST(SpecLoaderTest, ReportsYamlSyntaxErrorAtItsPosition) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHeader,
                                 "benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs: [{name: a, path: a.bin}\n",
                                 kVariants)),
            "spec.yaml:7:1: invalid YAML: end of sequence flow not found; fix "
            "the YAML syntax at or before this point (brackets, quotes, "
            "indentation)");
}

// yaml-cpp 0.7's LoadAll loops forever on this (jbeder/yaml-cpp#1040), so
// returning at all is the guarantee under test (a hang fails at ctest's
// timeout); no wall-clock bound, which a loaded machine under ctest -j breaks.
TEST(SpecLoaderTest, RefusesStrayCommaAtDocumentLevelWithoutHanging) {
  EXPECT_EQ(ErrorOf(absl::StrCat(",", kHeader)),
            "spec.yaml:1:1: invalid YAML: unexpected ','; fix the YAML syntax "
            "at or before this point (brackets, quotes, indentation)");
}

TEST(SpecLoaderTest, RefusesDeeplyNestedYaml) {
  std::string yaml = absl::StrCat(kHeader, "notify: ", std::string(5000, '['));
  std::string error = ErrorOf(yaml);
  EXPECT_THAT(error, ::testing::StartsWith("spec.yaml:4:"));
  EXPECT_THAT(error, HasSubstr(": invalid YAML: nested more than "));
}

// The classic "billion laughs": ten levels of ten aliases each, 10^10 leaves if
// expanded.
std::string BillionLaughs() {
  std::string yaml = absl::StrCat(kHeader,
                                  "benchmark:\n"
                                  "  command: ./bench\n"
                                  "  inputs: [{name: a, path: a.bin}]\n",
                                  kVariants,
                                  "lol0: &a0 [lol, lol, lol, lol, lol, lol, "
                                  "lol, lol, lol, lol]\n");
  for (int level = 1; level < 10; ++level) {
    std::string ref = absl::StrCat("*a", level - 1);
    absl::StrAppend(&yaml, "lol", level, ": &a", level, " [",
                    absl::StrJoin(std::vector<std::string>(10, ref), ", "),
                    "]\n");
  }
  absl::StrAppend(&yaml, "notify: *a9\n");
  return yaml;
}

// The guarantee is that the walk stops at kMaxSpecNodes: the error names
// lol4, the first key whose expansion (10^5 leaves) crosses the limit, so
// lol5..lol9 (up to 10^10 leaves) were never expanded. No wall-clock bound.
TEST(SpecLoaderTest, RefusesBillionLaughsAliasBombQuickly) {
  std::string yaml = BillionLaughs();
  std::string error = ErrorOf(yaml);
  EXPECT_EQ(error,
            "spec.yaml:14:1: lol4: expands to more than 100000 YAML nodes once "
            "aliases (*name) are followed, which looks like an alias bomb; "
            "expected a spec that does not repeat large anchored values");
}

// A cycle has no end; returning with this error shows the walk was cut at
// the node limit.
TEST(SpecLoaderTest, RefusesSelfReferencingAlias) {
  std::string error = ErrorOf(absl::StrCat(WithBenchmark("benchmark:\n"
                                                         "  command: ./bench\n"
                                                         "  inputs: [{name: a, "
                                                         "path: a.bin}]\n"),
                                           "notify: &loop [*loop]\n"));
  EXPECT_EQ(error,
            "spec.yaml:10:1: notify: expands to more than 100000 YAML nodes "
            "once aliases (*name) are followed, which looks like an alias "
            "bomb; expected a spec that does not repeat large anchored values");
}

TEST(SpecLoaderTest, AcceptsSmallAliases) {
  absl::StatusOr<ExperimentSpec> spec = Parse(absl::StrCat(
      kHeader,
      "benchmark:\n"
      "  command: ./bench\n"
      "  inputs: [{name: a, path: a.bin}]\n"
      "variants:\n"
      "  - {name: baseline, env: &env {MALLOC_CONF: \"thp:always\"}}\n"
      "  - {name: fast, env: *env}\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->variants[1].env.at("MALLOC_CONF"), "thp:always");
}

TEST(SpecLoaderTest, RefusesTextLargerThanOneMebibyte) {
  std::string yaml = absl::StrCat(
      kHeader, "hypothesis: ", std::string(kMaxSpecBytes, 'x'), "\n");
  EXPECT_EQ(ErrorOf(yaml),
            "spec.yaml:1:1: the spec is larger than 1048576 bytes (1 MiB); "
            "expected a smaller spec, keep data in input files");
}

TEST(SpecLoaderTest, RefusesEmptyAndMultiDocumentFiles) {
  EXPECT_EQ(ErrorOf(""),
            "spec.yaml:1:1: the spec is empty; expected a mapping that starts "
            "with apiVersion: benchfleet/v1");
  EXPECT_EQ(ErrorOf("name: a\n---\nname: b\n"),
            "spec.yaml:2:1: the file holds more than one YAML document; "
            "expected exactly one, remove the extra --- sections");
  EXPECT_EQ(ErrorOf("- a\n- b\n"),
            "spec.yaml:1:1: got a list; expected a mapping with apiVersion, "
            "kind, name, benchmark and variants at the top level");
}

TEST(SpecLoaderTest, RequiresAnAbsoluteBaseDirForParseSpec) {
  SpecLoadOptions options;
  options.base_dir = "relative/dir";
  absl::StatusOr<ExperimentSpec> spec =
      ParseSpec("name: x\n", "spec.yaml", options);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spec.status().message(),
            "ParseSpec for spec.yaml: base_dir \"relative/dir\" is not "
            "absolute; pass the absolute directory of the spec file");
}

TEST(SpecLoaderTest, ReportsUnreadableFileAsNotFound) {
  absl::StatusOr<ExperimentSpec> spec =
      LoadSpecFile("/nonexistent/benchfleet/spec.yaml");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(spec.status().message(),
            "cannot read spec file \"/nonexistent/benchfleet/spec.yaml\": No "
            "such file or directory; check the path and permissions");
}

TEST(SpecLoaderTest, ChecksInputFilesOnRequest) {
  TempDir dir;
  dir.Write("inputs/a.bin", "data");
  std::string path = dir.Write(
      "spec.yaml", WithBenchmark("benchmark:\n"
                                 "  command: ./bench\n"
                                 "  inputs:\n"
                                 "    - {name: a, path: inputs/a.bin}\n"
                                 "    - {name: b, path: inputs/b.bin}\n"));
  EXPECT_TRUE(LoadSpecFile(path).ok());  // not checked by default
  SpecLoadOptions options;
  options.check_input_files = true;
  absl::StatusOr<ExperimentSpec> spec = LoadSpecFile(path, options);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spec.status().message(),
            absl::StrCat(path,
                         ":8:23: benchmark.inputs[1].path: "
                         "\"inputs/b.bin\" does not exist in ",
                         dir.path(),
                         "; expected an existing file, create it or fix the "
                         "path"));
}

// ---------------------------------------------------------------- good specs

// DESIGN.md §3, verbatim except for the added `zero-init` variant: the
// example's cache+zero-init combines a zero-init variant that it does not
// declare.
constexpr char kDesignExample[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: mpt-hash-cache              # [a-z0-9-], ≤ 63 chars
campaign: ethrex-q1               # optional
idea: mpt-hash-caching            # optional link into the backlog
hypothesis: Caching node hashes cuts hash computation by 20-40 %
requires: {labels: {gpu: rtx3090}}
source: {repo: /srv/git/ethrex.git}         # optional; one clean worktree per variant, commit recorded
setup: cargo build -p ethrex-benches --bin perf_bench --release   # untimed, once per variant
benchmark:
  command: ./target/release/perf_bench --input {input}   # or argv: [...] (no shell)
  inputs:                                                # ≥ 5 recommended; fewer → warning, recorded
    - {name: light_block, path: inputs/block_1000_light.bin, weight: 1}
  warmup: 3
  runs: 10            # ≥ 10 per input; fewer is refused unless `allow_underpowered: true`
  max_runs: 20        # adaptive extension when CV is too high
  order: interleaved  # interleaved (randomized blocks, seeded) | sequential
  timeout: 30m        # absolute cap per run
  metrics:
    primary: wall_time          # wall_time | user_time | sys_time | max_rss | <custom>
    custom:
      - {name: mgas_per_s, regex: 'throughput: ([0-9.]+) Mgas/s', better: higher}
correctness:
  command: cargo test --release   # once per variant; failure → REJECT
  compare: stdout                 # stdout | file:<path> | none; candidate vs baseline, per input
variants:
  - {name: baseline, ref: main}
  - {name: hash-cache, ref: bench/001-mpt-hash-cache}
  - {name: zero-init, ref: bench/004-zero-init}
  - {name: cache+zero-init, ref: bench/compound-1-4, combines: [hash-cache, zero-init]}
  - {name: big-pages, env: {MALLOC_CONF: "thp:always"}}   # a variant may override env, command/argv, setup
verdict: {profile: first-pass, alpha: 0.05, max_cv: 10%, kill_factor: 1.10, input_regression: 5%}
gates: {cooldown: 60s, max_gpu_temp_c: 50, max_cpu_temp_c: 70, max_load: 0.3, max_wait: 15m}
notify: [team-chat]
)";

TEST(SpecLoaderTest, LoadsTheDesignExampleWithEveryField) {
  absl::StatusOr<ExperimentSpec> spec =
      ParseSpec(kDesignExample, "design.yaml", TestOptions());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->source_path, "design.yaml");
  EXPECT_EQ(spec->source_text, kDesignExample);
  EXPECT_EQ(spec->api_version, "benchfleet/v1");
  EXPECT_EQ(spec->kind, "Experiment");
  EXPECT_EQ(spec->name, "mpt-hash-cache");
  EXPECT_EQ(spec->campaign, "ethrex-q1");
  EXPECT_EQ(spec->idea, "mpt-hash-caching");
  EXPECT_EQ(spec->hypothesis,
            "Caching node hashes cuts hash computation by 20-40 %");
  EXPECT_EQ(spec->required_labels,
            (std::map<std::string, std::string>{{"gpu", "rtx3090"}}));
  EXPECT_EQ(spec->source_repo, "/srv/git/ethrex.git");
  EXPECT_EQ(spec->workdir, "/srv/exp");
  ASSERT_TRUE(spec->setup.has_value());
  EXPECT_EQ(spec->setup->shell,
            "cargo build -p ethrex-benches --bin perf_bench --release");
  EXPECT_TRUE(spec->setup->argv.empty());
  EXPECT_EQ(spec->command.shell, "./target/release/perf_bench --input {input}");
  EXPECT_TRUE(spec->command.argv.empty());
  ASSERT_EQ(spec->inputs.size(), 1u);
  EXPECT_EQ(spec->inputs[0].name, "light_block");
  EXPECT_EQ(spec->inputs[0].path, "inputs/block_1000_light.bin");
  EXPECT_EQ(spec->inputs[0].weight, 1.0);
  EXPECT_EQ(spec->warmup, 3);
  EXPECT_EQ(spec->runs, 10);
  EXPECT_EQ(spec->max_runs, 20);
  EXPECT_FALSE(spec->allow_underpowered);
  EXPECT_EQ(spec->order, RunOrder::kInterleaved);
  EXPECT_EQ(spec->timeout, absl::Minutes(30));
  EXPECT_FALSE(spec->seed.has_value());
  EXPECT_EQ(spec->primary_metric, "wall_time");
  ASSERT_EQ(spec->custom_metrics.size(), 1u);
  EXPECT_EQ(spec->custom_metrics[0].name, "mgas_per_s");
  EXPECT_EQ(spec->custom_metrics[0].regex, "throughput: ([0-9.]+) Mgas/s");
  EXPECT_EQ(spec->custom_metrics[0].better, Better::kHigher);
  ASSERT_TRUE(spec->correctness_command.has_value());
  EXPECT_EQ(spec->correctness_command->shell, "cargo test --release");
  EXPECT_EQ(spec->compare, CompareMode::kStdout);
  EXPECT_EQ(spec->compare_path, "");

  ASSERT_EQ(spec->variants.size(), 5u);
  EXPECT_EQ(spec->baseline().name, "baseline");
  EXPECT_EQ(spec->variants[0].ref, "main");
  EXPECT_EQ(spec->variants[1].name, "hash-cache");
  EXPECT_EQ(spec->variants[1].ref, "bench/001-mpt-hash-cache");
  EXPECT_EQ(spec->variants[3].name, "cache+zero-init");
  EXPECT_EQ(spec->variants[3].ref, "bench/compound-1-4");
  EXPECT_THAT(spec->variants[3].combines,
              ElementsAre("hash-cache", "zero-init"));
  EXPECT_EQ(spec->variants[4].name, "big-pages");
  EXPECT_EQ(spec->variants[4].ref, "");
  EXPECT_EQ(
      spec->variants[4].env,
      (std::map<std::string, std::string>{{"MALLOC_CONF", "thp:always"}}));
  EXPECT_FALSE(spec->variants[4].command.has_value());
  EXPECT_FALSE(spec->variants[4].setup.has_value());

  EXPECT_EQ(spec->verdict.profile, DecisionProfile::kFirstPass);
  EXPECT_DOUBLE_EQ(spec->verdict.alpha, 0.05);
  EXPECT_DOUBLE_EQ(spec->verdict.max_cv, 0.10);
  EXPECT_DOUBLE_EQ(spec->verdict.kill_factor, 1.10);
  EXPECT_DOUBLE_EQ(spec->verdict.input_regression, 0.05);
  EXPECT_EQ(spec->gates.cooldown, absl::Seconds(60));
  EXPECT_EQ(spec->gates.max_gpu_temp_c, 50);
  EXPECT_EQ(spec->gates.max_cpu_temp_c, 70);
  EXPECT_DOUBLE_EQ(spec->gates.max_load, 0.3);
  EXPECT_EQ(spec->gates.max_wait, absl::Minutes(15));
  EXPECT_THAT(spec->notify, ElementsAre("team-chat"));
  EXPECT_THAT(spec->warnings,
              ElementsAre("design.yaml:13:5: benchmark.inputs: has 1 input; at "
                          "least 5 are recommended so that no single input "
                          "decides the verdict"));
}

TEST(SpecLoaderTest, LoadsNonDefaultValuesAndArgvForms) {
  absl::StatusOr<ExperimentSpec> spec = Parse(absl::StrCat(
      kHeader,
      "setup: [make, -j4]\n"
      "benchmark:\n"
      "  argv: [./bench, --input, \"{input}\"]\n"
      "  inputs:\n"
      "    - {name: a, path: a.bin, weight: 2.5}\n"
      "    - {name: b, path: b.bin}\n"
      "    - {name: c, path: c.bin}\n"
      "    - {name: d, path: d.bin}\n"
      "    - {name: e, path: e.bin}\n"
      "  warmup: 0\n"
      "  runs: 30\n"
      "  order: sequential\n"
      "  timeout: 1h30m\n"
      "  seed: 18446744073709551615\n"
      "  metrics: {primary: score, custom: [{name: score, regex: "
      "'s=(\\d+)'}]}\n"
      "correctness: {argv: [make, test], compare: \"file:out/result.txt\"}\n"
      "variants:\n"
      "  - {name: baseline}\n"
      "  - name: fast\n"
      "    argv: [./fast, \"{input}\"]\n"
      "    setup: make fast\n"
      "verdict: {profile: optimized, max_cv: 0.2, input_regression: 0%}\n"
      "gates: {cooldown: 0s, max_wait: 500ms, max_competing_cpu: 0.5}\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->warnings.empty());
  EXPECT_THAT(spec->setup->argv, ElementsAre("make", "-j4"));
  EXPECT_THAT(spec->command.argv, ElementsAre("./bench", "--input", "{input}"));
  EXPECT_EQ(spec->command.shell, "");
  EXPECT_EQ(spec->inputs.size(), 5u);
  EXPECT_DOUBLE_EQ(spec->inputs[0].weight, 2.5);
  EXPECT_EQ(spec->inputs[1].weight, 1.0);
  EXPECT_EQ(spec->warmup, 0);
  EXPECT_EQ(spec->runs, 30);
  EXPECT_EQ(spec->max_runs, 30);  // default: max(20, runs)
  EXPECT_EQ(spec->order, RunOrder::kSequential);
  EXPECT_EQ(spec->timeout, absl::Minutes(90));
  EXPECT_EQ(spec->seed, 18446744073709551615u);
  EXPECT_EQ(spec->primary_metric, "score");
  EXPECT_EQ(spec->custom_metrics[0].better, Better::kLower);
  EXPECT_THAT(spec->correctness_command->argv, ElementsAre("make", "test"));
  EXPECT_EQ(spec->compare, CompareMode::kFile);
  EXPECT_EQ(spec->compare_path, "out/result.txt");
  EXPECT_THAT(spec->variants[1].command->argv,
              ElementsAre("./fast", "{input}"));
  EXPECT_EQ(spec->variants[1].setup->shell, "make fast");
  EXPECT_EQ(spec->verdict.profile, DecisionProfile::kOptimized);
  EXPECT_DOUBLE_EQ(spec->verdict.max_cv, 0.2);
  EXPECT_EQ(spec->verdict.input_regression, 0.0);
  EXPECT_EQ(spec->gates.cooldown, absl::ZeroDuration());
  EXPECT_EQ(spec->gates.max_wait, absl::Milliseconds(500));
  EXPECT_DOUBLE_EQ(spec->gates.max_competing_cpu, 0.5);
}

TEST(SpecLoaderTest, AppliesDefaults) {
  absl::StatusOr<ExperimentSpec> spec =
      Parse(WithBenchmark("benchmark:\n"
                          "  command: ./bench {input}\n"
                          "  inputs: [{name: a, path: a.bin}]\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  ExperimentSpec defaults;
  EXPECT_EQ(spec->campaign, "");
  EXPECT_FALSE(spec->setup.has_value());
  EXPECT_EQ(spec->warmup, 3);
  EXPECT_EQ(spec->runs, 10);
  EXPECT_EQ(spec->max_runs, 20);
  EXPECT_FALSE(spec->allow_underpowered);
  EXPECT_EQ(spec->order, RunOrder::kInterleaved);
  EXPECT_EQ(spec->timeout, absl::Minutes(30));
  EXPECT_FALSE(spec->seed.has_value());
  EXPECT_EQ(spec->primary_metric, "wall_time");
  EXPECT_TRUE(spec->custom_metrics.empty());
  EXPECT_FALSE(spec->correctness_command.has_value());
  EXPECT_EQ(spec->compare, CompareMode::kStdout);
  EXPECT_EQ(spec->verdict.profile, defaults.verdict.profile);
  EXPECT_EQ(spec->verdict.alpha, defaults.verdict.alpha);
  EXPECT_EQ(spec->verdict.max_cv, defaults.verdict.max_cv);
  EXPECT_EQ(spec->verdict.kill_factor, defaults.verdict.kill_factor);
  EXPECT_EQ(spec->verdict.input_regression, defaults.verdict.input_regression);
  EXPECT_EQ(spec->gates.cooldown, absl::Seconds(60));
  EXPECT_EQ(spec->gates.max_wait, absl::Minutes(15));
  EXPECT_EQ(spec->gates.max_gpu_temp_c, 50);
  EXPECT_EQ(spec->gates.max_cpu_temp_c, 70);
  EXPECT_EQ(spec->gates.max_load, 0.3);
  EXPECT_TRUE(spec->notify.empty());
  EXPECT_EQ(spec->workdir, "/srv/exp");
}

TEST(SpecLoaderTest, WarnsWithLocationWhenFewerThanFiveInputs) {
  absl::StatusOr<ExperimentSpec> spec =
      Parse(WithBenchmark("benchmark:\n"
                          "  command: ./bench\n"
                          "  inputs:\n"
                          "    - {name: a, path: a.bin}\n"
                          "    - {name: b, path: b.bin}\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->warnings,
              ElementsAre("spec.yaml:7:5: benchmark.inputs: has 2 inputs; at "
                          "least 5 are recommended so that no single input "
                          "decides the verdict"));
}

TEST(SpecLoaderTest, DefaultsWorkdirToTheSpecFilesDirectory) {
  TempDir dir;
  std::string path =
      dir.Write("exp/spec.yaml", WithBenchmark("benchmark:\n"
                                               "  command: ./bench\n"
                                               "  inputs: [{name: a, path: "
                                               "a.bin}]\n"));
  absl::StatusOr<ExperimentSpec> spec = LoadSpecFile(path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->workdir, dir.path() + "/exp");
  EXPECT_EQ(spec->source_path, path);
  EXPECT_THAT(spec->source_text, HasSubstr("name: demo"));
  EXPECT_THAT(spec->warnings, ElementsAre(HasSubstr(path + ":6:11: ")));
}

TEST(SpecLoaderTest, DefaultsWorkdirForARelativeSpecPath) {
  TempDir dir;
  dir.Write("exp/spec.yaml", WithBenchmark("benchmark:\n"
                                           "  command: ./bench\n"
                                           "  inputs: [{name: a, path: "
                                           "a.bin}]\n"));
  std::filesystem::path previous = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  absl::StatusOr<ExperimentSpec> spec = LoadSpecFile("exp/spec.yaml");
  std::filesystem::current_path(previous);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(
      spec->workdir,
      std::filesystem::path(dir.path()).lexically_normal().string() + "/exp");
}

TEST(SpecLoaderTest, ResolvesRelativeWorkdirAgainstBaseDirAndNormalizes) {
  std::string bench = WithBenchmark(
      "benchmark:\n"
      "  command: ./bench\n"
      "  inputs: [{name: a, path: a.bin}]\n");
  absl::StatusOr<ExperimentSpec> spec =
      Parse(absl::StrCat(bench, "workdir: ./build/../run/\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->workdir, "/srv/exp/run");
  spec = Parse(absl::StrCat(bench, "workdir: /data//bench/\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->workdir, "/data/bench");
}

TEST(SpecLoaderTest, ParsesDurationsWithUnits) {
  EXPECT_EQ(*ParseDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDuration("60s"), absl::Seconds(60));
  EXPECT_EQ(*ParseDuration("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDuration("15m"), absl::Minutes(15));
  EXPECT_EQ(*ParseDuration("1h"), absl::Hours(1));
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("0s"), absl::ZeroDuration());
}

TEST(SpecLoaderTest, RefusesDurationsWithoutUnitOrSign) {
  EXPECT_EQ(ParseDuration("10").status().message(),
            "\"10\" has no unit; expected a number with a unit (ms, s, m, h), "
            "e.g. 500ms, 60s, 15m or 1h30m");
  EXPECT_EQ(ParseDuration("-5s").status().message(),
            "\"-5s\" is negative; expected a duration of zero or more, e.g. "
            "60s");
  for (const char* bad : {"abc", "", "5x", "1h30", "s", "+5s", "1e3s", "5 s"}) {
    EXPECT_EQ(ParseDuration(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(SpecLoaderTest, ParsesPercentagesAndFractions) {
  EXPECT_DOUBLE_EQ(*ParsePercent("10%"), 0.10);
  EXPECT_DOUBLE_EQ(*ParsePercent("2.5%"), 0.025);
  EXPECT_DOUBLE_EQ(*ParsePercent("0%"), 0.0);
  EXPECT_DOUBLE_EQ(*ParsePercent("0.1"), 0.1);
  EXPECT_EQ(ParsePercent("ten%").status().message(),
            "\"ten%\" is not a percentage; expected a number followed by %, "
            "e.g. 10%, or a fraction such as 0.1");
  EXPECT_EQ(ParsePercent("-3%").status().message(),
            "\"-3%\" is negative; expected a percentage of 0% or more, e.g. "
            "10%");
  for (const char* bad : {"", "%", "inf%", "nan", "0x10%", "10%%"}) {
    EXPECT_FALSE(ParsePercent(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace benchfleet
