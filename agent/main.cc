// benchfleet-agent: parses flags and the config file, then runs the Agent until SIGINT or
// SIGTERM.
#include <csignal>
#include <cstdio>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "common/config_file.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  CLI::App app{"benchfleet-agent: runs and measures benchmark steps on this host"};
  std::string config_path, controller, id, labels, workdir, lock_file;
  app.add_option("--config", config_path,
                 "YAML config file (controller, id, labels, workdir, lock_file)");
  app.add_option("--controller", controller, "controller address HOST:PORT (default 127.0.0.1:7070)");
  app.add_option("--id", id, "agent id (default: the hostname)");
  app.add_option("--labels", labels, "labels k=v,k2=v2 that specs can require");
  app.add_option("--workdir", workdir, "directory for run captures (default: the data directory)");
  app.add_option("--lock-file", lock_file, "host lock file (default /run/lock/benchfleet-agent.lock)");
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
  if (const char* env = std::getenv("BENCHFLEET_CONTROLLER"); env != nullptr && env[0] != '\0') {
    options.controller = env;
  }
  if (!config_path.empty()) {
    auto config = benchfleet::LoadConfigFile(
        config_path, {"controller", "id", "labels", "workdir", "lock_file"});
    if (!config.ok()) return fail(std::string(config.status().message()), 1);
    auto take = [&](const char* key, std::string& flag) {
      if (flag.empty() && config->contains(key)) flag = (*config)[key];
    };
    take("controller", controller);
    take("id", id);
    take("labels", labels);
    take("workdir", workdir);
    take("lock_file", lock_file);
  }
  if (!controller.empty()) options.controller = controller;
  options.id = id;
  options.workdir = workdir;
  options.lock_file = lock_file;
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

  benchfleet::PosixProcessRunner runner;
  auto agent = benchfleet::Agent::Create(options, &runner);
  if (!agent.ok()) return fail(std::string(agent.status().message()), 1);
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("received signal {}, shutting down", sig);
    (*agent)->Shutdown();
  });
  spdlog::info("benchfleet-agent {} dialling {}", (*agent)->id(), options.controller);
  absl::Status st = (*agent)->Run();
  // Run returns only after Shutdown, or on a configuration error: wake the waiter either way.
  pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  if (!st.ok()) return fail(std::string(st.message()), 3);
  return 0;
}
