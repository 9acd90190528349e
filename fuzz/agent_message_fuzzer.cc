// libFuzzer target: each message the controller accepts from an agent. The
// input is a serialized v1::AgentMessage (agent.proto), as read from an agent
// stream; it goes through what AgentStreamReactor does with it
// (controller/service/agent_service.cc) short of the Dispatcher: the
// conversions (controller/service/convert.h FromProto) and, for a hello, the
// admission (controller/auth/auth_policy.h AdmitAgent) with and without an
// agent certificate.
// Properties: conversions keep what they carry; an admitted agent's trusted
// labels are exactly its pins; a hello claiming another certificate's id is
// refused.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "benchfleet/v1/agent.pb.h"
#include "controller/auth/auth_policy.h"
#include "controller/service/convert.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"

namespace benchfleet {
namespace {

const TrustedLabels& Trusted() {
  static const TrustedLabels* trusted =
      new TrustedLabels{{{"agent-a", {{"pool", "gpu"}}},
                         {"agent-b", {{"pool", "cpu"}, {"rack", "r1"}}}}};
  return *trusted;
}

void CheckAdmission(const AgentHello& hello,
                    const std::string& certificate_id) {
  absl::StatusOr<Admission> admitted =
      AdmitAgent(hello.agent_id, hello.labels, certificate_id, Trusted());
  if (!certificate_id.empty() && certificate_id != hello.agent_id) {
    FUZZ_CHECK(absl::IsPermissionDenied(admitted.status()));
    return;
  }
  FUZZ_CHECK(admitted.ok());
  const auto pins_it = Trusted().per_agent.find(hello.agent_id);
  for (const std::string& key : Trusted().Keys()) {
    const auto label = admitted->labels.find(key);
    const bool pinned =
        pins_it != Trusted().per_agent.end() && pins_it->second.count(key) > 0;
    if (pinned) {
      FUZZ_CHECK(label != admitted->labels.end() &&
                 label->second == pins_it->second.at(key));
    } else {
      FUZZ_CHECK(label == admitted->labels.end());
    }
  }
  for (const auto& [key, value] : hello.labels) {
    if (Trusted().Keys().count(key) == 0) {
      FUZZ_CHECK(admitted->labels.count(key) == 1 &&
                 admitted->labels.at(key) == value);
    }
  }
}

void Hello(const v1::Hello& proto) {
  const AgentHello hello = FromProto(proto);
  FUZZ_CHECK(hello.agent_id == proto.agent_id());
  FUZZ_CHECK(hello.labels.size() == static_cast<size_t>(proto.labels_size()));
  // The service refuses an empty id before admission.
  if (hello.agent_id.empty()) return;
  CheckAdmission(hello, "");              // plaintext: the id as said
  CheckAdmission(hello, hello.agent_id);  // its own certificate
  CheckAdmission(hello, "agent-a");       // maybe another agent's
}

void StepResult(const v1::StepResult& proto) {
  const StepOutcome outcome = FromProto(proto);
  FUZZ_CHECK(outcome.seq == proto.step_seq());
  FUZZ_CHECK(outcome.metrics.size() ==
             static_cast<size_t>(proto.metrics_size()));
  FUZZ_CHECK(outcome.host.has_value() == proto.has_host());
}

}  // namespace
}  // namespace benchfleet

// Protobuf logs every string field that is not UTF-8; the fuzzer sends many.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using benchfleet::v1::AgentMessage;
  AgentMessage message;
  // Bytes that are no message end the stream in gRPC before any handler.
  if (!message.ParseFromArray(data, static_cast<int>(size))) return -1;
  switch (message.msg_case()) {
    case AgentMessage::kHello:
      benchfleet::Hello(message.hello());
      break;
    case AgentMessage::kLeaseReply:
      if (message.lease_reply().accepted() &&
          message.lease_reply().has_environment()) {
        const benchfleet::HostEnvironment env =
            benchfleet::FromProto(message.lease_reply().environment());
        FUZZ_CHECK(env.gpus.size() ==
                   static_cast<size_t>(
                       message.lease_reply().environment().gpus_size()));
      }
      break;
    case AgentMessage::kStepResult:
      benchfleet::StepResult(message.step_result());
      break;
    case AgentMessage::kSamples: {
      const std::vector<benchfleet::SampleRecord> samples =
          benchfleet::FromProto(message.samples());
      FUZZ_CHECK(samples.size() ==
                 static_cast<size_t>(message.samples().samples_size()));
      break;
    }
    case AgentMessage::kHeartbeat:  // passed on as plain fields
    case AgentMessage::kReleased:
    case AgentMessage::MSG_NOT_SET:
      break;
  }
  return 0;
}
