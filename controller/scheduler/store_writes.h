// StoreWrites: how the Dispatcher makes a store write that nothing waits on
// (an agent's state, an attempt's end or loss, an environment record,
// samples). A write the store may recover from (it is down, busy or out of
// space: StoreMayRecover) is kept and tried again every retry interval until
// it succeeds; any other failure is logged and counted. A newer write under the
// same key supersedes a kept one (e.g. an agent's state), so a late retry never
// overwrites a newer value. Time comes from the caller (the dispatcher's
// Clock). Not thread-safe; externally synchronized (the dispatcher's loop);
// the counters may be read from any thread.
#ifndef BENCHFLEET_CONTROLLER_SCHEDULER_STORE_WRITES_H_
#define BENCHFLEET_CONTROLLER_SCHEDULER_STORE_WRITES_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace benchfleet {

// Store errors worth retrying: the database is down, busy, or out of space —
// an operator or a restart can fix them without changing the request.
bool StoreMayRecover(const absl::Status& s);

class StoreWrites {
 public:
  using Write = std::function<absl::Status()>;

  explicit StoreWrites(absl::Duration retry_interval)
      : retry_interval_(retry_interval) {}

  // Runs `write` now, dropping a kept write under `key` first. Returns its
  // status. On a failure the store may recover from, keeps it for RetryDue
  // (logged as a warning); on any other, logs "could not <what>: <status>" and
  // counts it in failed().
  absl::Status Run(const std::string& key, const std::string& what, Write write,
                   absl::Time now);
  // Tries the kept writes again when the retry interval has passed since the
  // last try; those that fail recoverably again stay.
  void RetryDue(absl::Time now);
  // Forgets the kept write under `key`, if any (a newer write made it moot).
  void Drop(const std::string& key) { kept_.erase(key); }
  bool empty() const { return kept_.empty(); }
  bool kept(const std::string& key) const { return kept_.contains(key); }

  // Tries made again (each retry of a kept write counts once).
  int64_t retried() const { return retried_.load(); }
  // Writes given up on: failed in a way the store does not recover from.
  int64_t failed() const { return failed_.load(); }

 private:
  struct Kept {
    std::string what;
    Write write;
  };
  // Handles a failed try; true when the write is kept.
  bool OnFailure(const std::string& key, const std::string& what,
                 const Write& write, const absl::Status& st, absl::Time now);

  absl::Duration retry_interval_;
  std::map<std::string, Kept> kept_;
  absl::Time next_retry_ = absl::InfinitePast();
  std::atomic<int64_t> retried_{0};
  std::atomic<int64_t> failed_{0};
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SCHEDULER_STORE_WRITES_H_
