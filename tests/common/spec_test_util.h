// Helpers shared by the spec loader's tests (spec_loader_test.cc: files, YAML
// limits and complete specs; spec_refusals_test.cc: field-by-field refusals):
// a spec header and variants to build specs from, ParseSpec with a fixed
// base_dir, the full error text of a refused spec, and a temp directory.
// Test-only; not thread-safe (TempDir touches the file system).
#ifndef BENCHFLEET_TESTS_COMMON_SPEC_TEST_UTIL_H_
#define BENCHFLEET_TESTS_COMMON_SPEC_TEST_UTIL_H_

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/spec_loader.h"
#include "gtest/gtest.h"

namespace benchfleet::spec_test {

inline constexpr char kBaseDir[] = "/srv/exp";

// Lines 1-3 of most specs below; the benchmark section then starts on line 4.
inline constexpr char kHeader[] =
    "apiVersion: benchfleet/v1\n"
    "kind: Experiment\n"
    "name: demo\n";
inline constexpr char kVariants[] =
    "variants:\n"
    "  - {name: baseline}\n"
    "  - {name: fast}\n";

inline SpecLoadOptions TestOptions() {
  SpecLoadOptions options;
  options.base_dir = kBaseDir;
  return options;
}

inline absl::StatusOr<ExperimentSpec> Parse(const std::string& yaml) {
  return ParseSpec(yaml, "spec.yaml", TestOptions());
}

// The spec built from kHeader, `benchmark` (from line 4 on) and kVariants.
inline std::string WithBenchmark(const std::string& benchmark) {
  return absl::StrCat(kHeader, benchmark, kVariants);
}

// The full message of a spec that must be refused.
inline std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<ExperimentSpec> spec = Parse(yaml);
  EXPECT_FALSE(spec.ok()) << "accepted:\n" << yaml;
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

inline std::vector<std::string> ErrorLinesOf(const std::string& yaml) {
  return absl::StrSplit(ErrorOf(yaml), '\n');
}

// A fresh directory under the test's temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "/spec_loader_test.XXXXXX";
    // TempDir() ends in '/'; normalize so paths compare equal to the loader's.
    EXPECT_NE(mkdtemp(pattern.data()), nullptr);
    path_ = std::filesystem::path(pattern).lexically_normal().string();
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& text) const {
    std::filesystem::path file = std::filesystem::path(path_) / name;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << text;
    return file.string();
  }

 private:
  std::string path_;
};

}  // namespace benchfleet::spec_test

#endif  // BENCHFLEET_TESTS_COMMON_SPEC_TEST_UTIL_H_
