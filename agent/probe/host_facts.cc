#include "agent/probe/host_facts.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace benchfleet {
namespace {

// The value after the first ':' or '=' on the first line starting with `key`.
std::string Field(const std::string& path, const std::string& key, char sep) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, key)) continue;
    auto pos = line.find(sep);
    if (pos == std::string::npos) continue;
    std::string value(absl::StripAsciiWhitespace(line.substr(pos + 1)));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return value;
  }
  return "";
}

}  // namespace

HostFacts ReadHostFacts(const std::string& root) {
  HostFacts f;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) f.hostname = host;
  f.cpu_model = Field(root + "/proc/cpuinfo", "model name", ':');
  if (f.cpu_model.empty()) f.cpu_model = Field(root + "/proc/cpuinfo", "Model", ':');
  f.cpu_cores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  int64_t kb = 0;
  std::string mem = Field(root + "/proc/meminfo", "MemTotal", ':');
  if (absl::SimpleAtoi(absl::StripSuffix(mem, " kB"), &kb)) f.memory_bytes = kb * 1024;
  f.os = Field(root + "/etc/os-release", "PRETTY_NAME", '=');
  struct utsname u;
  if (uname(&u) == 0) f.kernel = absl::StrCat(u.sysname, " ", u.release, " ", u.machine);
  return f;
}

}  // namespace benchfleet
