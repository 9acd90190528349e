// Bounds on what one caller may ask of the user API (fleet.proto; DESIGN.md
// §7: bounded input everywhere a peer can send). Every user-API call is
// unary except WatchExperiment, whose client sends one request and then only
// reads: a flood is therefore many calls, not many messages on one stream, so
// the bounds are per caller (a token's user over TLS, the client's address
// otherwise): requests per second (a token bucket, MessageRate from
// agent_input_limits.h) and open WatchExperiment streams. Message sizes are
// capped by gRPC (kMaxMessageBytes) and specs by the spec loader. A refused
// call gets RESOURCE_EXHAUSTED saying which bound, whose, and what to do;
// other callers are not affected.
//
// Used by FleetServiceImpl. Thread-safe.
#ifndef BENCHFLEET_CONTROLLER_SERVICE_USER_INPUT_LIMITS_H_
#define BENCHFLEET_CONTROLLER_SERVICE_USER_INPUT_LIMITS_H_

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controller/service/agent_input_limits.h"

namespace benchfleet {

struct UserInputLimits {
  // Sustained calls per second per caller and the burst above it: far above
  // what the CLI does (a `watch` is one call; `agents`/`list` one each) or a
  // script polling every 20 ms, low enough that one caller in a tight loop
  // cannot monopolise the executor and the store.
  double requests_per_second = 100;
  double burst = 500;
  // Open WatchExperiment streams per caller.
  int max_watch_streams = 64;
  // Callers remembered at once; past it, idle ones are forgotten (their
  // buckets start full again).
  size_t max_callers = 10'000;
};

class UserCallLimiter {
 public:
  explicit UserCallLimiter(UserInputLimits limits = {}) : limits_(limits) {}

  // Takes one call from `caller`'s budget. OK, or ResourceExhausted naming
  // the caller and the bound and saying what to do.
  absl::Status AdmitCall(const std::string& caller, absl::Time now);
  // As AdmitCall, and counts one more open watch stream for `caller`;
  // ResourceExhausted when it already has max_watch_streams. Every OK must be
  // matched by one EndWatch.
  absl::Status AdmitWatch(const std::string& caller, absl::Time now);
  void EndWatch(const std::string& caller);

  const UserInputLimits& limits() const { return limits_; }

 private:
  struct PerCaller {
    explicit PerCaller(const UserInputLimits& l)
        : rate(l.requests_per_second, l.burst) {}
    MessageRate rate;
    int watches = 0;
  };
  PerCaller& FindLocked(const std::string& caller)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const UserInputLimits limits_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, PerCaller> callers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_USER_INPUT_LIMITS_H_
