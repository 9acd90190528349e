// The agent's environment record: toolchain version commands and the work
// directory's git state, run through the real PosixProcessRunner against real
// programs (sh, printf, sleep, git).
#include "agent/service/environment.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace benchfleet {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "bf-env-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class EnvironmentTest : public ::testing::Test {
 protected:
  EnvironmentTest() {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e)
      options_.env.emplace_back(*e);
    options_.fallback_cwd = dir_.path();
    options_.scratch_path = dir_.path() + "/scratch.stderr";
    options_.command_timeout = absl::Seconds(20);
  }

  std::string Version(const std::string& command) {
    return ToolVersion(runner_, command, options_);
  }

  // Runs a shell command for the test's own setup; true on exit status 0.
  static bool Sh(const std::string& command) {
    return std::system(command.c_str()) == 0;
  }

  TempDir dir_;
  PosixProcessRunner runner_;
  EnvironmentOptions options_;
};

TEST(CommandLineArgvTest, SplitsPlainWordsAndUsesTheShellOnlyWhenNeeded) {
  EXPECT_EQ(CommandLineArgv("cc --version"),
            (std::vector<std::string>{"cc", "--version"}));
  EXPECT_EQ(CommandLineArgv("  go\tversion  "),
            (std::vector<std::string>{"go", "version"}));
  EXPECT_EQ(CommandLineArgv("/opt/cuda/bin/nvcc --version"),
            (std::vector<std::string>{"/opt/cuda/bin/nvcc", "--version"}));
  for (const std::string shell :
       {"java -version 2>&1", "rustc --version | head -1", "echo $PATH",
        "sh -c 'x'", "FOO=1 tool --version", "a; b", "a && b"}) {
    EXPECT_EQ(CommandLineArgv(shell), ShellArgv(shell)) << shell;
  }
  EXPECT_TRUE(CommandLineArgv("   ").empty());
}

TEST(ParseToolchainFlagTest, TakesNameEqualsCommand) {
  auto p = ParseToolchainFlag("nvcc=nvcc --version");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first, "nvcc");
  EXPECT_EQ(p->second, "nvcc --version");
  // Only the first '=' separates.
  p = ParseToolchainFlag("env=FOO=1 tool --version");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->first, "env");
  EXPECT_EQ(p->second, "FOO=1 tool --version");
  p = ParseToolchainFlag("go=");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->second, "");  // drops go
  for (const std::string bad : {"nvcc", "=nvcc --version", ""}) {
    auto r = ParseToolchainFlag(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_NE(std::string(r.status().message()).find("NAME=COMMAND"),
              std::string::npos);
  }
}

TEST(DefaultToolchainTest, CoversTheUsualCompilers) {
  const auto d = DefaultToolchainCommands();
  EXPECT_EQ(d.at("cc"), "cc --version");
  EXPECT_EQ(d.at("c++"), "c++ --version");
  EXPECT_EQ(d.at("rustc"), "rustc --version");
  EXPECT_EQ(d.at("go"), "go version");
  EXPECT_EQ(d.at("python3"), "python3 --version");
}

TEST_F(EnvironmentTest, RecordsTheFirstNonEmptyLineOfStdout) {
  EXPECT_EQ(Version("echo tool 1.2.3"), "tool 1.2.3");
  EXPECT_EQ(
      Version(
          R"(printf '\n\n   gcc (Debian 12.2.0-14) 12.2.0  \nCopyright\n')"),
      "gcc (Debian 12.2.0-14) 12.2.0");
}

TEST_F(EnvironmentTest, FallsBackToStderrForToolsThatPrintThere) {
  // java -version, python2 --version and friends.
  EXPECT_EQ(Version("sh -c 'echo openjdk 17.0.9 >&2'"), "openjdk 17.0.9");
}

TEST_F(EnvironmentTest, AMissingToolIsNotFound) {
  EXPECT_EQ(Version("benchfleet-no-such-tool-3f9a --version"), kToolNotFound);
  // Through the shell too (its status 127).
  EXPECT_EQ(Version("benchfleet-no-such-tool-3f9a --version 2>&1"),
            kToolNotFound);
}

TEST_F(EnvironmentTest, AFailingToolRecordsItsError) {
  EXPECT_EQ(Version("sh -c 'echo license expired >&2; exit 3'"),
            "error: exited with status 3: license expired");
  // A tool that dies of a signal (run without a shell in between: the
  // command line is plain words).
  std::ofstream(dir_.path() + "/die.sh") << "kill -9 $$\n";
  EXPECT_EQ(Version("sh " + dir_.path() + "/die.sh"),
            "error: killed by signal 9");
}

TEST_F(EnvironmentTest, AHangingToolIsCutOffAtTheTimeout) {
  options_.command_timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  EXPECT_EQ(Version("sleep 30"), "error: timed out after 300ms");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(EnvironmentTest, OutputThatIsNotUtf8IsMadeSafeForProtobuf) {
  EXPECT_EQ(Version(R"(printf 'v\377\376 1.0\n')"), "v?? 1.0");
  // A valid multi-byte character stays.
  EXPECT_EQ(Version("echo 'µtool 2'"), "µtool 2");
}

TEST_F(EnvironmentTest, CommandsRunInTheWorkDirectory) {
  TempDir work;
  options_.workdir = work.path();
  EXPECT_EQ(Version("pwd"), std::filesystem::canonical(work.path()).string());
  // A work directory that does not exist on this host: the fallback.
  options_.workdir = work.path() + "/missing";
  EXPECT_EQ(Version("pwd"), std::filesystem::canonical(dir_.path()).string());
}

TEST_F(EnvironmentTest, SourceStateOfAGitWorkTree) {
  if (!Sh("git --version >/dev/null 2>&1")) GTEST_SKIP() << "git not installed";
  TempDir work;
  options_.workdir = work.path();
  // Not a git work tree (yet): no commit.
  SourceState none = ReadSourceState(runner_, options_);
  EXPECT_EQ(none.commit, "");
  EXPECT_FALSE(none.dirty);

  const std::string git =
      absl::StrCat("cd '", work.path(),
                   "' && git -c user.name=t -c user.email=t@example.com ");
  ASSERT_TRUE(Sh(absl::StrCat("cd '", work.path(), "' && git init -q .")));
  // A repository without a commit has no HEAD to record.
  EXPECT_EQ(ReadSourceState(runner_, options_).commit, "");
  std::ofstream(work.path() + "/bench.sh") << "echo hi\n";
  ASSERT_TRUE(Sh(git + "add bench.sh && " + git + "commit -q -m one"));
  const std::string head_file = dir_.path() + "/head";
  ASSERT_TRUE(Sh(absl::StrCat("cd '", work.path(),
                              "' && git rev-parse HEAD > '", head_file, "'")));
  std::string head;
  std::ifstream(head_file) >> head;
  ASSERT_EQ(head.size(), 40u);

  SourceState clean = ReadSourceState(runner_, options_);
  EXPECT_EQ(clean.commit, head);
  EXPECT_FALSE(clean.dirty);

  std::ofstream(work.path() + "/bench.sh") << "echo changed\n";
  SourceState dirty = ReadSourceState(runner_, options_);
  EXPECT_EQ(dirty.commit, head);
  EXPECT_TRUE(dirty.dirty);

  // From a subdirectory of the work tree too.
  std::filesystem::create_directory(work.path() + "/sub");
  options_.workdir = work.path() + "/sub";
  EXPECT_EQ(ReadSourceState(runner_, options_).commit, head);
}

TEST(FillFromSampleTest, TakesGovernorsTurboAndGpus) {
  HostSample s;
  for (int i = 0; i < 4; ++i) {
    CpuCoreSample c;
    c.cpu = i;
    c.governor = i == 3 ? "powersave" : "performance";
    s.cores.push_back(c);
  }
  s.turbo_enabled = false;
  GpuSample g;
  g.name = "NVIDIA H100 80GB HBM3";
  g.uuid = "GPU-1234";
  g.memory_total_bytes = int64_t{80} << 30;
  s.gpus.push_back(g);
  HostEnvironment env;
  FillFromSample(s, &env);
  EXPECT_EQ(env.governor, "performance,powersave");
  EXPECT_EQ(env.turbo, "off");
  ASSERT_EQ(env.gpus.size(), 1u);
  EXPECT_EQ(env.gpus[0].name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(env.gpus[0].uuid, "GPU-1234");
  EXPECT_EQ(env.gpus[0].memory_total_bytes, int64_t{80} << 30);

  HostSample unknown;  // a container: no cpufreq, no GPUs
  FillFromSample(unknown, &env);
  EXPECT_EQ(env.governor, "");
  EXPECT_EQ(env.turbo, "");
  EXPECT_TRUE(env.gpus.empty());
  unknown.turbo_enabled = true;
  FillFromSample(unknown, &env);
  EXPECT_EQ(env.turbo, "on");
}

TEST_F(EnvironmentTest, CollectRecordsEveryConfiguredCommand) {
  options_.toolchain = {{"mytool", "echo mytool 4.2"},
                        {"missing", "benchfleet-no-such-tool-3f9a -v"},
                        {"dropped", ""}};
  HostSample s;
  s.turbo_enabled = true;
  HostEnvironment env = CollectAttemptEnvironment(runner_, s, options_);
  EXPECT_EQ(env.toolchain,
            (std::map<std::string, std::string>{{"mytool", "mytool 4.2"},
                                                {"missing", kToolNotFound}}));
  EXPECT_EQ(env.turbo, "on");
  EXPECT_EQ(env.commit, "");
  EXPECT_FALSE(std::filesystem::exists(options_.scratch_path));
}

TEST_F(EnvironmentTest, CollectStopsRunningCommandsOnceCancelled) {
  std::atomic<bool> cancel{true};
  options_.cancel = &cancel;
  options_.toolchain = {{"a", "echo a"}, {"b", "echo b"}};
  HostEnvironment env =
      CollectAttemptEnvironment(runner_, HostSample{}, options_);
  EXPECT_TRUE(env.toolchain.empty());
}

}  // namespace
}  // namespace benchfleet
