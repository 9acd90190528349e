// Controller: the composition root of benchfleet-controller and of local mode.
// It opens the store, builds the dispatcher and the two gRPC services and
// serves them on one port. Thread-safe. Create() starts serving; Shutdown() (or
// the destructor) stops everything.
#ifndef BENCHFLEET_CONTROLLER_CONTROLLER_H_
#define BENCHFLEET_CONTROLLER_CONTROLLER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/credentials.h"
#include "controller/auth/auth_policy.h"
#include "controller/service/user_input_limits.h"

namespace benchfleet {

struct ControllerOptions {
  std::string listen =
      "127.0.0.1:7070";  // port 0 picks a free port (see Controller::port)
  std::string store_url = "sqlite://benchfleet.db";
  // TLS (cert_file, key_file; ca_file verifies agents' client certificates)
  // or plaintext (loopback, or anywhere with `insecure`). With TLS every call
  // is authenticated: agents by certificate, users by token.
  TransportOptions transport;
  // Labels pinned per agent id (trusted dimensions).
  TrustedLabels trusted_labels;
  // How long a looked-up token is trusted before the store is asked again
  // (a revocation through another controller takes effect within it).
  absl::Duration token_cache_ttl = absl::Seconds(5);
  // Per-caller bounds on the user API (calls per second, open watches).
  UserInputLimits user_limits;
  absl::Duration heartbeat_interval = absl::Seconds(2);
  absl::Duration lease_timeout = absl::Seconds(15);
  // Host samples older than this are deleted, at start-up and then hourly;
  // zero keeps them forever (controller/sample_retention.h).
  absl::Duration sample_retention = absl::Hours(24 * 30);
  Clock* clock = nullptr;  // default: the real clock
  // PEM Ed25519 private key (common/signing.h) that signs every lease and step
  // order sent to agents; empty = orders go out unsigned, and agents
  // configured with controller_public_key refuse them.
  std::string signing_key_file;
  // Where the controller keeps what is not in the store: source bundles go
  // to <data_dir>/bundles (Create fails when it cannot be made). Empty: the
  // directory of a sqlite store's file, else the user's data directory
  // (common/config_file.h DefaultDataDir); when that cannot be written, the
  // controller runs without bundles (their calls answer UNAVAILABLE).
  std::string data_dir;
  // Bundles larger than this are refused at upload.
  int64_t max_bundle_bytes = int64_t{256} << 20;
};

class Controller {
 public:
  // Opens the store (applying migrations), re-queues attempts a previous
  // process left running, and starts serving. Errors name the address or store
  // URL that failed.
  static absl::StatusOr<std::unique_ptr<Controller>> Create(
      const ControllerOptions& options);
  ~Controller();

  int port() const;
  std::string address() const;  // "127.0.0.1:PORT" as clients should dial it
  // Blocks until Shutdown() is called from another thread.
  void Wait();
  void Shutdown();

  class Impl;

 private:
  explicit Controller(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_CONTROLLER_H_
