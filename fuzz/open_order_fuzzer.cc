// libFuzzer target: the agent's order envelope opener (common/order_signing.h
// OpenOrder) on what a controller, or anything between it and the agent, may
// send. The first input byte holds flags, the rest is a serialized
// v1::ControllerMessage:
//   bit 0  re-sign a signed_order's payload with the harness's key, so that
//          the checks after the signature (payload, domain, token, nonce) are
//          reached — no fuzzer forges Ed25519;
//   bit 1  take the session nonce from the payload, so that the nonce check
//          can pass.
// Properties: with a key, nothing unsigned or signed by another key opens as
// an order; an order that opens with the key also opens without one; and
// SealOrder then OpenOrder gives the opened order back.
#include <cstddef>
#include <cstdint>
#include <string>

#include "benchfleet/v1/agent.pb.h"
#include "common/order_signing.h"
#include "common/signing.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/message_differencer.h"

namespace {

const benchfleet::SigningKey& Key() {
  static const benchfleet::SigningKey* key =
      new benchfleet::SigningKey(*benchfleet::SigningKey::Generate());
  return *key;
}

bool Same(const benchfleet::v1::ControllerMessage& a,
          const benchfleet::v1::ControllerMessage& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace

// Protobuf logs every string field that is not UTF-8; the fuzzer sends many.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace bf = benchfleet;
  if (size == 0) return -1;
  const bool resign = data[0] & 1;
  const bool nonce_from_payload = data[0] & 2;
  bf::v1::ControllerMessage message;
  if (!message.ParseFromArray(data + 1, static_cast<int>(size - 1))) return -1;

  std::string nonce(bf::kOrderNonceBytes, 'n');
  bool signed_here = false;
  if (message.has_signed_order()) {
    bf::v1::SignedOrder* order = message.mutable_signed_order();
    if (resign) {
      std::string bytes(bf::kOrderSignatureContext,
                        sizeof bf::kOrderSignatureContext);
      bytes.append(order->payload());
      order->set_signature(Key().Sign(bytes));
      signed_here = true;
    }
    bf::v1::OrderPayload payload;
    if (nonce_from_payload && payload.ParseFromString(order->payload()))
      nonce = payload.session_nonce();
  }

  const bf::OpenedOrder without_key = bf::OpenOrder(nullptr, nonce, message);
  const bf::OpenedOrder with_key =
      bf::OpenOrder(&Key().verifying_key(), nonce, message);
  if (with_key.status.ok()) {
    FUZZ_CHECK(without_key.status.ok());
    if (bf::NeedsSignature(with_key.message)) {
      FUZZ_CHECK(signed_here);
      FUZZ_CHECK(Same(with_key.message, without_key.message));
    }
  } else {
    FUZZ_CHECK(absl::IsPermissionDenied(with_key.status));
  }
  if (with_key.status.ok() && bf::NeedsSignature(with_key.message)) {
    const bf::v1::ControllerMessage sealed =
        bf::SealOrder(Key(), nonce, with_key.message);
    const bf::OpenedOrder reopened =
        bf::OpenOrder(&Key().verifying_key(), nonce, sealed);
    FUZZ_CHECK(reopened.status.ok());
    FUZZ_CHECK(Same(reopened.message, with_key.message));
  }
  return 0;
}
