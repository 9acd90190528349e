#include "common/credentials.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

std::string HostOf(const std::string& address) {
  std::string a = address;
  for (const char* scheme : {"dns:///", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(a, scheme)) a = a.substr(std::strlen(scheme));
  }
  if (absl::StartsWith(a, "[")) {
    auto end = a.find(']');
    return end == std::string::npos ? a : a.substr(1, end - 1);
  }
  auto colon = a.rfind(':');
  return colon == std::string::npos ? a : a.substr(0, colon);
}

absl::StatusOr<std::string> ReadWhole(const std::string& path,
                                      const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};

// Reads the first certificate of a PEM file; expired or not-yet-valid ones
// are refused here rather than in every handshake.
absl::StatusOr<std::unique_ptr<X509, X509Free>> LoadCert(
    const std::string& path, const std::string& flag) {
  auto pem = ReadWhole(path, flag);
  if (!pem.ok()) return pem.status();
  std::unique_ptr<BIO, X509Free> bio(
      BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  std::unique_ptr<X509, X509Free> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", path,
                     "' holds no PEM certificate; make one with `benchfleet "
                     "certs init` (docs/operations.md)"));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": the certificate in '", path,
                     "' has expired; issue a new one (`benchfleet certs "
                     "...`, docs/operations.md) and put it in its place"));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": the certificate in '", path,
                     "' is not valid yet; check this host's clock"));
  }
  return cert;
}

// The certificate and key must both be given, readable and belong together.
absl::Status CheckIdentity(const std::string& cert_file,
                           const std::string& key_file,
                           const std::string& cert_flag,
                           const std::string& key_flag) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        cert_file.empty() ? cert_flag : key_flag, " is missing: ", cert_flag,
        " and ", key_flag, " go together"));
  }
  if (cert_file.empty()) return absl::OkStatus();
  auto cert = LoadCert(cert_file, cert_flag);
  if (!cert.ok()) return cert.status();
  auto pem = ReadWhole(key_file, key_flag);
  if (!pem.ok()) return pem.status();
  std::unique_ptr<BIO, X509Free> bio(
      BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  std::unique_ptr<EVP_PKEY, X509Free> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        key_flag, ": '", key_file, "' holds no unencrypted PEM private key"));
  }
  if (X509_check_private_key(cert->get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        key_flag, ": the key in '", key_file,
        "' does not belong to the certificate in '", cert_file, "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckPlaintextAllowed(const std::string& address,
                                   const TransportOptions& options,
                                   const char* side) {
  if (IsLoopbackAddress(address)) return absl::OkStatus();
  if (!options.insecure) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing plaintext gRPC on '", address,
        "': other hosts could reach it. Configure TLS (--tls-cert/--tls-key ",
        side,
        "; `benchfleet certs init` makes them, see docs/operations.md) or "
        "pass --insecure to accept that anyone on the network can ",
        absl::StrContains(side, "client") ? "run commands on the agents"
                                          : "read and change this traffic"));
  }
  spdlog::warn(
      "plaintext gRPC on '{}' (--insecure): anyone on the network can read "
      "and forge this traffic, and with it run commands on the agents",
      address);
  return absl::OkStatus();
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  if (absl::StartsWith(address, "unix:")) return true;
  const std::string host = HostOf(address);
  return host == "localhost" || absl::StartsWith(host, "127.") || host == "::1";
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const std::string& address, const TransportOptions& options,
    std::shared_ptr<grpc::AuthMetadataProcessor> processor) {
  if (options.cert_file.empty() && options.key_file.empty()) {
    if (!options.ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--client-ca needs --tls-cert and --tls-key: the controller must "
          "have a certificate before it can verify agents'");
    }
    if (absl::Status s =
            CheckPlaintextAllowed(address, options, "and --client-ca");
        !s.ok())
      return s;
    return grpc::InsecureServerCredentials();
  }
  if (absl::Status s = CheckIdentity(options.cert_file, options.key_file,
                                     "--tls-cert", "--tls-key");
      !s.ok())
    return s;
  if (!options.ca_file.empty()) {
    if (auto ca = LoadCert(options.ca_file, "--client-ca"); !ca.ok())
      return ca.status();
  }
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          options.key_file, options.cert_file, options.ca_file,
          static_cast<unsigned>(std::max(1, options.refresh_interval_s)));
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (!options.ca_file.empty()) {
    tls.watch_root_certs();
    // Asked of every client, verified when presented: agents present one
    // (the auth processor refuses agent streams without it); users do not and
    // authenticate with tokens.
    tls.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  std::shared_ptr<grpc::ServerCredentials> creds =
      grpc::experimental::TlsServerCredentials(tls);
  if (creds == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("gRPC could not build TLS credentials from '",
                     options.cert_file, "' and '", options.key_file, "'"));
  }
  if (processor != nullptr) creds->SetAuthMetadataProcessor(processor);
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const std::string& address,
                       const TransportOptions& options) {
  if (!options.tls()) {
    if (absl::Status s = CheckPlaintextAllowed(
            address, options, "on the controller, --ca on this client");
        !s.ok())
      return s;
    return grpc::InsecureChannelCredentials();
  }
  if (options.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--ca is missing: a TLS client needs the CA that signed the "
        "controller's certificate (ca.crt from `benchfleet certs init`)");
  }
  if (auto ca = LoadCert(options.ca_file, "--ca"); !ca.ok()) return ca.status();
  if (absl::Status s = CheckIdentity(options.cert_file, options.key_file,
                                     "--tls-cert", "--tls-key");
      !s.ok())
    return s;
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          options.key_file, options.cert_file, options.ca_file,
          static_cast<unsigned>(std::max(1, options.refresh_interval_s)));
  grpc::experimental::TlsChannelCredentialsOptions tls;
  tls.set_certificate_provider(provider);
  tls.watch_root_certs();
  if (!options.cert_file.empty()) tls.watch_identity_key_cert_pairs();
  tls.set_verify_server_certs(true);
  tls.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  std::shared_ptr<grpc::ChannelCredentials> creds =
      grpc::experimental::TlsCredentials(tls);
  if (creds == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("gRPC could not build TLS credentials with CA '",
                     options.ca_file, "'"));
  }
  if (!options.token.empty()) {
    creds = grpc::CompositeChannelCredentials(
        creds, grpc::AccessTokenCredentials(options.token));
  }
  return creds;
}

grpc::ChannelArguments MakeChannelArguments(const TransportOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Keepalive pings every 20 s even without calls; the server permits this
  // (below).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5'000);
  if (!options.server_name.empty())
    args.SetSslTargetNameOverride(options.server_name);
  return args;
}

void ConfigureServerBuilder(grpc::ServerBuilder& builder) {
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token-file: cannot read '", path, "': ", std::strerror(errno),
        "; ask an admin for a token (`benchfleet token create`)"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token-file: '", path,
        "' can be read by other users; run `chmod 600 ", path, "`"));
  }
  auto text = ReadWhole(path, "--token-file");
  if (!text.ok()) return text.status();
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty() || token.find_first_of(" \t\r\n") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file: '", path,
                     "' must hold exactly one token on one line, as printed by "
                     "`benchfleet token create`"));
  }
  return token;
}

}  // namespace benchfleet
