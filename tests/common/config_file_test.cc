// --config files (common/config_file.h) read through the located-YAML
// reader: values, labels, and the exact messages with file:line:col.
#include "common/config_file.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class ConfigFileTest : public ::testing::Test {
 protected:
  ConfigFileTest() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "bf-config-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  ~ConfigFileTest() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string Write(const std::string& text) {
    path_ = dir_ + "/controller.yaml";
    std::ofstream(path_) << text;
    return path_;
  }
  absl::StatusOr<std::map<std::string, std::string>> Load(
      const std::string& text) {
    return LoadConfigFile(Write(text), {"id", "labels", "port"});
  }
  std::string dir_;
  std::string path_;
};

TEST_F(ConfigFileTest, ReadsScalarsAndFlattensLabels) {
  auto config =
      Load("id: bench-01\nport: 7070\nlabels: {gpu: rtx, os: linux}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, (std::map<std::string, std::string>{
                         {"id", "bench-01"},
                         {"port", "7070"},
                         {"labels", "gpu=rtx,os=linux"}}));
}

TEST_F(ConfigFileTest, EmptyFileIsNoSettings) {
  auto config = Load("# nothing set\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->empty());
}

TEST_F(ConfigFileTest, OnlyTheFirstDocumentCounts) {
  auto config = Load("id: a\n---\nid: b\nbogus: 1\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->at("id"), "a");
}

TEST_F(ConfigFileTest, UnknownSettingNamesItsPlaceAndTheAllowedOnes) {
  auto config = Load("id: a\nprot: 1\n");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(),
            path_ + ":2:1: unknown setting 'prot'; allowed: id, labels, port");
}

TEST_F(ConfigFileTest, NonScalarValueIsRefusedAtTheValue) {
  auto config = Load("id: [a, b]\n");
  EXPECT_EQ(config.status().message(),
            path_ + ":1:5: id: expected a single value");
}

TEST_F(ConfigFileTest, LabelValueMustBeAString) {
  auto config = Load("labels: {gpu: [a]}\n");
  EXPECT_EQ(config.status().message(),
            path_ + ":1:15: labels: each label value must be a string");
}

TEST_F(ConfigFileTest, RootMustBeAMapping) {
  auto config = Load("- id\n");
  EXPECT_EQ(
      config.status().message(),
      path_ + ":1:1: a config file is a mapping of settings (key: value)");
}

TEST_F(ConfigFileTest, SyntaxErrorNamesFileLineAndColumn) {
  auto config = Load("id: a\nlabels: {gpu: rtx\n");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()),
              StartsWith(path_ + ":3:1: "));
}

TEST_F(ConfigFileTest, MissingFileIsNotFound) {
  const std::string path = dir_ + "/absent.yaml";
  auto config = LoadConfigFile(path, {"id"});
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(),
            "cannot read config file " + path +
                ": it does not exist or is not readable");
}

TEST(ConfigBoolTest, YesNoSettingsAreTrueOrFalseAndTheFlagWins) {
  const std::map<std::string, std::string> config = {
      {"insecure", "true"}, {"allow_root_jobs", "false"}, {"typo", "yes"}};
  bool on = false;
  EXPECT_TRUE(TakeConfigBool(config, "insecure", "a.yaml", &on).ok());
  EXPECT_TRUE(on);
  bool flag_on = true;
  EXPECT_TRUE(
      TakeConfigBool(config, "allow_root_jobs", "a.yaml", &flag_on).ok());
  EXPECT_TRUE(flag_on);  // the command line's --allow-root-jobs stays
  bool absent = false;
  EXPECT_TRUE(TakeConfigBool(config, "missing", "a.yaml", &absent).ok());
  EXPECT_FALSE(absent);
  bool typo = false;
  absl::Status s = TakeConfigBool(config, "typo", "a.yaml", &typo);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(
      s.message().find("a.yaml: typo: expected true or false, got \"yes\""),
      std::string::npos)
      << s;
  EXPECT_FALSE(typo);
}

}  // namespace
}  // namespace benchfleet
