// X.509 certificates for benchfleet's mutual TLS (DESIGN.md §7), made with
// OpenSSL so that `benchfleet certs init` / `certs agent` need no openssl
// command line: a CA, a controller certificate (server auth, the SANs given)
// and one certificate per agent (client auth; the agent's id is its common name
// and its DNS SAN). Keys are ECDSA P-256, signatures SHA-256, which every TLS
// stack gRPC may link (OpenSSL, BoringSSL) accepts. Stateless; thread-safe.
#ifndef BENCHFLEET_COMMON_CERTS_H_
#define BENCHFLEET_COMMON_CERTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace benchfleet {

// A private key and its certificate, both PEM.
struct KeyAndCert {
  std::string key_pem;
  std::string cert_pem;
};

struct CertificateRequest {
  std::string common_name;
  // Subject alternative names: each one an IP address (v4 or v6) or a DNS name.
  std::vector<std::string> sans;
  bool server_auth = false;                      // extendedKeyUsage serverAuth
  bool client_auth = false;                      // extendedKeyUsage clientAuth
  absl::Time not_before = absl::InfinitePast();  // InfinitePast: now - 1 h
  absl::Time not_after = absl::InfinitePast();   // InfinitePast: now + 825 d
};

// A self-signed CA certificate (basicConstraints CA:TRUE, pathlen 0).
absl::StatusOr<KeyAndCert> MakeCertificateAuthority(
    const std::string& common_name, absl::Time not_after);

// A leaf certificate signed by `ca`. InvalidArgument for an empty common name
// or a SAN that is neither an IP address nor a DNS name.
absl::StatusOr<KeyAndCert> IssueCertificate(const KeyAndCert& ca,
                                            const CertificateRequest& request);

// Agent ids double as certificate names: 1-63 of [A-Za-z0-9._-], not starting
// with '.' or '-'. InvalidArgument says which character is wrong.
absl::Status CheckAgentName(const std::string& name);

// Writes `dir/NAME.key` (mode 0600, created exclusively: an existing key is
// never overwritten; AlreadyExists names it) and `dir/NAME.crt` (0644).
absl::Status WriteKeyAndCert(const std::string& dir, const std::string& name,
                             const KeyAndCert& pair);
// Reads `dir/NAME.key` and `dir/NAME.crt`; errors name the file.
absl::StatusOr<KeyAndCert> ReadKeyAndCert(const std::string& dir,
                                          const std::string& name);

// What a certificate says, for `benchfleet certs show` and tests.
struct CertificateInfo {
  std::string common_name;
  std::vector<std::string> sans;
  absl::Time not_before, not_after;
  bool is_ca = false;
};
absl::StatusOr<CertificateInfo> InspectCertificate(const std::string& cert_pem);

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_CERTS_H_
