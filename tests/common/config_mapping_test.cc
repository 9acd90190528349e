// Config files with mapping-valued keys (the agent's `toolchain:`).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/config_file.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

class ConfigMappingTest : public ::testing::Test {
 protected:
  ConfigMappingTest() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "bf-config-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  ~ConfigMappingTest() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string Write(const std::string& text) {
    const std::string path = dir_ + "/agent.yaml";
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(ConfigMappingTest, MappingKeysGoToTheirOwnMap) {
  const std::string path = Write(
      "id: bench-01\n"
      "toolchain:\n"
      "  nvcc: nvcc --version\n"
      "  java: java -version 2>&1\n"
      "  go:\n");
  std::map<std::string, std::map<std::string, std::string>> mappings;
  auto flat =
      LoadConfigFile(path, {"id", "toolchain"}, {"toolchain"}, &mappings);
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_EQ(*flat, (std::map<std::string, std::string>{{"id", "bench-01"}}));
  EXPECT_EQ(mappings["toolchain"],
            (std::map<std::string, std::string>{{"nvcc", "nvcc --version"},
                                                {"java", "java -version 2>&1"},
                                                {"go", ""}}));
}

TEST_F(ConfigMappingTest, AScalarWhereAMappingBelongsIsAnErrorWithItsPlace) {
  const std::string path = Write("id: x\ntoolchain: rustc --version\n");
  std::map<std::string, std::map<std::string, std::string>> mappings;
  auto flat =
      LoadConfigFile(path, {"id", "toolchain"}, {"toolchain"}, &mappings);
  ASSERT_FALSE(flat.ok());
  const std::string message(flat.status().message());
  EXPECT_NE(message.find(path + ":2:"), std::string::npos) << message;
  EXPECT_NE(message.find("toolchain"), std::string::npos) << message;
  EXPECT_NE(message.find("name: value"), std::string::npos) << message;
}

TEST_F(ConfigMappingTest, NestedValuesAreRefused) {
  const std::string path = Write("toolchain:\n  cc: [cc, --version]\n");
  std::map<std::string, std::map<std::string, std::string>> mappings;
  auto flat = LoadConfigFile(path, {"toolchain"}, {"toolchain"}, &mappings);
  ASSERT_FALSE(flat.ok());
  EXPECT_NE(std::string(flat.status().message()).find(":2:"), std::string::npos)
      << flat.status();
}

TEST_F(ConfigMappingTest, WithoutMappingKeysAMappingIsStillRefused) {
  const std::string path = Write("toolchain:\n  cc: cc --version\n");
  auto flat = LoadConfigFile(path, {"toolchain"});
  EXPECT_FALSE(flat.ok());
}

}  // namespace
}  // namespace benchfleet
