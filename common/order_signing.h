// The signed-order envelope (proto/benchfleet/v1/agent.proto, SignedOrder and
// OrderPayload; DESIGN.md §7), built and opened in this one place: the
// controller seals every Lease and StepOrder at the point where messages go
// onto an agent's stream (controller/service/agent_service.cc), and the agent
// opens what it reads before it converts or acts on anything
// (agent/service/agent.cc).
//
// The signature covers the exact payload bytes, and the order is parsed from
// those verified bytes; nothing is re-serialized to be checked.
//
// Pure functions; thread-safe.
#ifndef BENCHFLEET_COMMON_ORDER_SIGNING_H_
#define BENCHFLEET_COMMON_ORDER_SIGNING_H_

#include <string>

#include "absl/status/status.h"
#include "benchfleet/v1/agent.pb.h"
#include "common/signing.h"

namespace benchfleet {

// Prefixed to the payload before signing, so that a signature over an order
// never verifies as anything else the same key may sign.
inline constexpr char kOrderSignatureContext[] = "benchfleet.v1.SignedOrder";
// OrderPayload.domain.
inline constexpr char kOrderDomain[] = "benchfleet.v1.order";
// The size of Hello.order_nonce an agent sends.
inline constexpr size_t kOrderNonceBytes = 16;

// True for the messages that must travel signed: a Lease or a StepOrder.
bool NeedsSignature(const v1::ControllerMessage& message);

// Returns `message` as sent on a stream whose hello carried `session_nonce`:
// a Lease or StepOrder wrapped in a SignedOrder signed with `key`; any other
// message unchanged.
v1::ControllerMessage SealOrder(const SigningKey& key,
                                const std::string& session_nonce,
                                const v1::ControllerMessage& message);

// What the agent may act upon.
struct OpenedOrder {
  // OK: `message` is to be acted upon. Otherwise the order is refused, and
  // the message says why (it always names the signature, the key and what to
  // do).
  absl::Status status;
  // The message with a signed order unwrapped into its `lease` or `step`
  // case. When refused, what the order claims to be (unverified), for the
  // refusal's reply only.
  v1::ControllerMessage message;
};

// Opens `message` as read by an agent on the stream whose hello carried
// `session_nonce`. With a `key` (the agent has controller_public_key), a Lease
// or StepOrder must arrive as a SignedOrder that verifies with it, whose
// payload carries this stream's nonce and the order's own lease token; a plain
// Lease or StepOrder is refused. Without a key (loopback, or --insecure),
// signed and plain orders are both accepted unverified. Messages that need no
// signature pass through.
OpenedOrder OpenOrder(const VerifyingKey* key, const std::string& session_nonce,
                      const v1::ControllerMessage& message);

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_ORDER_SIGNING_H_
