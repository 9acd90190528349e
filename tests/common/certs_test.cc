// common/certs: a CA and certificates it issues, read back with OpenSSL, and
// the files they are written to.
#include "common/certs.h"

#include <sys/stat.h>

#include <algorithm>

#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::TempDir;

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(CertsTest, IssuesALeafWithTheNamesAndValidityAsked) {
  const absl::Time now = absl::Now();
  auto ca = MakeCertificateAuthority("test CA", now + absl::Hours(48));
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto ca_info = InspectCertificate(ca->cert_pem);
  ASSERT_TRUE(ca_info.ok()) << ca_info.status();
  EXPECT_TRUE(ca_info->is_ca);
  EXPECT_EQ(ca_info->common_name, "test CA");

  CertificateRequest req;
  req.common_name = "ctl";
  req.sans = {"ctl.office", "10.1.2.3", "::1"};
  req.server_auth = true;
  req.not_after = now + absl::Hours(24);
  auto leaf = IssueCertificate(*ca, req);
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  auto info = InspectCertificate(leaf->cert_pem);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->is_ca);
  EXPECT_EQ(info->common_name, "ctl");
  EXPECT_TRUE(Contains(info->sans, "ctl.office"));
  EXPECT_TRUE(Contains(info->sans, "10.1.2.3"));
  EXPECT_TRUE(Contains(info->sans, "::1"));
  EXPECT_EQ(info->sans.size(), 3u);
  // ASN.1 times have whole seconds.
  EXPECT_LE(absl::AbsDuration(info->not_after - req.not_after),
            absl::Seconds(1));
  EXPECT_LT(info->not_before, now);
  EXPECT_NE(leaf->key_pem, ca->key_pem);
}

TEST(CertsTest, RefusesABadSanAndAnEmptyName) {
  auto ca = MakeCertificateAuthority("test CA", absl::Now() + absl::Hours(1));
  ASSERT_TRUE(ca.ok());
  CertificateRequest req;
  req.common_name = "x";
  req.sans = {"not a name!"};
  auto bad = IssueCertificate(*ca, req);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'not a name!'"), std::string::npos)
      << bad.status();
  req.sans.clear();
  req.common_name = "";
  EXPECT_FALSE(IssueCertificate(*ca, req).ok());
  EXPECT_FALSE(IssueCertificate(KeyAndCert{"junk", "junk"},
                                CertificateRequest{.common_name = "x"})
                   .ok());
}

TEST(CertsTest, WritesThePrivateKeyForItsOwnerOnlyAndNeverOverwritesIt) {
  TempDir dir;
  auto ca = MakeCertificateAuthority("test CA", absl::Now() + absl::Hours(1));
  ASSERT_TRUE(ca.ok());
  ASSERT_TRUE(WriteKeyAndCert(dir.path(), "ca", *ca).ok());
  struct stat st;
  ASSERT_EQ(stat((dir / "ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir / "ca.crt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);

  auto other = MakeCertificateAuthority("other", absl::Now() + absl::Hours(1));
  ASSERT_TRUE(other.ok());
  absl::Status again = WriteKeyAndCert(dir.path(), "ca", *other);
  EXPECT_TRUE(absl::IsAlreadyExists(again)) << again;
  auto back = ReadKeyAndCert(dir.path(), "ca");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key_pem, ca->key_pem);  // the first key is still there
  EXPECT_EQ(back->cert_pem, ca->cert_pem);

  auto missing = ReadKeyAndCert(dir.path(), "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.key"), std::string::npos);
}

TEST(CertsTest, AgentNames) {
  EXPECT_TRUE(CheckAgentName("gpu-box-1").ok());
  EXPECT_TRUE(CheckAgentName("bench.office_2").ok());
  EXPECT_FALSE(CheckAgentName("").ok());
  EXPECT_FALSE(CheckAgentName("-x").ok());
  EXPECT_FALSE(CheckAgentName(".x").ok());
  EXPECT_FALSE(CheckAgentName(std::string(64, 'a')).ok());
  absl::Status slash = CheckAgentName("a/b");
  ASSERT_FALSE(slash.ok());
  EXPECT_NE(slash.message().find("'/'"), std::string::npos) << slash;
}

}  // namespace
}  // namespace benchfleet
