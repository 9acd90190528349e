// benchfleet-controller: parses flags and the config file, then runs the
// Controller until SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/config_file.h"
#include "controller/controller.h"
#include "controller/sample_retention.h"
#include "spdlog/spdlog.h"

namespace {

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "benchfleet-controller: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "benchfleet-controller: schedules benchmark experiments onto agents"};
  std::string config_path, listen, store, lease_timeout, sample_retention;
  app.add_option(
      "--config", config_path,
      "YAML config file (listen, store, lease_timeout, sample_retention)");
  app.add_option("--listen", listen,
                 "gRPC address HOST:PORT (default 127.0.0.1:7070)");
  app.add_option(
      "--store", store,
      "store URL: sqlite:///path/benchfleet.db (default: the data directory)");
  app.add_option("--lease-timeout", lease_timeout,
                 "how long an agent may be silent before its attempt is "
                 "re-queued (e.g. 15s)");
  app.add_option("--sample-retention", sample_retention,
                 "delete host samples older than this, at start-up and hourly "
                 "(default 30d; 0 keeps them forever)");
  // Order signing (DESIGN.md §7; common/signing.h).
  std::string signing_key;
  app.add_option("--signing-key", signing_key,
                 "Ed25519 private key (PEM, mode 0600) that signs every order "
                 "sent to agents; its signing.pub goes to each agent's "
                 "--controller-public-key (make both: benchfleet certs init)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  benchfleet::ControllerOptions options;
  options.store_url =
      absl::StrCat("sqlite://", benchfleet::DefaultDataDir(), "/benchfleet.db");
  if (!config_path.empty()) {
    auto config = benchfleet::LoadConfigFile(
        config_path, {"listen", "store", "lease_timeout", "sample_retention",
                      "signing_key"});
    if (!config.ok()) return Fail(std::string(config.status().message()), 1);
    if (config->contains("listen")) options.listen = (*config)["listen"];
    if (config->contains("store")) options.store_url = (*config)["store"];
    if (config->contains("lease_timeout") && lease_timeout.empty())
      lease_timeout = (*config)["lease_timeout"];
    if (config->contains("sample_retention") && sample_retention.empty())
      sample_retention = (*config)["sample_retention"];
    if (config->contains("signing_key") && signing_key.empty())
      signing_key = (*config)["signing_key"];
  }
  options.signing_key_file = signing_key;
  if (!listen.empty()) options.listen = listen;
  if (!store.empty()) options.store_url = store;
  if (!lease_timeout.empty()) {
    absl::Duration d;
    if (!absl::ParseDuration(lease_timeout, &d) || d <= absl::ZeroDuration()) {
      return Fail(
          absl::StrCat("--lease-timeout '", lease_timeout,
                       "' is not a positive duration such as 15s or 1m"),
          2);
    }
    options.lease_timeout = d;
  }

  if (!sample_retention.empty()) {
    absl::StatusOr<absl::Duration> keep =
        benchfleet::ParseSampleRetention(sample_retention);
    if (!keep.ok()) {
      return Fail(absl::StrCat("--sample-retention: ", keep.status().message()),
                  2);
    }
    options.sample_retention = *keep;
  }

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto controller = benchfleet::Controller::Create(options);
  if (!controller.ok()) {
    const bool store_problem =
        absl::StrContains(controller.status().message(), "store") ||
        absl::StrContains(controller.status().message(), "sqlite");
    return Fail(std::string(controller.status().message()),
                store_problem ? 3 : 1);
  }
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("received signal {}, shutting down", sig);
    (*controller)->Shutdown();
  });
  (*controller)->Wait();
  signal_waiter.join();
  return 0;
}
