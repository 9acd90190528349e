// The signed-order envelope: what the controller seals opens at the agent
// exactly as sent, and every kind of tampering is refused with a reason that
// names the signature.
#include "common/order_signing.h"

#include <google/protobuf/util/message_differencer.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

constexpr char kNonce[] = "0123456789abcdef";

v1::ControllerMessage Step(const std::string& token = "tok") {
  v1::ControllerMessage m;
  v1::StepOrder* o = m.mutable_step();
  o->set_attempt_id(7);
  o->set_lease_token(token);
  o->set_step_seq(3);
  o->set_kind(v1::STEP_KIND_SETUP);
  o->add_argv("/bin/echo");
  o->add_argv("hello");
  o->set_cwd("/work/exp");
  (*o->mutable_env())["B"] = "2";
  (*o->mutable_env())["A"] = "1";
  o->set_timeout_us(6600);
  return m;
}

v1::ControllerMessage Lease() {
  v1::ControllerMessage m;
  m.mutable_lease()->set_attempt_id(7);
  m.mutable_lease()->set_lease_token("tok");
  m.mutable_lease()->set_workdir("/work/exp");
  m.mutable_lease()->mutable_gates()->set_max_cpu_temp_c(70);
  return m;
}

// Signs `payload` as SealOrder does, for hand-made payloads.
v1::ControllerMessage SignPayload(const SigningKey& key,
                                  const v1::OrderPayload& payload) {
  v1::ControllerMessage m;
  m.mutable_signed_order()->set_payload(payload.SerializeAsString());
  std::string bytes(kOrderSignatureContext, sizeof kOrderSignatureContext);
  bytes += m.signed_order().payload();
  m.mutable_signed_order()->set_signature(key.Sign(bytes));
  return m;
}

class OrderSigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<SigningKey> key = SigningKey::Generate();
    absl::StatusOr<SigningKey> other = SigningKey::Generate();
    ASSERT_TRUE(key.ok() && other.ok());
    key_.emplace(std::move(*key));
    other_.emplace(std::move(*other));
  }
  const VerifyingKey* pub() const { return &key_->verifying_key(); }

  std::optional<SigningKey> key_;
  std::optional<SigningKey> other_;
};

TEST_F(OrderSigningTest, ASealedStepOpensAsSent) {
  const v1::ControllerMessage sealed = SealOrder(*key_, kNonce, Step());
  ASSERT_TRUE(sealed.has_signed_order());
  EXPECT_EQ(sealed.signed_order().key_id(), pub()->fingerprint());
  const OpenedOrder opened = OpenOrder(pub(), kNonce, sealed);
  ASSERT_TRUE(opened.status.ok()) << opened.status;
  EXPECT_TRUE(MessageDifferencer::Equals(opened.message, Step()));
}

TEST_F(OrderSigningTest, ASealedLeaseOpensAsSent) {
  const OpenedOrder opened =
      OpenOrder(pub(), kNonce, SealOrder(*key_, kNonce, Lease()));
  ASSERT_TRUE(opened.status.ok()) << opened.status;
  EXPECT_TRUE(MessageDifferencer::Equals(opened.message, Lease()));
}

TEST_F(OrderSigningTest, MessagesThatRunNothingAreNotSigned) {
  v1::ControllerMessage revoke;
  revoke.mutable_revoke()->set_attempt_id(7);
  revoke.mutable_revoke()->add_step_seq(3);
  EXPECT_TRUE(SealOrder(*key_, kNonce, revoke).has_revoke());
  const OpenedOrder opened = OpenOrder(pub(), kNonce, revoke);
  EXPECT_TRUE(opened.status.ok());
  EXPECT_TRUE(opened.message.has_revoke());
}

TEST_F(OrderSigningTest, EveryFlippedPayloadByteIsRefused) {
  const v1::ControllerMessage sealed = SealOrder(*key_, kNonce, Step());
  const std::string& payload = sealed.signed_order().payload();
  for (size_t i = 0; i < payload.size(); ++i) {
    v1::ControllerMessage tampered = sealed;
    (*tampered.mutable_signed_order()->mutable_payload())[i] ^= 0x20;
    const OpenedOrder opened = OpenOrder(pub(), kNonce, tampered);
    EXPECT_EQ(opened.status.code(), absl::StatusCode::kPermissionDenied)
        << "byte " << i;
    EXPECT_THAT(opened.status.message(), HasSubstr("signature"));
  }
}

TEST_F(OrderSigningTest, AFlippedSignatureByteIsRefused) {
  v1::ControllerMessage tampered = SealOrder(*key_, kNonce, Step());
  (*tampered.mutable_signed_order()->mutable_signature())[10] ^= 0x01;
  const OpenedOrder opened = OpenOrder(pub(), kNonce, tampered);
  EXPECT_FALSE(opened.status.ok());
  EXPECT_THAT(opened.status.message(), HasSubstr("signature"));
  // What it claims to be is kept for the refusal's reply.
  EXPECT_EQ(opened.message.step().step_seq(), 3);
}

TEST_F(OrderSigningTest, AnotherKeysOrderIsRefusedNamingBothKeys) {
  const OpenedOrder opened =
      OpenOrder(pub(), kNonce, SealOrder(*other_, kNonce, Step()));
  EXPECT_FALSE(opened.status.ok());
  EXPECT_THAT(opened.status.message(), HasSubstr("signature"));
  EXPECT_THAT(opened.status.message(), HasSubstr(pub()->fingerprint()));
  EXPECT_THAT(opened.status.message(),
              HasSubstr(other_->verifying_key().fingerprint()));
}

TEST_F(OrderSigningTest, UnsignedOrdersAreRefusedWhenAKeyIsConfigured) {
  for (const v1::ControllerMessage& m : {Step(), Lease()}) {
    const OpenedOrder opened = OpenOrder(pub(), kNonce, m);
    EXPECT_EQ(opened.status.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(opened.status.message(), HasSubstr("signature"));
  }
}

TEST_F(OrderSigningTest, WithoutAKeyUnsignedAndSignedOrdersAreAccepted) {
  EXPECT_TRUE(OpenOrder(nullptr, kNonce, Step()).status.ok());
  const OpenedOrder opened =
      OpenOrder(nullptr, "", SealOrder(*other_, kNonce, Step()));
  ASSERT_TRUE(opened.status.ok()) << opened.status;
  EXPECT_TRUE(MessageDifferencer::Equals(opened.message, Step()));
}

TEST_F(OrderSigningTest, AnOrderFromAnotherStreamIsRefused) {
  const OpenedOrder opened =
      OpenOrder(pub(), "another-nonce!!!", SealOrder(*key_, kNonce, Step()));
  EXPECT_FALSE(opened.status.ok());
  EXPECT_THAT(opened.status.message(), HasSubstr("replayed signature"));
}

TEST_F(OrderSigningTest, ASignatureBoundToAnotherLeaseTokenIsRefused) {
  v1::OrderPayload payload;
  payload.set_domain(kOrderDomain);
  payload.set_session_nonce(kNonce);
  payload.set_lease_token("another-lease");
  *payload.mutable_step() = Step("tok").step();
  const OpenedOrder opened =
      OpenOrder(pub(), kNonce, SignPayload(*key_, payload));
  EXPECT_FALSE(opened.status.ok());
  EXPECT_THAT(opened.status.message(), HasSubstr("another lease"));
}

TEST_F(OrderSigningTest, ASignedPayloadOfAnotherPurposeIsRefused) {
  v1::OrderPayload payload;
  payload.set_domain("benchfleet.v1.something-else");
  payload.set_session_nonce(kNonce);
  payload.set_lease_token("tok");
  *payload.mutable_step() = Step().step();
  EXPECT_FALSE(
      OpenOrder(pub(), kNonce, SignPayload(*key_, payload)).status.ok());

  v1::OrderPayload empty;
  empty.set_domain(kOrderDomain);
  empty.set_session_nonce(kNonce);
  EXPECT_FALSE(OpenOrder(pub(), kNonce, SignPayload(*key_, empty)).status.ok());
}

TEST_F(OrderSigningTest, ASignatureWithoutTheContextPrefixIsRefused) {
  v1::ControllerMessage m = SealOrder(*key_, kNonce, Step());
  m.mutable_signed_order()->set_signature(
      key_->Sign(m.signed_order().payload()));
  EXPECT_FALSE(OpenOrder(pub(), kNonce, m).status.ok());
}

}  // namespace
}  // namespace benchfleet
