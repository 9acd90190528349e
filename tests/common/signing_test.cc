// Ed25519 keys: sign/verify, key files and their errors.
#include "common/signing.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

class SigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "signing_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string Write(const std::string& name, const std::string& text,
                    mode_t mode = 0600) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    chmod(path.c_str(), mode);
    return path;
  }
  static mode_t Mode(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return 0;
    return st.st_mode & 07777;
  }

  std::string dir_;
};

TEST_F(SigningTest, SignatureVerifiesWithTheMatchingKey) {
  absl::StatusOr<SigningKey> key = SigningKey::Generate();
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string sig = key->Sign("run /bin/true");
  EXPECT_EQ(sig.size(), 64u);
  EXPECT_TRUE(key->verifying_key().Verify("run /bin/true", sig));
  EXPECT_EQ(key->verifying_key().fingerprint().size(), 16u);
}

TEST_F(SigningTest, AFlippedByteInTheDataOrTheSignatureFails) {
  absl::StatusOr<SigningKey> key = SigningKey::Generate();
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string data = "run /bin/true in /work";
  const std::string sig = key->Sign(data);
  for (size_t i = 0; i < data.size(); ++i) {
    std::string tampered = data;
    tampered[i] ^= 0x01;
    EXPECT_FALSE(key->verifying_key().Verify(tampered, sig)) << "byte " << i;
  }
  for (size_t i = 0; i < sig.size(); ++i) {
    std::string tampered = sig;
    tampered[i] ^= 0x01;
    EXPECT_FALSE(key->verifying_key().Verify(data, tampered)) << "byte " << i;
  }
  EXPECT_FALSE(key->verifying_key().Verify(data, sig.substr(0, 63)));
  EXPECT_FALSE(key->verifying_key().Verify(data, ""));
  EXPECT_FALSE(key->verifying_key().Verify(data + "x", sig));
}

TEST_F(SigningTest, AnotherKeysSignatureFails) {
  absl::StatusOr<SigningKey> a = SigningKey::Generate();
  absl::StatusOr<SigningKey> b = SigningKey::Generate();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->verifying_key().fingerprint(), b->verifying_key().fingerprint());
  EXPECT_FALSE(b->verifying_key().Verify("order", a->Sign("order")));
}

TEST_F(SigningTest, GeneratedKeyPairFilesLoadAndMatch) {
  const std::string keys = dir_ + "/keys";
  ASSERT_TRUE(GenerateSigningKeyPair(keys).ok());
  EXPECT_EQ(Mode(keys + "/signing.key"), 0600u);
  EXPECT_EQ(Mode(keys + "/signing.pub"), 0644u);
  absl::StatusOr<SigningKey> key = SigningKey::LoadPem(keys + "/signing.key");
  ASSERT_TRUE(key.ok()) << key.status();
  absl::StatusOr<VerifyingKey> pub =
      VerifyingKey::LoadPem(keys + "/signing.pub");
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(pub->fingerprint(), key->verifying_key().fingerprint());
  EXPECT_TRUE(pub->Verify("order", key->Sign("order")));
}

TEST_F(SigningTest, GenerateRefusesToReplaceAnExistingKey) {
  ASSERT_TRUE(GenerateSigningKeyPair(dir_).ok());
  absl::StatusOr<VerifyingKey> before =
      VerifyingKey::LoadPem(dir_ + "/signing.pub");
  ASSERT_TRUE(before.ok());
  const absl::Status again = GenerateSigningKeyPair(dir_);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.message(), HasSubstr(dir_ + "/signing.key"));
  absl::StatusOr<VerifyingKey> after =
      VerifyingKey::LoadPem(dir_ + "/signing.pub");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(before->fingerprint(), after->fingerprint());
}

TEST_F(SigningTest, KeysMadeByTheOpensslToolLoad) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no openssl tool on this host";
  const std::string key = dir_ + "/tool.key", pub = dir_ + "/tool.pub";
  ASSERT_EQ(std::system(("openssl genpkey -algorithm ed25519 -out " + key +
                         " 2>/dev/null && openssl pkey -in " + key +
                         " -pubout -out " + pub + " 2>/dev/null")
                            .c_str()),
            0);
  chmod(key.c_str(), 0600);
  absl::StatusOr<SigningKey> k = SigningKey::LoadPem(key);
  ASSERT_TRUE(k.ok()) << k.status();
  absl::StatusOr<VerifyingKey> p = VerifyingKey::LoadPem(pub);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->Verify("x", k->Sign("x")));
}

TEST_F(SigningTest, AMissingFileIsNamed) {
  const std::string path = dir_ + "/absent.pub";
  absl::StatusOr<VerifyingKey> pub = VerifyingKey::LoadPem(path);
  EXPECT_EQ(pub.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(pub.status().message(), HasSubstr(path));
  absl::StatusOr<SigningKey> key = SigningKey::LoadPem(dir_ + "/absent.key");
  EXPECT_EQ(key.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(key.status().message(), HasSubstr(dir_ + "/absent.key"));
}

TEST_F(SigningTest, AFileWithoutAKeyIsNamedWithWhatToDo) {
  const std::string pub_path = Write("garbage.pub", "not a key\n");
  absl::StatusOr<VerifyingKey> pub = VerifyingKey::LoadPem(pub_path);
  EXPECT_EQ(pub.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pub.status().message(), HasSubstr(pub_path));
  EXPECT_THAT(pub.status().message(), HasSubstr("signing.pub"));

  const std::string key_path = Write("garbage.key", "-----BEGIN PRIVATE KEY");
  absl::StatusOr<SigningKey> key = SigningKey::LoadPem(key_path);
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(key.status().message(), HasSubstr(key_path));
  EXPECT_THAT(key.status().message(), HasSubstr("certs init"));
}

TEST_F(SigningTest, APublicKeyGivenAsThePrivateKeyIsRefusedAndViceVersa) {
  ASSERT_TRUE(GenerateSigningKeyPair(dir_ + "/k").ok());
  const std::string pub = dir_ + "/k/signing.pub";
  chmod(pub.c_str(), 0600);
  absl::StatusOr<SigningKey> key = SigningKey::LoadPem(pub);
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(key.status().message(), HasSubstr(pub));
  absl::StatusOr<VerifyingKey> wrong =
      VerifyingKey::LoadPem(dir_ + "/k/signing.key");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr(dir_ + "/k/signing.key"));
}

TEST_F(SigningTest, APrivateKeyOthersCanReadIsRefused) {
  ASSERT_TRUE(GenerateSigningKeyPair(dir_ + "/k").ok());
  const std::string path = dir_ + "/k/signing.key";
  chmod(path.c_str(), 0644);
  absl::StatusOr<SigningKey> key = SigningKey::LoadPem(path);
  EXPECT_EQ(key.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(key.status().message(), HasSubstr("chmod 600 " + path));
}

TEST_F(SigningTest, RandomBytesDiffer) {
  EXPECT_EQ(SecureRandomBytes(16).size(), 16u);
  EXPECT_NE(SecureRandomBytes(16), SecureRandomBytes(16));
}

}  // namespace
}  // namespace benchfleet
