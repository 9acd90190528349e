#include "common/signing.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace benchfleet {
namespace {

constexpr size_t kEd25519KeyBytes = 32;
constexpr size_t kEd25519SignatureBytes = 64;
// PEM files are a few hundred bytes; anything much larger is not a key.
constexpr off_t kMaxPemBytes = 64 * 1024;

std::shared_ptr<evp_pkey_st> Own(EVP_PKEY* key) {
  return std::shared_ptr<evp_pkey_st>(key, EVP_PKEY_free);
}

// OpenSSL's reason for the last failure, and a clean error queue.
std::string OpenSslError() {
  const unsigned long code = ERR_get_error();  // NOLINT(runtime/int)
  ERR_clear_error();
  if (code == 0) return "no details";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

// Never prompts for a passphrase: an encrypted key fails to load, with a
// message that says so.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) {
  return 0;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          const std::string& what,
                                          struct stat* st) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = absl::StrCat("cannot read the ", what, " ", path,
                                         ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  std::string data;
  if (fstat(fd, st) != 0 || st->st_size > kMaxPemBytes) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a ", what, " (not a small PEM file)"));
  }
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return absl::UnavailableError(absl::StrCat(
          "cannot read the ", what, " ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > static_cast<size_t>(kMaxPemBytes)) break;
  }
  close(fd);
  return data;
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int)
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

bool IsEd25519(EVP_PKEY* key) {
  return EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
}

// The public half of `key` as a key of its own.
absl::StatusOr<std::shared_ptr<evp_pkey_st>> PublicHalf(EVP_PKEY* key) {
  unsigned char raw[kEd25519KeyBytes];
  size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 ||
      len != kEd25519KeyBytes) {
    return absl::InternalError(
        absl::StrCat("cannot read an Ed25519 public key: ", OpenSslError()));
  }
  EVP_PKEY* pub =
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw, len);
  if (pub == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot make an Ed25519 public key: ", OpenSslError()));
  }
  return Own(pub);
}

std::string Fingerprint(EVP_PKEY* key) {
  unsigned char raw[kEd25519KeyBytes];
  size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1) {
    ERR_clear_error();
    return "unknown";
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(raw, len, md, &md_len, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    return "unknown";
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), 8));
}

// Writes `text` to a new file `path` with `mode`; never replaces a file.
absl::Status WriteNewFile(const std::string& path, const std::string& text,
                          mode_t mode) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          path, " already exists; remove it first if a new key is meant"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", path, ": ", std::strerror(err)));
  }
  // The umask may have taken bits away; a private key must end up 0600
  // whatever it says.
  bool ok = fchmod(fd, mode) == 0;
  size_t done = 0;
  while (ok && done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = fsync(fd) == 0 && ok;
  const int err = errno;
  ok = close(fd) == 0 && ok;
  if (!ok) {
    unlink(path.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace

VerifyingKey::VerifyingKey(std::shared_ptr<evp_pkey_st> key)
    : key_(std::move(key)), fingerprint_(Fingerprint(key_.get())) {}

absl::StatusOr<VerifyingKey> VerifyingKey::LoadPem(const std::string& path) {
  struct stat st;
  absl::StatusOr<std::string> pem =
      ReadSmallFile(path, "controller public key", &st);
  if (!pem.ok()) {
    return absl::Status(
        pem.status().code(),
        absl::StrCat(pem.status().message(),
                     "; --controller-public-key (config: "
                     "controller_public_key) names the controller's "
                     "signing.pub, copied from the controller's host"));
  }
  return FromPem(*pem, path);
}

absl::StatusOr<VerifyingKey> VerifyingKey::FromPem(std::string_view pem,
                                                   const std::string& origin) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return absl::ResourceExhaustedError("out of memory");
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, NoPassphrase, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    const std::string why = OpenSslError();
    return absl::InvalidArgumentError(absl::StrCat(
        origin,
        " holds no PEM public key (\"-----BEGIN PUBLIC KEY-----\"): ", why,
        "; give the controller's signing.pub (made by `benchfleet certs "
        "init`, or `openssl pkey -in signing.key -pubout`)"));
  }
  std::shared_ptr<evp_pkey_st> owned = Own(key);
  if (!IsEd25519(key)) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, " holds a ", EVP_PKEY_get0_type_name(key),
        " public key; benchfleet signs orders with Ed25519 only: give the "
        "controller's signing.pub"));
  }
  return VerifyingKey(std::move(owned));
}

bool VerifyingKey::Verify(std::string_view data,
                          std::string_view signature) const {
  if (signature.size() != kEd25519SignatureBytes) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return false;
  const bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key_.get()) == 1 &&
      EVP_DigestVerify(
          ctx, reinterpret_cast<const unsigned char*>(signature.data()),
          signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
          data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

std::string VerifyingKey::ToPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "";
  std::string text;
  if (PEM_write_bio_PUBKEY(bio, key_.get()) == 1) text = BioText(bio);
  BIO_free(bio);
  return text;
}

SigningKey::SigningKey(std::shared_ptr<evp_pkey_st> key,
                       VerifyingKey public_key)
    : key_(std::move(key)), public_(std::move(public_key)) {}

absl::StatusOr<SigningKey> SigningKey::Generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot generate an Ed25519 key: ", OpenSslError()));
  }
  std::shared_ptr<evp_pkey_st> owned = Own(key);
  absl::StatusOr<std::shared_ptr<evp_pkey_st>> pub = PublicHalf(key);
  if (!pub.ok()) return pub.status();
  return SigningKey(std::move(owned), VerifyingKey(std::move(*pub)));
}

absl::StatusOr<SigningKey> SigningKey::LoadPem(const std::string& path) {
  struct stat st;
  absl::StatusOr<std::string> pem =
      ReadSmallFile(path, "controller signing key", &st);
  if (!pem.ok()) {
    return absl::Status(
        pem.status().code(),
        absl::StrCat(pem.status().message(),
                     "; --signing-key (config: signing_key) names the "
                     "signing.key made by `benchfleet certs init DIR`"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the signing key %s is accessible to other users (mode %04o); whoever "
        "reads it can make agents run anything: chmod 600 %s",
        path, st.st_mode & 07777, path));
  }
  BIO* bio = BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size()));
  if (bio == nullptr) return absl::ResourceExhaustedError("out of memory");
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, NoPassphrase, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    const std::string why = OpenSslError();
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        " holds no unencrypted PEM private key (\"-----BEGIN PRIVATE "
        "KEY-----\"): ",
        why,
        "; make one with `benchfleet certs init DIR` or `openssl genpkey "
        "-algorithm ed25519 -out ",
        path, "`"));
  }
  std::shared_ptr<evp_pkey_st> owned = Own(key);
  if (!IsEd25519(key)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " holds a ", EVP_PKEY_get0_type_name(key),
        " key; order signing needs an Ed25519 key: `openssl genpkey "
        "-algorithm ed25519 -out ",
        path, "`"));
  }
  absl::StatusOr<std::shared_ptr<evp_pkey_st>> pub = PublicHalf(key);
  if (!pub.ok()) return pub.status();
  return SigningKey(std::move(owned), VerifyingKey(std::move(*pub)));
}

std::string SigningKey::Sign(std::string_view data) const {
  std::string sig(kEd25519SignatureBytes, '\0');
  size_t len = sig.size();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  // Signing with a loaded Ed25519 key fails only when memory runs out; an
  // empty signature then fails verification, which is the safe side.
  const bool ok =
      ctx != nullptr &&
      EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_.get()) == 1 &&
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()),
                     data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    ERR_clear_error();
    return "";
  }
  sig.resize(len);
  return sig;
}

std::string SigningKey::ToPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "";
  std::string text;
  if (PEM_write_bio_PrivateKey(bio, key_.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) == 1) {
    text = BioText(bio);
  }
  BIO_free(bio);
  return text;
}

std::string SecureRandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                          static_cast<int>(n)) != 1) {
    std::abort();
  }
  return out;
}

absl::Status GenerateSigningKeyPair(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create ", dir, ": ", ec.message()));
    }
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  }
  const std::string key_path = absl::StrCat(dir, "/", kSigningKeyFileName);
  const std::string pub_path =
      absl::StrCat(dir, "/", kSigningPublicKeyFileName);
  for (const std::string& path : {key_path, pub_path}) {
    if (std::filesystem::exists(path, ec)) {
      return absl::AlreadyExistsError(absl::StrCat(
          path,
          " already exists; agents trust the key in it, so it is not "
          "replaced: remove it first if a new key is meant"));
    }
  }
  absl::StatusOr<SigningKey> key = SigningKey::Generate();
  if (!key.ok()) return key.status();
  const std::string private_pem = key->ToPem();
  const std::string public_pem = key->verifying_key().ToPem();
  if (private_pem.empty() || public_pem.empty()) {
    return absl::InternalError(
        absl::StrCat("cannot encode the new key as PEM: ", OpenSslError()));
  }
  absl::Status s = WriteNewFile(key_path, private_pem, 0600);
  if (!s.ok()) return s;
  s = WriteNewFile(pub_path, public_pem, 0644);
  if (!s.ok()) unlink(key_path.c_str());
  return s;
}

}  // namespace benchfleet
