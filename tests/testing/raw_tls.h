// Agent-stream handshakes for the TLS tests (tls_fleet_test, tls_netns_test):
// channel credentials built straight from PEM text, bypassing the product's
// own client-side checks (an expired certificate is presented anyway), and a
// hello on the agent stream, so that a test sees what the controller itself
// refuses.
#ifndef BENCHFLEET_TESTS_TESTING_RAW_TLS_H_
#define BENCHFLEET_TESTS_TESTING_RAW_TLS_H_

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "benchfleet/v1/agent.grpc.pb.h"
#include "common/certs.h"
#include "common/credentials.h"

namespace benchfleet::testing {

// TLS credentials trusting `ca_pem` and presenting `identity` (nullptr: no
// client certificate).
inline std::shared_ptr<grpc::ChannelCredentials> RawTls(
    const std::string& ca_pem, const KeyAndCert* identity) {
  std::vector<grpc::experimental::IdentityKeyCertPair> pairs;
  if (identity != nullptr)
    pairs.push_back({identity->key_pem, identity->cert_pem});
  auto provider =
      identity != nullptr
          ? std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
                ca_pem, pairs)
          : std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
                ca_pem);
  grpc::experimental::TlsChannelCredentialsOptions opts;
  opts.set_certificate_provider(provider);
  opts.watch_root_certs();
  if (identity != nullptr) opts.watch_identity_key_cert_pairs();
  return grpc::experimental::TlsCredentials(opts);
}

// Opens an agent stream to `address` with `creds`, says hello as `id` and
// returns how the controller answered: OK with a welcome, else the stream's
// status.
inline grpc::Status AgentHello(const std::string& address,
                               std::shared_ptr<grpc::ChannelCredentials> creds,
                               const std::string& id) {
  auto stub = v1::AgentService::NewStub(
      grpc::CreateCustomChannel(address, creds, MakeChannelArguments()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Connect(&ctx);
  v1::AgentMessage hello;
  hello.mutable_hello()->set_agent_id(id);
  stream->Write(hello);
  v1::ControllerMessage reply;
  if (stream->Read(&reply) && reply.has_welcome()) {
    ctx.TryCancel();
    return grpc::Status::OK;
  }
  return stream->Finish();
}

}  // namespace benchfleet::testing

#endif  // BENCHFLEET_TESTS_TESTING_RAW_TLS_H_
