// benchfleet-agent: parses flags and the config file, then runs the Agent until
// SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/probe/nvml_probe.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "common/certs.h"
#include "common/config_file.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  CLI::App app{
      "benchfleet-agent: runs and measures benchmark steps on this host"};
  std::string config_path, controller, id, labels, workdir, lock_file;
  app.add_option(
      "--config", config_path,
      "YAML config file (controller, id, labels, workdir, lock_file, "
      "gates, toolchain: {NAME: COMMAND}, ...)");
  app.add_option("--controller", controller,
                 "controller address HOST:PORT (default 127.0.0.1:7070)");
  app.add_option("--id", id, "agent id (default: the hostname)");
  app.add_option("--labels", labels, "labels k=v,k2=v2 that specs can require");
  app.add_option("--workdir", workdir,
                 "directory for run captures (default: the data directory)");
  app.add_option("--lock-file", lock_file,
                 "host lock file (default /run/lock/benchfleet-agent.lock)");
  std::string cooldown, max_wait, probe_root, nvml;
  double max_gpu_temp = -1, max_cpu_temp = -1, max_load = -1,
         max_competing_cpu = -1, sample_hz = -1;
  app.add_option("--cooldown", cooldown,
                 "the host's own cooldown between experiments (e.g. 60s)");
  app.add_option("--max-gpu-temp", max_gpu_temp,
                 "the host's own GPU temperature gate, °C");
  app.add_option("--max-cpu-temp", max_cpu_temp,
                 "the host's own CPU temperature gate, °C");
  app.add_option("--max-load", max_load,
                 "the host's own load-average gate at attempt start");
  app.add_option("--max-competing-cpu", max_competing_cpu,
                 "cores other processes may use before a run starts (default "
                 "0.25; 0 = off)");
  app.add_option("--max-wait", max_wait,
                 "how long to wait for the gates (default 15m)");
  app.add_option(
      "--sample-hz", sample_hz,
      "host samples per second while a run executes (default 10; 0 = off)");
  app.add_option("--probe-root", probe_root,
                 "read /proc and /sys under this root (tests)");
  app.add_option("--nvml", nvml,
                 "NVML library to dlopen (default libnvidia-ml.so.1)");
  // Mutual TLS to the controller (docs/operations.md).
  std::string tls_cert, tls_key, tls_ca, server_name;
  bool insecure = false;
  app.add_option("--tls-cert", tls_cert,
                 "this agent's certificate (`benchfleet certs agent NAME`); "
                 "its name is the agent's id");
  app.add_option("--tls-key", tls_key, "the key of --tls-cert");
  app.add_option("--ca", tls_ca, "CA that signed the controller's certificate");
  app.add_option("--server-name", server_name,
                 "the name the controller's certificate must carry (default: "
                 "the host in --controller)");
  app.add_flag("--insecure", insecure,
               "allow a controller that is not on loopback without TLS (--ca) "
               "or without --controller-public-key: its traffic is then "
               "readable and its orders run unverified");
  std::vector<std::string> toolchain_flags;
  std::string toolchain_timeout;
  app.add_option("--toolchain", toolchain_flags,
                 "NAME=COMMAND: a toolchain version to record with every "
                 "attempt (repeatable; adds to or replaces the defaults cc, "
                 "c++, rustc, go, python3; an empty COMMAND drops NAME)")
      ->allow_extra_args(false);
  app.add_option("--toolchain-timeout", toolchain_timeout,
                 "how long one toolchain version command may run (default 5s)");
  // Signed orders (DESIGN.md §7; common/order_signing.h).
  std::string controller_public_key;
  app.add_option("--controller-public-key", controller_public_key,
                 "the controller's signing.pub (PEM Ed25519): every lease and "
                 "step order must verify with it, or nothing is run");
  // Jobs: who they run as and how they are contained (DESIGN.md §7).
  std::string job_user, job_memory_max, job_pids_max, cgroup_parent,
      cgroup_root;
  bool allow_root_jobs = false;
  app.add_option("--job-user", job_user,
                 "run jobs as this unprivileged user (the agent must be root)");
  app.add_flag("--allow-root-jobs", allow_root_jobs,
               "run jobs as root when the agent is root and has no job user");
  app.add_option("--job-memory-max", job_memory_max,
                 "memory.max of each job's cgroup (e.g. 8G; needs cgroup v2)");
  app.add_option("--job-pids-max", job_pids_max,
                 "pids.max of each job's cgroup (needs cgroup v2)");
  app.add_option("--cgroup-parent", cgroup_parent,
                 "cgroup v2 under which job cgroups go (default: the agent's)");
  app.add_option("--cgroup-root", cgroup_root,
                 "where cgroup2 is mounted (default /sys/fs/cgroup; "
                 "/sys/fs/cgroup/unified on a hybrid host)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto fail = [](const std::string& message, int code) {
    std::fprintf(stderr, "benchfleet-agent: %s\n", message.c_str());
    return code;
  };

  benchfleet::AgentOptions options;
  std::map<std::string, std::string> toolchain_config;
  if (const char* env = std::getenv("BENCHFLEET_CONTROLLER");
      env != nullptr && env[0] != '\0') {
    options.controller = env;
  }
  if (!config_path.empty()) {
    std::map<std::string, std::map<std::string, std::string>> mappings;
    auto config = benchfleet::LoadConfigFile(config_path,
                                             {"controller",
                                              "id",
                                              "labels",
                                              "workdir",
                                              "lock_file",
                                              "cooldown",
                                              "max_gpu_temp_c",
                                              "max_cpu_temp_c",
                                              "max_load",
                                              "max_competing_cpu",
                                              "max_wait",
                                              "sample_hz",
                                              "probe_root",
                                              "nvml",
                                              "toolchain",
                                              "toolchain_timeout",
                                              "tls_cert",
                                              "tls_key",
                                              "ca",
                                              "server_name",
                                              "insecure",
                                              "controller_public_key",
                                              "job_user",
                                              "allow_root_jobs",
                                              "job_memory_max",
                                              "job_pids_max",
                                              "cgroup_parent",
                                              "cgroup_root"},
                                             {"toolchain"}, &mappings);
    if (!config.ok()) return fail(std::string(config.status().message()), 1);
    toolchain_config = mappings["toolchain"];
    auto take = [&](const char* key, std::string& flag) {
      if (flag.empty() && config->contains(key)) flag = (*config)[key];
    };
    take("controller", controller);
    take("id", id);
    take("labels", labels);
    take("workdir", workdir);
    take("lock_file", lock_file);
    take("cooldown", cooldown);
    take("max_wait", max_wait);
    take("probe_root", probe_root);
    take("nvml", nvml);
    take("toolchain_timeout", toolchain_timeout);
    take("tls_cert", tls_cert);
    take("tls_key", tls_key);
    take("ca", tls_ca);
    take("server_name", server_name);
    take("controller_public_key", controller_public_key);
    take("job_user", job_user);
    take("job_memory_max", job_memory_max);
    take("job_pids_max", job_pids_max);
    take("cgroup_parent", cgroup_parent);
    take("cgroup_root", cgroup_root);
    for (auto [key, flag] : {std::pair{"insecure", &insecure},
                             std::pair{"allow_root_jobs", &allow_root_jobs}}) {
      if (absl::Status s =
              benchfleet::TakeConfigBool(*config, key, config_path, flag);
          !s.ok())
        return fail(std::string(s.message()), 1);
    }
    auto take_number = [&](const char* key, double& flag) -> bool {
      if (flag >= 0 || !config->contains(key)) return true;
      return absl::SimpleAtod((*config)[key], &flag) && flag >= 0;
    };
    for (auto [key, flag] :
         {std::pair<const char*, double*>{"max_gpu_temp_c", &max_gpu_temp},
          {"max_cpu_temp_c", &max_cpu_temp},
          {"max_load", &max_load},
          {"max_competing_cpu", &max_competing_cpu},
          {"sample_hz", &sample_hz}}) {
      if (!take_number(key, *flag)) {
        return fail(
            absl::StrCat(config_path, ": ", key, ": expected a number >= 0"),
            1);
      }
    }
  }
  auto duration = [&](const std::string& text, const char* what,
                      absl::Duration* out) -> bool {
    if (text.empty()) return true;
    if (absl::ParseDuration(text, out) && *out >= absl::ZeroDuration())
      return true;
    std::fprintf(
        stderr,
        "benchfleet-agent: %s '%s' is not a duration such as 60s or 15m\n",
        what, text.c_str());
    return false;
  };
  if (!duration(cooldown, "--cooldown", &options.cooldown) ||
      !duration(max_wait, "--max-wait", &options.max_wait) ||
      !duration(toolchain_timeout, "--toolchain-timeout",
                &options.toolchain_timeout)) {
    return 2;
  }
  if (max_gpu_temp >= 0) options.max_gpu_temp_c = max_gpu_temp;
  if (max_cpu_temp >= 0) options.max_cpu_temp_c = max_cpu_temp;
  if (max_load >= 0) options.max_load = max_load;
  if (max_competing_cpu >= 0) options.max_competing_cpu = max_competing_cpu;
  if (sample_hz >= 0) {
    options.sample_interval =
        sample_hz > 0 ? absl::Seconds(1.0 / sample_hz) : absl::ZeroDuration();
  }
  options.probe_root = probe_root;
  // Toolchain: the defaults, then the config file's entries, then the flags;
  // an empty command drops a name.
  for (const auto& [name, command] : toolchain_config)
    options.toolchain[name] = command;
  for (const std::string& flag : toolchain_flags) {
    auto parsed = benchfleet::ParseToolchainFlag(flag);
    if (!parsed.ok()) return fail(std::string(parsed.status().message()), 2);
    options.toolchain[parsed->first] = parsed->second;
  }
  for (auto it = options.toolchain.begin(); it != options.toolchain.end();) {
    it = it->second.empty() ? options.toolchain.erase(it) : std::next(it);
  }
  options.nvml_library =
      nvml.empty() ? benchfleet::NvmlLibraryFromEnvironment() : nvml;
  if (!controller.empty()) options.controller = controller;
  options.transport.cert_file = tls_cert;
  options.transport.key_file = tls_key;
  // The job user must not be able to read the agent's key.
  if (!tls_key.empty()) options.secret_files.push_back(tls_key);
  options.transport.ca_file = tls_ca;
  options.transport.server_name = server_name;
  options.transport.insecure = insecure;
  // With a certificate the agent's id is its certificate's name unless --id
  // says otherwise (the controller refuses a mismatch).
  if (id.empty() && !tls_cert.empty()) {
    std::ifstream in(tls_cert);
    std::stringstream pem;
    pem << in.rdbuf();
    auto info = benchfleet::InspectCertificate(pem.str());
    if (!info.ok()) {
      return fail(absl::StrCat("--tls-cert '", tls_cert,
                               "': ", info.status().message()),
                  2);
    }
    id = info->common_name;
  }
  options.id = id;
  options.workdir = workdir;
  options.lock_file = lock_file;
  options.controller_public_key_file = controller_public_key;
  options.insecure = insecure;
  if (!labels.empty()) {
    auto parsed = benchfleet::ParseLabels(labels);
    if (!parsed.ok()) return fail(std::string(parsed.status().message()), 2);
    options.labels = *parsed;
  }

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  benchfleet::PosixProcessRunnerOptions runner_options;
  options.job_user = job_user;
  options.allow_root_jobs = allow_root_jobs;
  if (!job_user.empty()) {
    auto user = benchfleet::LookUpJobUser(job_user);
    if (!user.ok()) return fail(std::string(user.status().message()), 1);
    runner_options.job_user = *user;
  }
  runner_options.cgroup.parent = cgroup_parent;
  if (!cgroup_root.empty()) runner_options.cgroup.root = cgroup_root;
  if (!benchfleet::ParseByteSize(job_memory_max,
                                 &runner_options.cgroup.memory_max_bytes) ||
      !benchfleet::ParseByteSize(job_pids_max,
                                 &runner_options.cgroup.pids_max)) {
    return fail(
        "job_memory_max/job_pids_max: expected a number such as 4G, "
        "512M or 1000",
        2);
  }
  benchfleet::PosixProcessRunner runner(runner_options);
  if (absl::Status st = runner.CheckLimitsApply(); !st.ok())
    return fail(std::string(st.message()), 1);
  auto agent = benchfleet::Agent::Create(options, &runner);
  if (!agent.ok()) return fail(std::string(agent.status().message()), 1);
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("received signal {}, shutting down", sig);
    (*agent)->Shutdown();
  });
  spdlog::info("benchfleet-agent {} dialling {}", (*agent)->id(),
               options.controller);
  absl::Status st = (*agent)->Run();
  // Run returns only after Shutdown, or on a configuration error: wake the
  // waiter either way.
  pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  if (!st.ok()) return fail(std::string(st.message()), 3);
  return 0;
}
