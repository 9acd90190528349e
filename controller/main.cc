// benchfleet-controller: parses flags and the config file, then runs the
// Controller until SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>
#include <map>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/config_file.h"
#include "controller/auth/tokens.h"
#include "controller/controller.h"
#include "controller/sample_retention.h"
#include "controller/store/store.h"
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
  std::string tls_cert, tls_key, client_ca;
  bool insecure = false;
  app.add_option("--config", config_path,
                 "YAML config file (listen, store, lease_timeout, "
                 "sample_retention, tls_cert, tls_key, client_ca, insecure, "
                 "trusted_labels)");
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
  app.add_option("--tls-cert", tls_cert,
                 "the controller's certificate (PEM); turns TLS on, with a "
                 "token required for every user call");
  app.add_option("--tls-key", tls_key, "the key of --tls-cert (PEM)");
  app.add_option("--client-ca", client_ca,
                 "CA that signs agents' client certificates (mutual TLS)");
  app.add_flag("--insecure", insecure,
               "allow plaintext on an address other hosts can reach");
  std::string data_dir, max_bundle_size;
  app.add_option("--data-dir", data_dir,
                 "where uploaded source bundles are kept (<dir>/bundles; "
                 "default: the directory of a sqlite store, else the user's "
                 "data directory)");
  app.add_option("--max-bundle-size", max_bundle_size,
                 "largest source bundle accepted, in MiB (default 256)");
  // The first admin token is made here, on the controller's host, straight
  // in its store: nobody can call CreateToken before an admin exists.
  auto* token_cmd =
      app.add_subcommand("token",
                         "manage API tokens in this controller's store "
                         "(the first admin token is made here)");
  std::string token_user, token_role;
  int64_t token_id = 0;
  auto* token_create =
      token_cmd->add_subcommand("create", "create a token and print it once");
  token_create->add_option("--user", token_user, "who the token is for")
      ->required();
  token_create->add_option("--role", token_role, "viewer, submitter or admin")
      ->required();
  auto* token_list = token_cmd->add_subcommand("list", "list tokens");
  auto* token_revoke = token_cmd->add_subcommand("revoke", "revoke a token");
  token_revoke->add_option("id", token_id, "token id (from `token list`)")
      ->required();
  token_cmd->require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  benchfleet::ControllerOptions options;
  options.store_url =
      absl::StrCat("sqlite://", benchfleet::DefaultDataDir(), "/benchfleet.db");
  if (!config_path.empty()) {
    std::map<std::string, std::map<std::string, std::string>> mappings;
    auto config = benchfleet::LoadConfigFile(
        config_path,
        {"listen", "store", "lease_timeout", "sample_retention", "tls_cert",
         "tls_key", "client_ca", "insecure", "trusted_labels", "signing_key",
         "data_dir", "max_bundle_size"},
        {"trusted_labels"}, &mappings);
    if (!config.ok()) return Fail(std::string(config.status().message()), 1);
    for (const auto& [agent, text] : mappings["trusted_labels"]) {
      auto labels = benchfleet::ParseLabels(text);
      if (!labels.ok() || labels->empty()) {
        return Fail(absl::StrCat(config_path, ": trusted_labels: ", agent,
                                 ": expected labels such as \"pool=gpu\", "
                                 "got \"",
                                 text, "\""),
                    2);
      }
      options.trusted_labels.per_agent[agent] = *labels;
    }
    for (auto [key, flag] :
         {std::pair{"tls_cert", &tls_cert}, std::pair{"tls_key", &tls_key},
          std::pair{"client_ca", &client_ca}}) {
      if (flag->empty() && config->contains(key)) *flag = (*config)[key];
    }
    if (absl::Status s = benchfleet::TakeConfigBool(*config, "insecure",
                                                    config_path, &insecure);
        !s.ok())
      return Fail(std::string(s.message()), 2);
    if (config->contains("listen")) options.listen = (*config)["listen"];
    if (config->contains("store")) options.store_url = (*config)["store"];
    if (config->contains("lease_timeout") && lease_timeout.empty())
      lease_timeout = (*config)["lease_timeout"];
    if (config->contains("sample_retention") && sample_retention.empty())
      sample_retention = (*config)["sample_retention"];
    if (config->contains("signing_key") && signing_key.empty())
      signing_key = (*config)["signing_key"];
    if (config->contains("data_dir") && data_dir.empty())
      data_dir = (*config)["data_dir"];
    if (config->contains("max_bundle_size") && max_bundle_size.empty())
      max_bundle_size = (*config)["max_bundle_size"];
  }
  options.signing_key_file = signing_key;
  options.data_dir = data_dir;
  if (!max_bundle_size.empty()) {
    int64_t mib = 0;
    if (!absl::SimpleAtoi(max_bundle_size, &mib) || mib <= 0 ||
        mib > (int64_t{1} << 20)) {
      return Fail(absl::StrCat("--max-bundle-size '", max_bundle_size,
                               "' is not a size in MiB between 1 and ",
                               int64_t{1} << 20, " (e.g. 512)"),
                  2);
    }
    options.max_bundle_bytes = mib << 20;
  }
  if (!listen.empty()) options.listen = listen;
  if (!store.empty()) options.store_url = store;
  options.transport.cert_file = tls_cert;
  options.transport.key_file = tls_key;
  options.transport.ca_file = client_ca;
  options.transport.insecure = insecure;

  if (token_cmd->parsed()) {
    auto opened = benchfleet::OpenStore(options.store_url);
    if (!opened.ok()) return Fail(std::string(opened.status().message()), 3);
    benchfleet::Store* s = opened->get();
    if (token_create->parsed()) {
      auto issued =
          benchfleet::IssueToken(s, token_user, token_role, "", absl::Now());
      if (!issued.ok()) return Fail(std::string(issued.status().message()), 1);
      std::fprintf(stderr,
                   "token %lld for '%s' (%s); it is shown only now: store it "
                   "in a file only its user can read (chmod 600) and pass "
                   "--token-file\n",
                   static_cast<long long>(issued->record.id),
                   issued->record.user.c_str(),
                   benchfleet::RoleName(issued->record.role));
      std::printf("%s\n", issued->text.c_str());
      return 0;
    }
    if (token_list->parsed()) {
      auto tokens = s->ListTokens();
      if (!tokens.ok()) return Fail(std::string(tokens.status().message()), 3);
      std::printf("%-5s %-20s %-10s %-20s %s\n", "ID", "USER", "ROLE",
                  "CREATED", "REVOKED");
      for (const benchfleet::TokenRecord& t : *tokens) {
        std::printf("%-5lld %-20s %-10s %-20s %s\n",
                    static_cast<long long>(t.id), t.user.c_str(),
                    benchfleet::RoleName(t.role),
                    absl::FormatTime("%Y-%m-%d %H:%M", t.created_at,
                                     absl::UTCTimeZone())
                        .c_str(),
                    t.revoked_at.has_value()
                        ? absl::FormatTime("%Y-%m-%d %H:%M", *t.revoked_at,
                                           absl::UTCTimeZone())
                              .c_str()
                        : "-");
      }
      return 0;
    }
    auto revoked = s->RevokeToken(token_id, absl::Now());
    if (!revoked.ok()) return Fail(std::string(revoked.status().message()), 1);
    std::fprintf(stderr, "token %lld of '%s' revoked\n",
                 static_cast<long long>(revoked->id), revoked->user.c_str());
    return 0;
  }
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
