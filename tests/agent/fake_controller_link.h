// FakeControllerLink: a ControllerLink for agent tests, with no gRPC. Each
// Connect opens a FakeControllerStream the test drives: it queues controller
// messages for the agent to read, waits (with a deadline) for the messages the
// agent wrote, and ends the stream as a lost controller would.
//
// Used by tests/agent/agent_test.cc. Thread-safe.
#ifndef BENCHFLEET_TESTS_AGENT_FAKE_CONTROLLER_LINK_H_
#define BENCHFLEET_TESTS_AGENT_FAKE_CONTROLLER_LINK_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/service/controller_link.h"

namespace benchfleet {

class FakeControllerStream : public ControllerStream {
 public:
  bool Write(const v1::AgentMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (ended_) return false;
    written_.push_back(message);
    cv_.SignalAll();
    return true;
  }
  bool Read(v1::ControllerMessage* message) override {
    absl::MutexLock lock(&mu_);
    while (!ended_ && inbox_.empty()) cv_.Wait(&mu_);
    if (inbox_.empty()) return false;
    *message = std::move(inbox_.front());
    inbox_.pop_front();
    return true;
  }
  void Cancel() override { End(); }
  std::string Finish() override { return "fake stream ended"; }

  // The test's side.
  void Send(const v1::ControllerMessage& message) {
    absl::MutexLock lock(&mu_);
    inbox_.push_back(message);
    cv_.SignalAll();
  }
  // Ends the stream (a lost controller): Read returns false, Write fails.
  void End() {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    cv_.SignalAll();
  }
  // Waits until the agent has written a message that `match` accepts (looking
  // at those not yet taken by a previous WaitFor) and returns it; nullopt after
  // `deadline` of real time.
  std::optional<v1::AgentMessage> WaitFor(
      const std::function<bool(const v1::AgentMessage&)>& match,
      absl::Duration deadline = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    std::optional<v1::AgentMessage> found;
    const absl::Time until = absl::Now() + deadline;
    for (;;) {
      for (; taken_ < written_.size(); ++taken_) {
        if (match(written_[taken_])) {
          found = written_[taken_++];
          return found;
        }
      }
      if (cv_.WaitWithDeadline(&mu_, until)) return found;
    }
  }
  std::vector<v1::AgentMessage> written() {
    absl::MutexLock lock(&mu_);
    return written_;
  }

 private:
  absl::Mutex mu_;
  absl::CondVar cv_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::ControllerMessage> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::AgentMessage> written_ ABSL_GUARDED_BY(mu_);
  size_t taken_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeControllerLink : public ControllerLink {
 public:
  absl::StatusOr<std::unique_ptr<ControllerStream>> Connect() override {
    auto stream = std::make_unique<Forward>(this);
    absl::MutexLock lock(&mu_);
    streams_.push_back(std::make_shared<FakeControllerStream>());
    stream->target = streams_.back();
    cv_.SignalAll();
    return std::unique_ptr<ControllerStream>(std::move(stream));
  }
  // Waits (real time, with a deadline) until the agent has opened its n-th
  // stream (1-based) and returns it; null after the deadline.
  std::shared_ptr<FakeControllerStream> AwaitStream(
      size_t n, absl::Duration deadline = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    const absl::Time until = absl::Now() + deadline;
    while (streams_.size() < n) {
      if (cv_.WaitWithDeadline(&mu_, until)) break;
    }
    return streams_.size() >= n ? streams_[n - 1] : nullptr;
  }

 private:
  // The agent owns what Connect returns; the test keeps the stream too.
  struct Forward : ControllerStream {
    explicit Forward(FakeControllerLink*) {}
    bool Write(const v1::AgentMessage& m) override { return target->Write(m); }
    bool Read(v1::ControllerMessage* m) override { return target->Read(m); }
    void Cancel() override { target->Cancel(); }
    std::string Finish() override { return target->Finish(); }
    std::shared_ptr<FakeControllerStream> target;
  };
  absl::Mutex mu_;
  absl::CondVar cv_;
  std::vector<std::shared_ptr<FakeControllerStream>> streams_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace benchfleet

#endif  // BENCHFLEET_TESTS_AGENT_FAKE_CONTROLLER_LINK_H_
