#include "agent/probe/host_facts.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <string>
#include <string_view>

#include "agent/probe/kernel_file.h"

namespace benchfleet {
namespace {

// The value after the first `sep` on the first line starting with `key`,
// trimmed and unquoted.
std::string Field(const std::string& path, std::string_view key, char sep) {
  const std::string text = probe_internal::ReadFileOnce(path);
  std::string_view rest = text;
  while (!rest.empty()) {
    const std::string_view line = probe_internal::NextLine(&rest);
    if (line.substr(0, key.size()) != key) continue;
    const auto pos = line.find(sep);
    if (pos == std::string_view::npos) continue;
    std::string value(probe_internal::Trim(line.substr(pos + 1)));
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
  if (f.cpu_model.empty())
    f.cpu_model = Field(root + "/proc/cpuinfo", "Model", ':');
  f.cpu_cores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  std::string mem = Field(root + "/proc/meminfo", "MemTotal", ':');
  if (mem.size() > 3 && mem.compare(mem.size() - 3, 3, " kB") == 0)
    mem.resize(mem.size() - 3);
  if (auto kb = probe_internal::ParseInt(mem)) f.memory_bytes = *kb * 1024;
  f.os = Field(root + "/etc/os-release", "PRETTY_NAME", '=');
  struct utsname u;
  if (uname(&u) == 0) {
    f.kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
  }
  return f;
}

}  // namespace benchfleet
