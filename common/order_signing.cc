#include "common/order_signing.h"

#include <string_view>

#include "absl/strings/str_cat.h"

namespace benchfleet {
namespace {

std::string SignedBytes(std::string_view payload) {
  // The context's terminating NUL is part of what is signed: no payload can
  // extend the context into another one.
  std::string bytes(kOrderSignatureContext, sizeof kOrderSignatureContext);
  bytes.append(payload);
  return bytes;
}

// What the payload claims, for a refusal's reply: its order, unverified.
v1::ControllerMessage Claimed(const v1::OrderPayload& payload) {
  v1::ControllerMessage m;
  if (payload.has_lease()) *m.mutable_lease() = payload.lease();
  if (payload.has_step()) *m.mutable_step() = payload.step();
  return m;
}

const std::string& OrderToken(const v1::OrderPayload& payload) {
  return payload.has_lease() ? payload.lease().lease_token()
                             : payload.step().lease_token();
}

absl::Status Refused(const std::string& why) {
  return absl::PermissionDeniedError(
      absl::StrCat("order refused, nothing was run: ", why));
}

constexpr char kKeyAdvice[] =
    "; the agent's controller_public_key must be the signing.pub of the "
    "controller's signing_key";

}  // namespace

bool NeedsSignature(const v1::ControllerMessage& message) {
  return message.has_lease() || message.has_step();
}

v1::ControllerMessage SealOrder(const SigningKey& key,
                                const std::string& session_nonce,
                                const v1::ControllerMessage& message) {
  if (!NeedsSignature(message)) return message;
  v1::OrderPayload payload;
  payload.set_domain(kOrderDomain);
  payload.set_session_nonce(session_nonce);
  if (message.has_lease()) {
    payload.set_lease_token(message.lease().lease_token());
    *payload.mutable_lease() = message.lease();
  } else {
    payload.set_lease_token(message.step().lease_token());
    *payload.mutable_step() = message.step();
  }
  v1::ControllerMessage out;
  v1::SignedOrder* signed_order = out.mutable_signed_order();
  // Serialized once; these bytes are what is signed and what the agent parses.
  signed_order->set_payload(payload.SerializeAsString());
  signed_order->set_signature(key.Sign(SignedBytes(signed_order->payload())));
  signed_order->set_key_id(key.verifying_key().fingerprint());
  return out;
}

OpenedOrder OpenOrder(const VerifyingKey* key, const std::string& session_nonce,
                      const v1::ControllerMessage& message) {
  OpenedOrder opened;
  if (!message.has_signed_order()) {
    opened.message = message;
    if (key != nullptr && NeedsSignature(message)) {
      opened.status = Refused(absl::StrCat(
          "an unsigned ", message.has_lease() ? "lease" : "step order",
          " has no signature, and this agent accepts only orders signed by "
          "key ",
          key->fingerprint(),
          " (a controller started without signing_key, or something between "
          "it and this agent)",
          kKeyAdvice));
    }
    return opened;
  }
  const v1::SignedOrder& signed_order = message.signed_order();
  v1::OrderPayload payload;
  // Parsed before verification only to describe a refusal; nothing below acts
  // on it unless the signature holds.
  const bool parsed = payload.ParseFromString(signed_order.payload());
  if (parsed) opened.message = Claimed(payload);
  if (key != nullptr && !key->Verify(SignedBytes(signed_order.payload()),
                                     signed_order.signature())) {
    const std::string& claimed_key = signed_order.key_id();
    opened.status = Refused(absl::StrCat(
        "the signature does not verify with this agent's controller public "
        "key ",
        key->fingerprint(),
        claimed_key == key->fingerprint()
            ? "; the order was altered on its way from the controller"
            : absl::StrCat("; it says it was signed by key '", claimed_key,
                           "', another controller's", kKeyAdvice)));
    return opened;
  }
  if (!parsed || payload.domain() != kOrderDomain ||
      !(payload.has_lease() || payload.has_step())) {
    opened.status = Refused(
        "a signed order's payload is not a lease or step order (malformed "
        "signature payload)");
    return opened;
  }
  if (payload.lease_token() != OrderToken(payload)) {
    opened.status = Refused(
        "the signed lease token differs from the order's own lease token "
        "(signature bound to another lease)");
    return opened;
  }
  if (key != nullptr && payload.session_nonce() != session_nonce) {
    opened.status = Refused(
        "the signed order was sent on an earlier connection (session nonce "
        "differs; a replayed signature)");
    return opened;
  }
  return opened;
}

}  // namespace benchfleet
