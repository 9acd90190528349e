// controller/auth/auth_policy: the method table, cancelling, token text and
// hash, and the admission of an agent's hello.
#include "controller/auth/auth_policy.h"

#include <set>

#include "gtest/gtest.h"

namespace benchfleet {
namespace {

constexpr char kSubmit[] = "/benchfleet.v1.FleetService/Submit";
constexpr char kList[] = "/benchfleet.v1.FleetService/ListExperiments";
constexpr char kCordon[] = "/benchfleet.v1.FleetService/SetAgentCordoned";
constexpr char kImport[] = "/benchfleet.v1.FleetService/ImportHistory";
constexpr char kCreateToken[] = "/benchfleet.v1.FleetService/CreateToken";
constexpr char kConnect[] = "/benchfleet.v1.AgentService/Connect";

Caller As(Role role) { return Caller{"alice", role, true}; }

TEST(AuthPolicyTest, EachRoleMayCallWhatItsLevelAllows) {
  struct Case {
    const char* path;
    Role role;
    bool allowed;
  };
  const Case cases[] = {
      {kList, Role::kViewer, true},         {kSubmit, Role::kViewer, false},
      {kSubmit, Role::kSubmitter, true},    {kSubmit, Role::kAdmin, true},
      {kCordon, Role::kSubmitter, false},   {kCordon, Role::kAdmin, true},
      {kImport, Role::kSubmitter, false},   {kImport, Role::kAdmin, true},
      {kCreateToken, Role::kViewer, false}, {kCreateToken, Role::kAdmin, true},
  };
  for (const Case& c : cases) {
    absl::Status s = CheckMethodAllowed(As(c.role), c.path);
    EXPECT_EQ(s.ok(), c.allowed) << c.path << " as " << RoleName(c.role);
    if (!c.allowed) {
      EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
      EXPECT_NE(s.message().find("has role "), std::string::npos) << s;
      EXPECT_NE(s.message().find("benchfleet token create"), std::string::npos)
          << s;
    }
  }
}

TEST(AuthPolicyTest, UnknownMethodsAndAgentStreamsAreNotForTokens) {
  EXPECT_EQ(FindMethodRule("/benchfleet.v1.FleetService/DropDatabase"),
            nullptr);
  EXPECT_TRUE(absl::IsPermissionDenied(CheckMethodAllowed(
      As(Role::kAdmin), "/benchfleet.v1.FleetService/DropDatabase")));
  ASSERT_NE(FindMethodRule(kConnect), nullptr);
  EXPECT_TRUE(FindMethodRule(kConnect)->agent);
  EXPECT_TRUE(
      absl::IsPermissionDenied(CheckMethodAllowed(As(Role::kAdmin), kConnect)));
}

TEST(AuthPolicyTest, EveryServedUserMethodHasARule) {
  for (const char* m :
       {"Submit", "GetExperiment", "ListExperiments", "WatchExperiment",
        "CancelExperiment", "ListAgents", "SetAgentCordoned", "GetHistory",
        "ExportHistory", "ImportHistory", "CreateToken", "ListTokens",
        "RevokeToken", "WhoAmI"}) {
    EXPECT_NE(FindMethodRule(std::string("/benchfleet.v1.FleetService/") + m),
              nullptr)
        << m;
  }
}

TEST(AuthPolicyTest, SubmittersCancelTheirOwnAdminsAny) {
  EXPECT_TRUE(CheckMayCancel(As(Role::kSubmitter), "alice", 7).ok());
  absl::Status other = CheckMayCancel(As(Role::kSubmitter), "bob", 7);
  EXPECT_TRUE(absl::IsPermissionDenied(other)) << other;
  EXPECT_NE(other.message().find("submitted by 'bob'"), std::string::npos);
  EXPECT_TRUE(CheckMayCancel(As(Role::kAdmin), "bob", 7).ok());
  // Without TLS nobody is authenticated and the local user may do anything.
  EXPECT_TRUE(
      CheckMayCancel(Caller{"carol", Role::kAdmin, false}, "bob", 7).ok());
}

TEST(AuthPolicyTest, TokensAreLongRandomAndStoredAsSha256) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string t = NewTokenText();
    EXPECT_EQ(t.rfind("bft_", 0), 0u) << t;
    EXPECT_EQ(t.size(), 4u + 43u) << t;
    EXPECT_EQ(t.find_first_of("+/= \n"), std::string::npos) << t;
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 100u);
  // FIPS 180-2 test vector.
  EXPECT_EQ(TokenSha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(AuthPolicyTest, UserNames) {
  EXPECT_TRUE(CheckUserName("alice@office").ok());
  EXPECT_FALSE(CheckUserName("").ok());
  EXPECT_FALSE(CheckUserName("a b").ok());
  EXPECT_FALSE(CheckUserName(std::string(65, 'a')).ok());
}

TEST(AuthPolicyTest, AnAgentMayNotClaimAnotherIdThanItsCertificates) {
  absl::StatusOr<Admission> a =
      AdmitAgent("box-a", {{"os", "linux"}}, "box-b", TrustedLabels{});
  ASSERT_FALSE(a.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(a.status()));
  EXPECT_NE(a.status().message().find("certificate is for 'box-b'"),
            std::string::npos)
      << a.status();
  EXPECT_TRUE(AdmitAgent("box-b", {}, "box-b", TrustedLabels{}).ok());
  // Without TLS there is no certificate and the hello's id is taken.
  EXPECT_TRUE(AdmitAgent("box-a", {}, "", TrustedLabels{}).ok());
}

TEST(AuthPolicyTest, TrustedLabelsArePinnedNotSelfAssigned) {
  TrustedLabels trusted;
  trusted.per_agent["gpu-1"] = {{"pool", "gpu"}};
  trusted.per_agent["cpu-1"] = {{"pool", "cpu"}, {"rack", "2"}};

  // Pinned: the agent's own value is replaced, a missing one added.
  auto gpu =
      AdmitAgent("gpu-1", {{"pool", "cpu"}, {"os", "linux"}}, "gpu-1", trusted);
  ASSERT_TRUE(gpu.ok());
  EXPECT_EQ(gpu->labels.at("pool"), "gpu");
  EXPECT_EQ(gpu->labels.at("os"), "linux");
  EXPECT_EQ(gpu->labels.count("rack"), 0u);
  ASSERT_EQ(gpu->changes.size(), 1u);
  EXPECT_NE(gpu->changes[0].find("pool=cpu replaced"), std::string::npos);

  // Not pinned for this agent: a trusted key it sets itself is dropped.
  auto rogue =
      AdmitAgent("laptop", {{"pool", "gpu"}, {"rack", "9"}}, "laptop", trusted);
  ASSERT_TRUE(rogue.ok());
  EXPECT_EQ(rogue->labels.count("pool"), 0u);
  EXPECT_EQ(rogue->labels.count("rack"), 0u);
  EXPECT_EQ(rogue->changes.size(), 2u);

  auto cpu = AdmitAgent("cpu-1", {}, "cpu-1", trusted);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ(cpu->labels.at("pool"), "cpu");
  EXPECT_EQ(cpu->labels.at("rack"), "2");
  EXPECT_TRUE(cpu->changes.empty());
}

// Bundles (issue 11): uploading and asking need the submitter role, as
// Submit does; fetching is for agents, with their certificate.
TEST(AuthPolicyTest, BundleUploadNeedsSubmitterAndFetchNeedsAnAgent) {
  for (const char* path : {"/benchfleet.v1.FleetService/HasBundle",
                           "/benchfleet.v1.FleetService/UploadBundle"}) {
    const MethodRule* rule = FindMethodRule(path);
    ASSERT_NE(rule, nullptr) << path;
    EXPECT_FALSE(rule->agent) << path;
    EXPECT_EQ(rule->role, Role::kSubmitter) << path;
    EXPECT_FALSE(
        CheckMethodAllowed(Caller{"v", Role::kViewer, true}, path).ok());
    EXPECT_TRUE(
        CheckMethodAllowed(Caller{"s", Role::kSubmitter, true}, path).ok());
  }
  const MethodRule* fetch =
      FindMethodRule("/benchfleet.v1.AgentService/FetchBundle");
  ASSERT_NE(fetch, nullptr);
  EXPECT_TRUE(fetch->agent);
  // No token opens it, not even an admin's.
  EXPECT_FALSE(CheckMethodAllowed(Caller{"a", Role::kAdmin, true},
                                  "/benchfleet.v1.AgentService/FetchBundle")
                   .ok());
}

}  // namespace
}  // namespace benchfleet
