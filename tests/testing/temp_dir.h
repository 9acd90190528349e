// Test helpers shared by the integration and e2e suites: a self-removing
// temporary directory and a copy of the bundled examples into it. Not
// thread-safe.
#ifndef BENCHFLEET_TESTS_TESTING_TEMP_DIR_H_
#define BENCHFLEET_TESTS_TESTING_TEMP_DIR_H_

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace benchfleet::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "bf-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const {
    return path_ + "/" + name;
  }

 private:
  std::string path_;
};

inline std::string SourceDir() {
  const char* dir = std::getenv("BENCHFLEET_SOURCE_DIR");
  return dir != nullptr ? dir : BENCHFLEET_SOURCE_DIR_DEFAULT;
}

// Copies examples/{programs,inputs,quickstart.yaml} into `dir`.
inline void CopyExamples(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path src = fs::path(SourceDir()) / "examples";
  fs::copy(src / "programs", fs::path(dir) / "programs",
           fs::copy_options::recursive);
  fs::copy(src / "inputs", fs::path(dir) / "inputs",
           fs::copy_options::recursive);
  fs::copy_file(src / "quickstart.yaml", fs::path(dir) / "quickstart.yaml");
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

}  // namespace benchfleet::testing

#endif  // BENCHFLEET_TESTS_TESTING_TEMP_DIR_H_
