// Tests of the standalone benchfleet-probe tool: its JSON snapshot on a fake
// tree with the fake NVML, without NVML, on the real host, its usage errors,
// and that it stays shippable alone (no shared libraries beyond glibc,
// glibc 2.35 at most).
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <regex>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/agent/probe/fake_tree.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

struct Output {
  int exit_code = -1;
  std::string text;
};

Output RunCommand(const std::string& command) {
  Output out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.text.append(buf, n);
  const int status = pclose(pipe);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

TEST(ProbeToolTest, PrintsASnapshotOfAFakeTreeWithFakeGpus) {
  testing::FakeTree tree("intel");
  testing::WriteFile(
      tree.root() + "/nvml.conf",
      "gpu;name=NVIDIA H100 80GB HBM3;uuid=GPU-1;temp=44;throttle=0x1\n");
  const Output out =
      RunCommand("FAKE_NVML_CONFIG=" + tree.root() + "/nvml.conf " +
                 BF_PROBE_TOOL + " --root " + tree.root() + " --nvml " +
                 BF_FAKE_NVML + " --interval-ms=10");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  const nlohmann::json j = nlohmann::json::parse(out.text);
  EXPECT_EQ(j["facts"]["cpu_model"],
            "Intel(R) Core(TM) i7-8565U CPU @ 1.80GHz");
  EXPECT_EQ(j["facts"]["os"], "Ubuntu 22.04.4 LTS");
  EXPECT_EQ(j["nvml"]["state"], "ready");
  EXPECT_EQ(j["nvml"]["gpu_count"], 1);
  const nlohmann::json& s = j["sample"];
  EXPECT_EQ(s["cores"].size(), 4u);
  EXPECT_EQ(s["cores"][0]["governor"], "powersave");
  EXPECT_EQ(s["turbo_enabled"], true);
  EXPECT_EQ(s["max_cpu_temp_c"], 53.0);
  EXPECT_EQ(s["throttle_count"], 15);
  ASSERT_EQ(s["gpus"].size(), 1u);
  EXPECT_EQ(s["gpus"][0]["name"], "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(s["gpus"][0]["temp_c"], 44.0);
  EXPECT_EQ(s["gpus"][0]["throttle_reason_names"],
            nlohmann::json({"gpu_idle"}));
}

TEST(ProbeToolTest, MissingNvmlGivesNoGpusAndSaysWhy) {
  const Output out =
      RunCommand(std::string(BF_PROBE_TOOL) +
                 " --nvml /nonexistent/libnvidia-ml.so.1 --interval-ms 50");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  const nlohmann::json j = nlohmann::json::parse(out.text);
  EXPECT_EQ(j["nvml"]["state"], "not_installed");
  EXPECT_THAT(j["nvml"]["error"].get<std::string>(), HasSubstr("/nonexistent"));
  EXPECT_TRUE(j["sample"]["gpus"].empty());
  // The real host: a second reading after the interval gives utilisation.
  EXPECT_GT(j["sample"]["cores"].size(), 0u);
  EXPECT_TRUE(j["sample"].contains("cpu_util"));
  EXPECT_TRUE(j["sample"].contains("load1"));
  EXPECT_GT(j["facts"]["cpu_cores"].get<int>(), 0);
}

TEST(ProbeToolTest, RejectsBadArguments) {
  EXPECT_EQ(RunCommand(std::string(BF_PROBE_TOOL) + " --interval-ms abc 2>&1")
                .exit_code,
            2);
  EXPECT_EQ(RunCommand(std::string(BF_PROBE_TOOL) + " --interval-ms 0 2>&1")
                .exit_code,
            2);
  const Output out =
      RunCommand(std::string(BF_PROBE_TOOL) + " --frobnicate 2>&1");
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_THAT(out.text, HasSubstr("unknown argument '--frobnicate'"));
  EXPECT_EQ(RunCommand(std::string(BF_PROBE_TOOL) + " --root 2>&1").exit_code,
            2);
}

// The tool is copied alone to other hosts: it must need nothing but glibc, and
// no glibc newer than 2.35 (Ubuntu 22.04).
TEST(ProbeToolTest, NeedsOnlyGlibcAtMostVersion235) {
  if (RunCommand("command -v readelf >/dev/null 2>&1").exit_code != 0) {
    GTEST_SKIP() << "readelf (binutils) is not installed";
  }
  const Output needed = RunCommand(std::string("readelf -d ") + BF_PROBE_TOOL);
  ASSERT_EQ(needed.exit_code, 0);
  const std::regex lib(R"(Shared library: \[([^\]]+)\])");
  int libs = 0;
  for (auto it =
           std::sregex_iterator(needed.text.begin(), needed.text.end(), lib);
       it != std::sregex_iterator(); ++it) {
    ++libs;
    EXPECT_THAT((*it)[1].str(),
                ::testing::AnyOf("libc.so.6", "libm.so.6",
                                 "ld-linux-x86-64.so.2", "libdl.so.2",
                                 "libpthread.so.0", "ld-linux-aarch64.so.1"));
  }
  EXPECT_GT(libs, 0);
  const Output versions =
      RunCommand(std::string("readelf -V ") + BF_PROBE_TOOL);
  const std::regex glibc(R"(GLIBC_2\.(\d+))");
  for (auto it = std::sregex_iterator(versions.text.begin(),
                                      versions.text.end(), glibc);
       it != std::sregex_iterator(); ++it) {
    EXPECT_LE(std::stoi((*it)[1].str()), 35) << (*it)[0].str();
  }
}

}  // namespace
}  // namespace benchfleet
