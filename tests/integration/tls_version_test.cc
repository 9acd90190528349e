// TLS 1.2 or later on the controller's listener (DESIGN.md §7): a raw OpenSSL
// client that offers only TLS 1.0 or only TLS 1.1 is refused by the
// controller, whose TLS layer says "unsupported protocol" (its minimum
// version, not a cipher mismatch), while the same client offering TLS 1.2 or
// TLS 1.3 completes its handshake (so the refusal is not the client's own
// library declining to try). Loopback only; the controller is the real one,
// in process, so the test reads gRPC's log through gpr_set_log_function.
#include <arpa/inet.h>
#include <grpc/support/log.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/certs.h"
#include "controller/controller.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::TempDir;

// gRPC's log, kept for the test to read (gRPC takes a plain function) and
// still printed.
absl::Mutex log_mu;
std::string& GrpcLog() {
  static std::string* log = new std::string;
  return *log;
}
void CaptureGrpcLog(gpr_log_func_args* args) {
  std::fprintf(stderr, "grpc: %s:%d] %s\n", args->file, args->line,
               args->message);
  absl::MutexLock lock(&log_mu);
  GrpcLog() += args->message;
  GrpcLog() += "\n";
}
std::string ReadGrpcLog() {
  absl::MutexLock lock(&log_mu);
  return GrpcLog();
}

struct Handshake {
  bool ok = false;
  int version = 0;    // SSL_version() when ok
  int reason = 0;     // ERR_GET_REASON of the first error otherwise
  std::string error;  // its text
};

// Connects to 127.0.0.1:`port` and runs a TLS handshake offering exactly
// `version` (TLS1_VERSION .. TLS1_3_VERSION). Security level 0, so that this
// OpenSSL (3.x refuses TLS < 1.2 at its default level) does offer the old
// versions; the server's certificate is not verified (not the point here).
Handshake TryHandshake(int port, int version) {
  Handshake h;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(
      SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (ctx == nullptr) {
    h.error = "SSL_CTX_new failed";
    return h;
  }
  SSL_CTX_set_security_level(ctx.get(), 0);
  SSL_CTX_set_cipher_list(ctx.get(), "ALL:@SECLEVEL=0");
  SSL_CTX_set_min_proto_version(ctx.get(), version);
  SSL_CTX_set_max_proto_version(ctx.get(), version);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn));

  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    h.error = "connect failed";
    close(fd);
    return h;
  }
  SSL* ssl = SSL_new(ctx.get());
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  ERR_clear_error();
  if (SSL_connect(ssl) == 1) {
    h.ok = true;
    h.version = SSL_version(ssl);
  } else {
    const unsigned long err = ERR_peek_error();
    h.reason = ERR_GET_REASON(err);
    char text[256];
    ERR_error_string_n(err, text, sizeof(text));
    h.error = text;
  }
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
  return h;
}

class TlsVersionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gpr_set_log_function(CaptureGrpcLog);
    auto ca =
        MakeCertificateAuthority("version CA", absl::Now() + absl::Hours(24));
    ASSERT_TRUE(ca.ok()) << ca.status();
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "ca", *ca).ok());
    CertificateRequest req;
    req.common_name = "controller";
    req.sans = {"127.0.0.1", "localhost"};
    req.server_auth = true;
    auto cert = IssueCertificate(*ca, req);
    ASSERT_TRUE(cert.ok()) << cert.status();
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "controller", *cert).ok());
    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / "fleet.db");
    copts.transport.cert_file = dir_ / "controller.crt";
    copts.transport.key_file = dir_ / "controller.key";
    copts.transport.ca_file = dir_ / "ca.crt";
    auto controller = Controller::Create(copts);
    ASSERT_TRUE(controller.ok()) << controller.status();
    controller_ = std::move(*controller);
    const std::string address = controller_->address();
    ASSERT_TRUE(
        absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port_))
        << address;
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  int port_ = 0;
};

TEST_F(TlsVersionTest, TlsTwelveAndThirteenClientsCompleteTheHandshake) {
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    const Handshake h = TryHandshake(port_, version);
    EXPECT_TRUE(h.ok) << "version 0x" << std::hex << version << ": " << h.error;
    EXPECT_EQ(h.version, version);
  }
}

TEST_F(TlsVersionTest, TlsTenAndElevenClientsAreRefusedByTheController) {
  for (int version : {TLS1_VERSION, TLS1_1_VERSION}) {
    const Handshake h = TryHandshake(port_, version);
    EXPECT_FALSE(h.ok) << "the controller accepted TLS version 0x" << std::hex
                       << version;
    // We did offer it (our own library did not decline to)...
    EXPECT_NE(h.reason, SSL_R_NO_PROTOCOLS_AVAILABLE) << h.error;
    // ...and the controller refused the version itself, not a cipher.
    const absl::Time until = absl::Now() + absl::Seconds(5);
    while (ReadGrpcLog().find("unsupported protocol") == std::string::npos &&
           absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_NE(ReadGrpcLog().find("unsupported protocol"), std::string::npos)
        << "version 0x" << std::hex << version << ": " << ReadGrpcLog();
    absl::MutexLock lock(&log_mu);
    GrpcLog().clear();
  }
}

}  // namespace
}  // namespace benchfleet
