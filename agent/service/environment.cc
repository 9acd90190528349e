#include "agent/service/environment.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace benchfleet {
namespace {

constexpr size_t kMaxVersionChars = 200;
constexpr int64_t kCaptureBytes = 64 * 1024;

// Protobuf strings must be UTF-8 (a message with anything else fails to
// parse), and tools print what they like: invalid bytes become '?'.
std::string ToValidUtf8(absl::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    size_t n = c < 0x80           ? 1
               : (c >> 5) == 0x6  ? 2
               : (c >> 4) == 0xe  ? 3
               : (c >> 3) == 0x1e ? 4
                                  : 0;
    bool ok = n > 0 && i + n <= in.size();
    for (size_t k = 1; ok && k < n; ++k)
      ok = (static_cast<unsigned char>(in[i + k]) >> 6) == 0x2;
    if (ok && n == 1 && c < 0x20 && c != '\t') ok = false;  // control bytes
    if (ok) {
      out.append(in.data() + i, n);
      i += n;
    } else {
      out.push_back('?');
      ++i;
    }
  }
  return out;
}

std::string FirstLine(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    // Cut before validating so that a multi-byte character cut in half
    // becomes '?' rather than invalid UTF-8.
    if (line.size() > kMaxVersionChars) line = line.substr(0, kMaxVersionChars);
    return ToValidUtf8(line);
  }
  return "";
}

std::string ReadHead(const std::string& path, size_t max_bytes) {
  if (path.empty()) return "";
  std::ifstream in(path, std::ios::binary);
  std::string out(max_bytes, '\0');
  in.read(out.data(), static_cast<std::streamsize>(max_bytes));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

bool IsDirectory(const std::string& path) {
  std::error_code ec;
  return !path.empty() && std::filesystem::is_directory(path, ec);
}

struct Ran {
  absl::Status status;  // the process could not be started
  RunResult result;
  std::string stderr_head;
};

Ran RunCommand(ProcessRunner& runner, std::vector<std::string> argv,
               const std::string& cwd, const EnvironmentOptions& options,
               std::vector<std::string> extra_env = {}) {
  RunRequest req;
  req.argv = std::move(argv);
  req.cwd = cwd;
  req.env = options.env;
  for (std::string& e : extra_env) req.env.push_back(std::move(e));
  req.timeout = options.command_timeout;
  req.stderr_path = options.scratch_path;
  req.max_capture_bytes = kCaptureBytes;
  req.cancel = options.cancel;
  Ran ran;
  absl::StatusOr<RunResult> r = runner.Run(req);
  if (!r.ok()) {
    ran.status = r.status();
    return ran;
  }
  ran.result = std::move(*r);
  ran.stderr_head = ReadHead(options.scratch_path, kCaptureBytes);
  return ran;
}

std::string Cwd(const EnvironmentOptions& options) {
  return IsDirectory(options.workdir) ? options.workdir : options.fallback_cwd;
}

}  // namespace

std::map<std::string, std::string> DefaultToolchainCommands() {
  return {{"cc", "cc --version"},
          {"c++", "c++ --version"},
          {"rustc", "rustc --version"},
          {"go", "go version"},
          {"python3", "python3 --version"}};
}

absl::StatusOr<std::pair<std::string, std::string>> ParseToolchainFlag(
    const std::string& flag) {
  const size_t eq = flag.find('=');
  const std::string name(
      absl::StripAsciiWhitespace(flag.substr(0, std::min(eq, flag.size()))));
  if (eq == std::string::npos || name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--toolchain '", flag,
        "' is not NAME=COMMAND (e.g. --toolchain 'nvcc=nvcc --version'; an "
        "empty COMMAND stops recording NAME)"));
  }
  return std::make_pair(
      name, std::string(absl::StripAsciiWhitespace(flag.substr(eq + 1))));
}

std::vector<std::string> CommandLineArgv(const std::string& command) {
  static constexpr char kShellSyntax[] = "|&;<>()$`\\\"'*?[]#~{}!\n";
  std::vector<std::string> words =
      absl::StrSplit(command, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  const bool needs_shell =
      command.find_first_of(kShellSyntax) != std::string::npos ||
      (!words.empty() && words[0].find('=') != std::string::npos);
  if (needs_shell) return ShellArgv(command);
  return words;
}

std::string ToolVersion(ProcessRunner& runner, const std::string& command,
                        const EnvironmentOptions& options) {
  std::vector<std::string> argv = CommandLineArgv(command);
  if (argv.empty()) return "error: empty command";
  const bool via_shell = argv.size() == 3 && argv[0] == "/bin/sh";
  Ran ran = RunCommand(runner, std::move(argv), Cwd(options), options);
  if (!ran.status.ok()) {
    if (absl::IsNotFound(ran.status)) return kToolNotFound;
    return absl::StrCat("error: ", ran.status.message());
  }
  const RunResult& r = ran.result;
  const std::string out = FirstLine(r.stdout_head);
  const std::string line = out.empty() ? FirstLine(ran.stderr_head) : out;
  if (r.cancelled) return "error: cancelled (the agent is shutting down)";
  if (r.timed_out) {
    return absl::StrCat("error: timed out after ",
                        absl::FormatDuration(options.command_timeout));
  }
  if (r.term_signal != 0)
    return absl::StrCat("error: killed by signal ", r.term_signal);
  // The shell's "command not found".
  if (via_shell && r.exit_code == 127) return kToolNotFound;
  if (r.exit_code != 0) {
    return absl::StrCat("error: exited with status ", r.exit_code,
                        line.empty() ? "" : ": ", line);
  }
  return line.empty() ? "(no output)" : line;
}

SourceState ReadSourceState(ProcessRunner& runner,
                            const EnvironmentOptions& options) {
  SourceState state;
  if (!IsDirectory(options.workdir)) return state;
  // Read-only: never take the index lock a user's own git command may need.
  const std::vector<std::string> env = {"GIT_OPTIONAL_LOCKS=0",
                                        "GIT_TERMINAL_PROMPT=0"};
  Ran head = RunCommand(
      runner, {"git", "-C", options.workdir, "rev-parse", "--verify", "HEAD"},
      options.workdir, options, env);
  if (!head.status.ok() || head.result.exit_code != 0 ||
      head.result.timed_out) {
    return state;  // not a work tree (or no commit yet, or no git)
  }
  state.commit = FirstLine(head.result.stdout_head);
  Ran status = RunCommand(
      runner, {"git", "-C", options.workdir, "status", "--porcelain"},
      options.workdir, options, env);
  if (status.status.ok() && status.result.exit_code == 0 &&
      !status.result.timed_out) {
    state.dirty = status.result.stdout_bytes > 0;
  }
  return state;
}

void FillFromSample(const HostSample& sample, HostEnvironment* env) {
  std::set<std::string> governors;
  for (const CpuCoreSample& core : sample.cores)
    if (!core.governor.empty()) governors.insert(core.governor);
  env->governor = absl::StrJoin(governors, ",");
  env->turbo = !sample.turbo_enabled.has_value() ? ""
               : *sample.turbo_enabled           ? "on"
                                                 : "off";
  env->gpus.clear();
  for (const GpuSample& g : sample.gpus) {
    env->gpus.push_back(
        GpuIdentity{g.name, g.uuid, g.memory_total_bytes.value_or(0)});
  }
}

HostEnvironment CollectAttemptEnvironment(ProcessRunner& runner,
                                          const HostSample& sample,
                                          const EnvironmentOptions& options) {
  HostEnvironment env;
  FillFromSample(sample, &env);
  for (const auto& [name, command] : options.toolchain) {
    if (command.empty()) continue;
    if (options.cancel != nullptr && options.cancel->load()) break;
    env.toolchain[name] = ToolVersion(runner, command, options);
  }
  const SourceState source = ReadSourceState(runner, options);
  env.commit = source.commit;
  env.dirty = source.dirty;
  if (!options.scratch_path.empty()) {
    std::error_code ec;
    std::filesystem::remove(options.scratch_path, ec);
  }
  return env;
}

}  // namespace benchfleet
