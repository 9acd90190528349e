// Ed25519 keys and signatures (OpenSSL 3 EVP) for the controller's orders
// (DESIGN.md §7): the controller signs every order that can make an agent run
// or place something with a SigningKey; agents verify with the matching
// VerifyingKey from their config before they spawn anything. Keys are PEM files
// in the formats `openssl genpkey -algorithm ed25519` and `openssl pkey
// -pubout` write (PKCS#8 private key, SubjectPublicKeyInfo public key), so an
// operator may make them either way.
//
// Used by common/order_signing.h (the order envelope), the controller and the
// agent, and by `benchfleet certs init` (GenerateSigningKeyPair). Keys are
// immutable once loaded: thread-safe, cheap to copy (they share the key).
#ifndef BENCHFLEET_COMMON_SIGNING_H_
#define BENCHFLEET_COMMON_SIGNING_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace benchfleet {

// A public key that checks signatures.
class VerifyingKey {
 public:
  // Reads a PEM public key ("-----BEGIN PUBLIC KEY-----") from `path`.
  // NotFound / PermissionDenied when the file cannot be read, InvalidArgument
  // when it holds no Ed25519 public key; the message names the file and what
  // to do.
  static absl::StatusOr<VerifyingKey> LoadPem(const std::string& path);
  // The same from PEM text; `origin` names it in errors.
  static absl::StatusOr<VerifyingKey> FromPem(std::string_view pem,
                                              const std::string& origin);

  // True when `signature` is this key's Ed25519 signature of `data`.
  bool Verify(std::string_view data, std::string_view signature) const;
  // The key as PEM text (SubjectPublicKeyInfo).
  std::string ToPem() const;
  // A short, stable name for the key for log lines: the first 16 hex digits
  // of the SHA-256 of its raw 32 bytes.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  friend class SigningKey;
  explicit VerifyingKey(std::shared_ptr<evp_pkey_st> key);
  std::shared_ptr<evp_pkey_st> key_;
  std::string fingerprint_;
};

// A private key that signs.
class SigningKey {
 public:
  // A new random key (for local mode's ephemeral key and for tests).
  static absl::StatusOr<SigningKey> Generate();
  // Reads a PEM private key ("-----BEGIN PRIVATE KEY-----") from `path`.
  // Errors as VerifyingKey::LoadPem; also FailedPrecondition when the file is
  // readable or writable by group or others (fix: chmod 600 PATH).
  static absl::StatusOr<SigningKey> LoadPem(const std::string& path);

  // The 64-byte Ed25519 signature of `data`.
  std::string Sign(std::string_view data) const;
  // The matching public key.
  const VerifyingKey& verifying_key() const { return public_; }
  // The private key as PEM text (PKCS#8). Handle with care.
  std::string ToPem() const;

 private:
  SigningKey(std::shared_ptr<evp_pkey_st> key, VerifyingKey public_key);
  std::shared_ptr<evp_pkey_st> key_;
  VerifyingKey public_;
};

// Makes a new key pair and writes `dir`/signing.key (private, mode 0600) and
// `dir`/signing.pub (public, 0644), creating `dir` (0700) when missing. The
// controller takes signing.key (signing_key / --signing-key); every agent takes
// signing.pub (controller_public_key / --controller-public-key). Refuses with
// AlreadyExists, naming the file, rather than overwrite an existing key.
absl::Status GenerateSigningKeyPair(const std::string& dir);

// `n` bytes from OpenSSL's random generator (nonces). Aborts if it fails
// (an unseeded generator is a broken host, not an input error).
std::string SecureRandomBytes(size_t n);

inline constexpr char kSigningKeyFileName[] = "signing.key";
inline constexpr char kSigningPublicKeyFileName[] = "signing.pub";

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_SIGNING_H_
