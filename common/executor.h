// Executor: a fixed pool of threads running queued closures in FIFO order. gRPC
// callback reactors hand their slow work (store I/O) to one so that reactions
// never block. Thread-safe. The destructor drains the queue and joins the
// threads.
#ifndef BENCHFLEET_COMMON_EXECUTOR_H_
#define BENCHFLEET_COMMON_EXECUTOR_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace benchfleet {

class Executor {
 public:
  explicit Executor(int threads);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `fn`. After shutdown began, `fn` runs inline on the caller's thread.
  void Schedule(std::function<void()> fn);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_EXECUTOR_H_
