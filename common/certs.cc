#include "common/certs.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace benchfleet {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Free>;

// The last OpenSSL error, for messages.
std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

absl::Status Internal(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", OpenSslError()));
}

bool IsIpAddress(const std::string& s, unsigned char* out, int* len) {
  if (inet_pton(AF_INET, s.c_str(), out) == 1) {
    *len = 4;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out) == 1) {
    *len = 16;
    return true;
  }
  return false;
}

bool IsDnsName(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '.' && c != '*' && c != '_')
      return false;
  }
  return s.front() != '.' && s.front() != '-';
}

absl::StatusOr<Owned<EVP_PKEY>> NewKey() {
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (key == nullptr) return Internal("could not generate a P-256 key");
  return key;
}

std::string KeyPem(EVP_PKEY* key) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                           nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string CertPem(X509* cert) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<Owned<X509>> ParseCert(const std::string& pem) {
  Owned<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Owned<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a PEM certificate: ", OpenSslError()));
  }
  return cert;
}

absl::StatusOr<Owned<EVP_PKEY>> ParseKey(const std::string& pem) {
  Owned<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Owned<EVP_PKEY> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a PEM private key: ", OpenSslError()));
  }
  return key;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid,
                          const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Owned<X509_EXTENSION> ext(
      X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1)
    return Internal(absl::StrCat("could not add extension ", OBJ_nid2sn(nid),
                                 " = ", value));
  return absl::OkStatus();
}

// Version 3, a random 127-bit serial, the validity and the subject; the caller
// adds extensions and signs.
absl::StatusOr<Owned<X509>> NewCert(const std::string& common_name,
                                    EVP_PKEY* key, absl::Time not_before,
                                    absl::Time not_after) {
  Owned<X509> cert(X509_new());
  if (cert == nullptr) return Internal("X509_new");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return Internal("RAND_bytes");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  ASN1_INTEGER* asn_serial = BN_to_ASN1_INTEGER(bn, nullptr);
  BN_free(bn);
  if (asn_serial == nullptr) return Internal("BN_to_ASN1_INTEGER");
  X509_set_serialNumber(cert.get(), asn_serial);  // copies
  ASN1_INTEGER_free(asn_serial);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(
      name, "O", MBSTRING_UTF8,
      reinterpret_cast<const unsigned char*>("benchfleet"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_UTF8,
      reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

absl::Status WriteFile(const std::string& path, const std::string& data,
                       mode_t mode, bool exclusive) {
  const int flags =
      O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC);
  const int fd = open(path.c_str(), flags, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat(path,
                       " already exists; benchfleet never overwrites a key: "
                       "remove it first or choose another directory"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  fchmod(fd, mode);  // regardless of the umask
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      close(fd);
      return absl::InternalError(
          absl::StrCat("cannot write ", path, ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string AsnString(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

absl::Time AsnTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

}  // namespace

absl::StatusOr<KeyAndCert> MakeCertificateAuthority(
    const std::string& common_name, absl::Time not_after) {
  if (common_name.empty())
    return absl::InvalidArgumentError("a CA needs a common name");
  auto key = NewKey();
  if (!key.ok()) return key.status();
  auto cert =
      NewCert(common_name, key->get(), absl::Now() - absl::Hours(1), not_after);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(c));
  for (const auto& [nid, value] :
       {std::pair<int, std::string>{NID_basic_constraints,
                                    "critical,CA:TRUE,pathlen:0"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"}}) {
    if (absl::Status s = AddExtension(c, c, nid, value); !s.ok()) return s;
  }
  if (X509_sign(c, key->get(), EVP_sha256()) == 0)
    return Internal("could not sign the CA certificate");
  return KeyAndCert{KeyPem(key->get()), CertPem(c)};
}

absl::StatusOr<KeyAndCert> IssueCertificate(const KeyAndCert& ca,
                                            const CertificateRequest& request) {
  if (request.common_name.empty())
    return absl::InvalidArgumentError("a certificate needs a common name");
  std::vector<std::string> san_entries;
  for (const std::string& san : request.sans) {
    unsigned char ip[16];
    int len = 0;
    if (IsIpAddress(san, ip, &len)) {
      san_entries.push_back(absl::StrCat("IP:", san));
    } else if (IsDnsName(san)) {
      san_entries.push_back(absl::StrCat("DNS:", san));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("subject alternative name '", san,
                       "' is neither an IP address nor a DNS name"));
    }
  }
  auto ca_key = ParseKey(ca.key_pem);
  if (!ca_key.ok()) return ca_key.status();
  auto ca_cert = ParseCert(ca.cert_pem);
  if (!ca_cert.ok()) return ca_cert.status();
  auto key = NewKey();
  if (!key.ok()) return key.status();
  const absl::Time now = absl::Now();
  const absl::Time not_before = request.not_before == absl::InfinitePast()
                                    ? now - absl::Hours(1)
                                    : request.not_before;
  const absl::Time not_after = request.not_after == absl::InfinitePast()
                                   ? now + absl::Hours(24 * 825)
                                   : request.not_after;
  auto cert = NewCert(request.common_name, key->get(), not_before, not_after);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(ca_cert->get()));
  std::vector<std::string> usages;
  if (request.server_auth) usages.push_back("serverAuth");
  if (request.client_auth) usages.push_back("clientAuth");
  std::vector<std::pair<int, std::string>> extensions = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyAgreement"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  if (!usages.empty())
    extensions.push_back({NID_ext_key_usage, absl::StrJoin(usages, ",")});
  if (!san_entries.empty())
    extensions.push_back(
        {NID_subject_alt_name, absl::StrJoin(san_entries, ",")});
  for (const auto& [nid, value] : extensions) {
    if (absl::Status s = AddExtension(c, ca_cert->get(), nid, value); !s.ok())
      return s;
  }
  if (X509_sign(c, ca_key->get(), EVP_sha256()) == 0)
    return Internal("could not sign the certificate");
  return KeyAndCert{KeyPem(key->get()), CertPem(c)};
}

absl::Status CheckAgentName(const std::string& name) {
  if (name.empty() || name.size() > 63) {
    return absl::InvalidArgumentError(absl::StrCat(
        "agent name '", name, "' must be 1 to 63 characters long"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '.' && c != '_') {
      return absl::InvalidArgumentError(
          absl::StrCat("agent name '", name, "' contains '", std::string(1, c),
                       "'; use letters, digits, '.', '_' and '-' only"));
    }
  }
  if (name.front() == '.' || name.front() == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat("agent name '", name, "' must not start with '.' or '-'"));
  }
  return absl::OkStatus();
}

absl::Status WriteKeyAndCert(const std::string& dir, const std::string& name,
                             const KeyAndCert& pair) {
  const std::string key_path = absl::StrCat(dir, "/", name, ".key");
  if (absl::Status s = WriteFile(key_path, pair.key_pem, 0600, true); !s.ok())
    return s;
  return WriteFile(absl::StrCat(dir, "/", name, ".crt"), pair.cert_pem, 0644,
                   false);
}

absl::StatusOr<KeyAndCert> ReadKeyAndCert(const std::string& dir,
                                          const std::string& name) {
  KeyAndCert pair;
  const std::string key_path = absl::StrCat(dir, "/", name, ".key");
  const std::string cert_path = absl::StrCat(dir, "/", name, ".crt");
  auto key = ReadFile(key_path);
  if (!key.ok()) return key.status();
  auto cert = ReadFile(cert_path);
  if (!cert.ok()) return cert.status();
  if (auto k = ParseKey(*key); !k.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, ": ", k.status().message()));
  }
  if (auto c = ParseCert(*cert); !c.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_path, ": ", c.status().message()));
  }
  pair.key_pem = std::move(*key);
  pair.cert_pem = std::move(*cert);
  return pair;
}

absl::StatusOr<CertificateInfo> InspectCertificate(
    const std::string& cert_pem) {
  auto cert = ParseCert(cert_pem);
  if (!cert.ok()) return cert.status();
  CertificateInfo info;
  X509_NAME* subject = X509_get_subject_name(cert->get());
  const int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx >= 0) {
    info.common_name =
        AsnString(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
  }
  Owned<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert->get(), NID_subject_alt_name, nullptr, nullptr)));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
      if (n->type == GEN_DNS) {
        info.sans.push_back(AsnString(n->d.dNSName));
      } else if (n->type == GEN_IPADD) {
        const std::string raw = AsnString(n->d.iPAddress);
        char text[INET6_ADDRSTRLEN] = {};
        inet_ntop(raw.size() == 4 ? AF_INET : AF_INET6, raw.data(), text,
                  sizeof(text));
        info.sans.push_back(text);
      }
    }
  }
  info.not_before = AsnTime(X509_get0_notBefore(cert->get()));
  info.not_after = AsnTime(X509_get0_notAfter(cert->get()));
  info.is_ca = X509_check_ca(cert->get()) != 0;
  return info;
}

}  // namespace benchfleet
