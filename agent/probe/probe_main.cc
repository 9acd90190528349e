// benchfleet-probe: prints one JSON snapshot of this host, as the agent sees
// it: host facts, a host sample over a short interval (CPU utilisation and
// competing processes need two readings) and the GPUs through NVML. Built
// without gRPC or a database so it can be copied alone to a machine (e.g. a GPU
// host) to check the probes there.
//
//   benchfleet-probe [--root DIR] [--nvml PATH] [--interval-ms N]
//
//   --root DIR        read /proc and /sys under DIR (a fake tree) instead of
//   the real ones
//   --nvml PATH       the NVML library to dlopen (default:
//   $BENCHFLEET_NVML_LIBRARY or
//                     libnvidia-ml.so.1); a missing library means no GPUs
//   --interval-ms N   time between the two readings (default 200)
//
// Exits 0 with the snapshot on stdout, 2 on a usage error.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>

#include "agent/probe/host_facts.h"
#include "agent/probe/nvml_probe.h"
#include "agent/probe/probe_json.h"
#include "agent/probe/sysfs_probe.h"
#include "nlohmann/json.hpp"

namespace {

constexpr char kUsage[] =
    "usage: benchfleet-probe [--root DIR] [--nvml PATH] [--interval-ms N]\n"
    "Prints one JSON snapshot of the host (facts, a sample over the interval, "
    "GPUs).\n";

// stdio, not iostreams: a static libstdc++'s iostreams would raise the glibc
// the tool needs.
int UsageError(const std::string& message) {
  std::fprintf(stderr, "benchfleet-probe: %s\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string root;
  std::string nvml_library = benchfleet::NvmlLibraryFromEnvironment();
  long interval_ms = 200;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    // Accepts both "--flag value" and "--flag=value".
    std::string_view name = arg, value;
    bool has_value = false;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (name != "--root" && name != "--nvml" && name != "--interval-ms") {
      return UsageError("unknown argument '" + std::string(arg) + "'");
    }
    if (!has_value) {
      if (i + 1 >= argc)
        return UsageError(std::string(name) + " needs a value");
      value = argv[++i];
    }
    if (name == "--root") {
      root = value;
    } else if (name == "--nvml") {
      nvml_library = value;
    } else {
      char* end = nullptr;
      const std::string text(value);
      interval_ms = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || interval_ms < 1 ||
          interval_ms > 60'000) {
        return UsageError(
            "--interval-ms must be a whole number of milliseconds in 1..60000, "
            "got '" +
            text + "'");
      }
    }
  }

  auto nvml = benchfleet::NvmlProbe::Open({.library = nvml_library});
  benchfleet::SysfsProbe probe(
      {.root = root,
       .slow_every_n = 1,
       .min_window = std::chrono::milliseconds(interval_ms),
       .process_trigger_cores = 0,
       .sysfs_reads_per_sample = 0},
      nvml.get());
  probe.SetExclusions({.pids = {getpid()}});
  probe.Sample(std::chrono::system_clock::now());
  std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  const benchfleet::HostSample sample =
      probe.Sample(std::chrono::system_clock::now());

  nlohmann::json out;
  out["root"] = root;
  out["interval_ms"] = interval_ms;
  out["facts"] = benchfleet::HostFactsToJson(benchfleet::ReadHostFacts(root));
  out["nvml"] = {{"library", nvml->library()},
                 {"state", benchfleet::NvmlStateName(nvml->state())},
                 {"error", nvml->error()},
                 {"gpu_count", nvml->gpu_count()}};
  out["sample"] = benchfleet::HostSampleToJson(sample);
  const std::string text = out.dump(2) + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}
