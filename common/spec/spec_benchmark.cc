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

void SpecParser::ReadBenchmark(const Item& item, ExperimentSpec* spec) {
  std::optional<Mapping> bench = ReadMapping(
      item, kBenchmarkKeys,
      "a mapping with command (or argv), inputs, runs and the other benchmark "
      "settings");
  if (!bench) return;
  if (bench->Find("command") == nullptr && bench->Find("argv") == nullptr) {
    Error(bench->mark(), yaml::Child(bench->path(), "command"),
          "missing; set benchmark.command (a shell string) or benchmark.argv "
          "(a list, run without a shell)");
  } else if (auto command = ReadCommandKeys(*bench)) {
    spec->command = std::move(*command);
  }

  if (const Item* inputs =
          Require(*bench, "inputs",
                  "add at least one input, e.g. - {name: small, path: "
                  "inputs/small.bin}")) {
    ReadInputs(*inputs, spec);
  }
  if (const Item* warmup = bench->Find("warmup")) {
    std::string expected = absl::StrCat("an integer from 0 to ", kMaxWarmup);
    if (auto v = ReadInt(*warmup, expected)) {
      if (*v < 0 || *v > kMaxWarmup) {
        Error(*warmup,
              absl::StrCat(*v, " is out of range; expected ", expected));
      } else {
        spec->warmup = static_cast<int>(*v);
      }
    }
  }
  bool allow_underpowered = false;
  if (const Item* allow = bench->Find("allow_underpowered")) {
    if (auto v = ReadBool(*allow)) allow_underpowered = *v;
  }
  spec->allow_underpowered = allow_underpowered;

  std::optional<int64_t> runs;
  if (const Item* runs_item = bench->Find("runs")) {
    runs = ReadInt(*runs_item, absl::StrCat("an integer from ", kMinRuns,
                                            " to ", kMaxRuns));
    if (runs && *runs > kMaxRuns) {
      Error(*runs_item,
            absl::StrCat(*runs, " runs is above the maximum of ", kMaxRuns,
                         " per input; expected at most ", kMaxRuns));
      runs.reset();
    } else if (runs && *runs < kMinRuns && !allow_underpowered) {
      Error(*runs_item,
            absl::StrCat(*runs, " runs is below the minimum of ", kMinRuns,
                         " per input; raise runs to at least ", kMinRuns,
                         " or set allow_underpowered: true"));
      runs.reset();
    } else if (runs && *runs < kMinUnderpoweredRuns) {
      Error(*runs_item,
            absl::StrCat(*runs, " runs is below ", kMinUnderpoweredRuns,
                         ", too few to measure variation even with "
                         "allow_underpowered; raise runs to at least ",
                         kMinUnderpoweredRuns));
      runs.reset();
    } else if (runs && *runs < kMinRuns) {
      Warn(*runs_item,
           absl::StrCat(*runs, " runs per input is below the minimum of ",
                        kMinRuns,
                        " (allowed by allow_underpowered: true); expect weaker "
                        "verdicts, raise runs to at least ",
                        kMinRuns, " for a full-strength result"));
    }
    if (runs) spec->runs = static_cast<int>(*runs);
  }
  spec->max_runs = std::max(20, spec->runs);
  if (const Item* max_runs = bench->Find("max_runs")) {
    std::string expected =
        absl::StrCat("an integer from runs (", spec->runs, ") to ", kMaxRuns);
    if (auto v = ReadInt(*max_runs, expected)) {
      if (*v > kMaxRuns) {
        Error(*max_runs, absl::StrCat(*v, " is above the maximum of ", kMaxRuns,
                                      "; expected ", expected));
      } else if (*v < spec->runs) {
        Error(*max_runs,
              absl::StrCat(*v, " is below runs (", spec->runs,
                           "); set max_runs to at least ", spec->runs,
                           " or remove it (default: the larger of 20 and "
                           "runs)"));
      } else {
        spec->max_runs = static_cast<int>(*v);
      }
    }
  }
  if (const Item* order = bench->Find("order")) {
    if (auto v = ReadString(*order)) {
      if (*v == "interleaved") {
        spec->order = RunOrder::kInterleaved;
      } else if (*v == "sequential") {
        spec->order = RunOrder::kSequential;
      } else {
        Error(*order, absl::StrCat(Quote(*v),
                                   " is not a run order; expected interleaved "
                                   "or sequential"));
      }
    }
  }
  if (const Item* timeout = bench->Find("timeout")) {
    if (auto v = ReadDuration(*timeout)) {
      if (*v <= absl::ZeroDuration()) {
        Error(*timeout, absl::StrCat(Quote(timeout->node->Scalar()),
                                     " is zero; expected a cap per run above "
                                     "zero, e.g. 30m"));
      } else {
        spec->timeout = *v;
      }
    }
  }
  if (const Item* seed = bench->Find("seed")) {
    constexpr absl::string_view kSeedExpected =
        "a whole number from 0 to 18446744073709551615";
    if (auto text = ReadScalar(*seed, kSeedExpected)) {
      uint64_t value = 0;
      if (text->empty() ||
          !std::all_of(text->begin(), text->end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(*text, &value)) {
        Error(*seed, absl::StrCat(Quote(*text),
                                  " is not an unsigned whole number; expected ",
                                  kSeedExpected));
      } else {
        spec->seed = value;
      }
    }
  }
  if (const Item* cpus = bench->Find("cpus")) {
    constexpr absl::string_view kCpusExpected =
        "a list of CPU numbers to pin every run to, e.g. [2, 3]";
    if (std::optional<std::vector<Item>> list =
            ReadList(*cpus, kCpusExpected)) {
      std::set<int> seen;
      for (const Item& c : *list) {
        std::optional<int64_t> v = ReadInt(c, kCpusExpected);
        if (!v) continue;
        if (*v < 0 || *v > 4095) {
          Error(c, absl::StrCat(*v, " is not a CPU number; expected ",
                                kCpusExpected));
        } else if (!seen.insert(static_cast<int>(*v)).second) {
          Error(c, absl::StrCat("CPU ", *v,
                                " is listed twice; list each CPU once"));
        } else {
          spec->cpus.push_back(static_cast<int>(*v));
        }
      }
      if (list->empty())
        Error(*cpus, absl::StrCat("is empty; expected ", kCpusExpected));
    }
  }
  if (const Item* metrics = bench->Find("metrics")) {
    ReadMetrics(*metrics, spec);
  }
}

void SpecParser::ReadInputs(const Item& item, ExperimentSpec* spec) {
  std::optional<std::vector<Item>> inputs = ReadList(
      item, "a list of inputs such as - {name: small, path: inputs/small.bin}");
  if (!inputs) return;
  if (inputs->empty()) {
    Error(item,
          "is empty; expected at least one input, e.g. - {name: small, path: "
          "inputs/small.bin}");
    return;
  }
  std::map<std::string, std::string>
      first_use;  // name -> path of its first use
  for (const Item& input_item : *inputs) {
    std::optional<Mapping> input = ReadMapping(
        input_item, kInputKeys,
        "a mapping such as {name: small, path: inputs/small.bin, weight: 1}");
    if (!input) continue;
    InputSpec parsed;
    bool ok = true;
    if (const Item* name = Require(
            *input, "name", "add name: with a-z, 0-9 and '_', '.', '-'")) {
      if (auto v = ReadName(*name, kInputName)) {
        auto [previous, inserted] = first_use.emplace(*v, name->path);
        if (!inserted) {
          Error(*name, absl::StrCat(Quote(*v), " is already the name of ",
                                    previous->second,
                                    "; expected a unique name for each input"));
          ok = false;
        }
        parsed.name = *v;
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const Item* path = Require(
            *input, "path",
            "add path: with the input file, relative to the work directory")) {
      if (auto v = ReadRelativePath(*path)) {
        parsed.path = *v;
        input_paths_.emplace_back(*path, *v);
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const Item* weight = input->Find("weight")) {
      constexpr absl::string_view kExpected = "a number above 0, e.g. 1";
      if (auto v = ReadNumber(*weight, kExpected)) {
        if (*v <= 0) {
          Error(*weight, absl::StrCat(Quote(weight->node->Scalar()),
                                      " is not above 0; expected ", kExpected));
          ok = false;
        } else {
          parsed.weight = *v;
        }
      } else {
        ok = false;
      }
    }
    if (ok) spec->inputs.push_back(std::move(parsed));
  }
  if (inputs->size() < static_cast<size_t>(kRecommendedInputs)) {
    Warn(item, absl::StrCat("has ", inputs->size(),
                            inputs->size() == 1 ? " input" : " inputs",
                            "; at least ", kRecommendedInputs,
                            " are recommended so that no single input decides "
                            "the verdict"));
  }
}

void SpecParser::ReadMetrics(const Item& item, ExperimentSpec* spec) {
  std::optional<Mapping> metrics =
      ReadMapping(item, kMetricsKeys,
                  "a mapping such as {primary: wall_time, custom: [...]}");
  if (!metrics) return;
  bool custom_ok = true;
  if (const Item* custom = metrics->Find("custom")) {
    std::optional<std::vector<Item>> list = ReadList(
        *custom,
        "a list of metrics such as - {name: mgas_per_s, regex: 'throughput: "
        "([0-9.]+)', better: higher}");
    if (!list) custom_ok = false;
    std::map<std::string, std::string> first_use;
    for (const Item& metric_item : list ? *list : std::vector<Item>{}) {
      std::optional<Mapping> metric = ReadMapping(
          metric_item, kCustomMetricKeys,
          "a mapping such as {name: mgas_per_s, regex: 'throughput: "
          "([0-9.]+)', better: higher}");
      if (!metric) {
        custom_ok = false;
        continue;
      }
      CustomMetricSpec parsed;
      bool ok = true;
      if (const Item* name =
              Require(*metric, "name", "add name: with a-z, 0-9 and '_'")) {
        std::optional<std::string> v = ReadName(*name, kMetricName);
        if (v &&
            std::find(std::begin(kBuiltinMetrics), std::end(kBuiltinMetrics),
                      *v) != std::end(kBuiltinMetrics)) {
          Error(*name, absl::StrCat(Quote(*v),
                                    " is a built-in metric; expected a new "
                                    "name for a custom metric"));
          v.reset();
        }
        if (v) {
          auto [previous, inserted] = first_use.emplace(*v, name->path);
          if (!inserted) {
            Error(*name,
                  absl::StrCat(Quote(*v), " is already the name of ",
                               previous->second,
                               "; expected a unique name for each metric"));
            v.reset();
          }
        }
        if (v) parsed.name = *v;
        ok = ok && v.has_value();
      } else {
        ok = false;
      }
      if (const Item* regex = Require(
              *metric, "regex",
              "add regex: with one capture group around the value, e.g. "
              "'throughput: ([0-9.]+)'")) {
        constexpr absl::string_view kExpected =
            "an RE2 regular expression (no backreferences or lookaround) with "
            "exactly one capture group around the value, e.g. "
            "'throughput: ([0-9.]+)'";
        std::optional<std::string> v = ReadNonEmptyString(*regex, kExpected);
        if (v) {
          const std::string why =
              v->size() > kMaxRegexLength
                  ? absl::StrCat("is ", v->size(),
                                 " characters long; expected at most ",
                                 kMaxRegexLength)
                  : MetricRegexProblem(*v, kExpected);
          if (!why.empty()) {
            Error(*regex, why);
            v.reset();
          }
        }
        if (v) parsed.regex = *v;
        ok = ok && v.has_value();
      } else {
        ok = false;
      }
      if (const Item* better = metric->Find("better")) {
        std::optional<std::string> v = ReadString(*better);
        if (v && *v == "lower") {
          parsed.better = Better::kLower;
        } else if (v && *v == "higher") {
          parsed.better = Better::kHigher;
        } else {
          if (v) {
            Error(*better, absl::StrCat(Quote(*v),
                                        " is not a direction; expected lower "
                                        "or higher"));
          }
          ok = false;
        }
      }
      if (ok) {
        spec->custom_metrics.push_back(std::move(parsed));
      } else {
        custom_ok = false;
      }
    }
  }
  if (const Item* primary = metrics->Find("primary")) {
    std::vector<std::string> known(std::begin(kBuiltinMetrics),
                                   std::end(kBuiltinMetrics));
    for (const CustomMetricSpec& m : spec->custom_metrics)
      known.push_back(m.name);
    std::optional<std::string> v = ReadScalar(
        *primary, absl::StrCat("one of ", absl::StrJoin(known, ", ")));
    if (v && std::find(known.begin(), known.end(), *v) != known.end()) {
      spec->primary_metric = *v;
    } else if (v && custom_ok) {
      // When a custom metric failed to parse, its name may be the one meant
      // here; its own error says what to fix.
      Error(*primary,
            absl::StrCat(Quote(*v),
                         " is neither a built-in nor a declared custom metric; "
                         "expected one of ",
                         absl::StrJoin(known, ", "),
                         ", or declare it under benchmark.metrics.custom"));
    }
  }
}

}  // namespace benchfleet::spec_internal
