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

void SpecParser::ReadVerdict(const Item& item, VerdictSpec* verdict) {
  std::optional<Mapping> mapping = ReadMapping(
      item, kVerdictKeys,
      "a mapping such as {profile: first-pass, alpha: 0.05, max_cv: 10%}");
  if (!mapping) return;
  if (const Item* profile = mapping->Find("profile")) {
    if (auto v = ReadString(*profile)) {
      if (*v == "first-pass") {
        verdict->profile = DecisionProfile::kFirstPass;
      } else if (*v == "optimized") {
        verdict->profile = DecisionProfile::kOptimized;
      } else {
        Error(*profile, absl::StrCat(Quote(*v),
                                     " is not a decision profile; expected "
                                     "first-pass or optimized"));
      }
    }
  }
  if (const Item* alpha = mapping->Find("alpha")) {
    constexpr absl::string_view kExpected =
        "a number above 0 and at most 0.5, e.g. 0.05";
    if (auto v = ReadNumber(*alpha, kExpected)) {
      if (*v <= 0 || *v > 0.5) {
        Error(*alpha, absl::StrCat(Quote(alpha->node->Scalar()),
                                   " is out of range; expected ", kExpected));
      } else {
        verdict->alpha = *v;
      }
    }
  }
  if (const Item* max_cv = mapping->Find("max_cv")) {
    if (auto v = ReadPercent(*max_cv)) {
      if (*v <= 0 || *v > 10) {
        Error(*max_cv,
              absl::StrCat(Quote(max_cv->node->Scalar()),
                           " is out of range; expected a percentage above 0% "
                           "and at most 1000%, e.g. 10%"));
      } else {
        verdict->max_cv = *v;
      }
    }
  }
  if (const Item* kill = mapping->Find("kill_factor")) {
    constexpr absl::string_view kExpected = "a number above 1, e.g. 1.10";
    if (auto v = ReadNumber(*kill, kExpected)) {
      if (*v <= 1) {
        Error(*kill, absl::StrCat(Quote(kill->node->Scalar()),
                                  " is not above 1; expected ", kExpected));
      } else {
        verdict->kill_factor = *v;
      }
    }
  }
  if (const Item* regression = mapping->Find("input_regression")) {
    if (auto v = ReadPercent(*regression)) {
      if (*v > 10) {
        Error(*regression,
              absl::StrCat(Quote(regression->node->Scalar()),
                           " is out of range; expected a percentage from 0% "
                           "to 1000%, e.g. 5%"));
      } else {
        verdict->input_regression = *v;
      }
    }
  }
}

void SpecParser::ReadGates(const Item& item, GateSpec* gates) {
  std::optional<Mapping> mapping = ReadMapping(
      item, kGateKeys,
      "a mapping such as {cooldown: 60s, max_gpu_temp_c: 50, max_load: 0.3}");
  if (!mapping) return;
  if (const Item* cooldown = mapping->Find("cooldown")) {
    if (auto v = ReadDuration(*cooldown)) gates->cooldown = *v;
  }
  if (const Item* max_wait = mapping->Find("max_wait")) {
    if (auto v = ReadDuration(*max_wait)) gates->max_wait = *v;
  }
  auto read_temp = [this](const Item* temp, double* out) {
    if (temp == nullptr) return;
    constexpr absl::string_view kExpected =
        "degrees Celsius above 0 and at most 150, e.g. 50";
    if (auto v = ReadNumber(*temp, kExpected)) {
      if (*v <= 0 || *v > 150) {
        Error(*temp, absl::StrCat(Quote(temp->node->Scalar()),
                                  " is out of range; expected ", kExpected));
      } else {
        *out = *v;
      }
    }
  };
  read_temp(mapping->Find("max_gpu_temp_c"), &gates->max_gpu_temp_c);
  read_temp(mapping->Find("max_cpu_temp_c"), &gates->max_cpu_temp_c);
  if (const Item* load = mapping->Find("max_load")) {
    constexpr absl::string_view kExpected =
        "a load average of 0 or more, e.g. 0.3";
    if (auto v = ReadNumber(*load, kExpected)) {
      if (*v < 0) {
        Error(*load, absl::StrCat(Quote(load->node->Scalar()),
                                  " is negative; expected ", kExpected));
      } else {
        gates->max_load = *v;
      }
    }
  }
  if (const Item* cpu = mapping->Find("max_competing_cpu")) {
    constexpr absl::string_view kExpected =
        "CPU cores (0 or more, e.g. 0.25) that other processes may use";
    if (auto v = ReadNumber(*cpu, kExpected)) {
      if (*v < 0) {
        Error(*cpu, absl::StrCat(Quote(cpu->node->Scalar()),
                                 " is negative; expected ", kExpected));
      } else {
        gates->max_competing_cpu = *v;
      }
    }
  }
}

}  // namespace benchfleet::spec_internal
