#include "controller/service/agent_input_limits.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace benchfleet {
namespace {

absl::Status TooLong(const char* what, size_t size, size_t limit) {
  return absl::InvalidArgumentError(absl::StrCat(
      what, " is ", size, " bytes; the controller accepts at most ", limit));
}

absl::Status TooMany(const char* what, int count, int limit) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, " has ", count,
                   " entries; the controller accepts at most ", limit));
}

absl::Status CheckText(const char* what, const std::string& text,
                       size_t limit) {
  return text.size() > limit ? TooLong(what, text.size(), limit)
                             : absl::OkStatus();
}

absl::Status CheckResult(const v1::StepResult& r, const AgentInputLimits& l) {
  for (const auto& [what, text] :
       {std::pair<const char*, const std::string*>{"step_result.error",
                                                   &r.error()},
        {"step_result.stderr_tail", &r.stderr_tail()},
        {"step_result.output_digest", &r.output_digest()},
        {"step_result.gate_blocked_by", &r.gate_blocked_by()},
        {"step_result.lease_token", &r.lease_token()}}) {
    if (absl::Status s = CheckText(what, *text, l.max_text_bytes); !s.ok())
      return s;
  }
  if (r.metrics_size() > l.max_metrics)
    return TooMany("step_result.metrics", r.metrics_size(), l.max_metrics);
  for (const auto& [name, value] : r.metrics()) {
    if (name.size() > l.max_label_bytes)
      return TooLong("a step_result.metrics name", name.size(),
                     l.max_label_bytes);
  }
  if (r.host_flags_size() > l.max_host_flags)
    return TooMany("step_result.host_flags", r.host_flags_size(),
                   l.max_host_flags);
  for (const std::string& flag : r.host_flags()) {
    if (flag.size() > l.max_label_bytes)
      return TooLong("a step_result.host_flags entry", flag.size(),
                     l.max_label_bytes);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckAgentMessage(const v1::AgentMessage& m,
                               const AgentInputLimits& l) {
  switch (m.msg_case()) {
    case v1::AgentMessage::kHello: {
      const v1::Hello& h = m.hello();
      if (h.agent_id().size() > l.max_id_bytes)
        return TooLong("hello.agent_id", h.agent_id().size(), l.max_id_bytes);
      if (h.labels_size() > l.max_labels)
        return TooMany("hello.labels", h.labels_size(), l.max_labels);
      for (const auto& [key, value] : h.labels()) {
        if (key.size() > l.max_label_bytes || value.size() > l.max_label_bytes)
          return TooLong("a hello.labels entry",
                         std::max(key.size(), value.size()), l.max_label_bytes);
      }
      if (h.ByteSizeLong() > 4 * l.max_text_bytes)
        return TooLong("hello", h.ByteSizeLong(), 4 * l.max_text_bytes);
      return absl::OkStatus();
    }
    case v1::AgentMessage::kHeartbeat:
      return CheckText("heartbeat.status", m.heartbeat().status(),
                       l.max_text_bytes);
    case v1::AgentMessage::kLeaseReply: {
      if (absl::Status s = CheckText(
              "lease_reply.reason", m.lease_reply().reason(), l.max_text_bytes);
          !s.ok())
        return s;
      const size_t env = m.lease_reply().environment().ByteSizeLong();
      return env > 4 * l.max_text_bytes
                 ? TooLong("lease_reply.environment", env, 4 * l.max_text_bytes)
                 : absl::OkStatus();
    }
    case v1::AgentMessage::kStepResult:
      return CheckResult(m.step_result(), l);
    case v1::AgentMessage::kSamples: {
      const v1::SampleBatch& b = m.samples();
      if (b.samples_size() > l.max_samples_per_batch)
        return TooMany("samples.samples", b.samples_size(),
                       l.max_samples_per_batch);
      for (const v1::HostSampleRow& row : b.samples()) {
        if (absl::Status s = CheckText("samples.samples.detail_json",
                                       row.detail_json(), l.max_text_bytes);
            !s.ok())
          return s;
      }
      return absl::OkStatus();
    }
    case v1::AgentMessage::kReleased:
    case v1::AgentMessage::MSG_NOT_SET:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

bool MessageRate::Take(absl::Time now) {
  if (last_ != absl::InfinitePast() && now > last_) {
    tokens_ = std::min(
        burst_, tokens_ + absl::ToDoubleSeconds(now - last_) * per_second_);
  }
  last_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

}  // namespace benchfleet
