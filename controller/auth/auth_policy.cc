#include "controller/auth/auth_policy.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace benchfleet {
namespace {

constexpr MethodRule kRules[] = {
    {"/benchfleet.v1.AgentService/Connect", true, Role::kViewer},
    {"/benchfleet.v1.AgentService/FetchBundle", true, Role::kViewer},
    {"/benchfleet.v1.FleetService/GetExperiment", false, Role::kViewer},
    {"/benchfleet.v1.FleetService/ListExperiments", false, Role::kViewer},
    {"/benchfleet.v1.FleetService/WatchExperiment", false, Role::kViewer},
    {"/benchfleet.v1.FleetService/ListAgents", false, Role::kViewer},
    {"/benchfleet.v1.FleetService/GetHistory", false, Role::kViewer},
    {"/benchfleet.v1.FleetService/ExportHistory", false, Role::kViewer},
    {"/benchfleet.v1.FleetService/WhoAmI", false, Role::kViewer},
    {"/benchfleet.v1.FleetService/Submit", false, Role::kSubmitter},
    {"/benchfleet.v1.FleetService/HasBundle", false, Role::kSubmitter},
    {"/benchfleet.v1.FleetService/UploadBundle", false, Role::kSubmitter},
    // Ownership is checked by FleetApi::Cancel (CheckMayCancel).
    {"/benchfleet.v1.FleetService/CancelExperiment", false, Role::kSubmitter},
    {"/benchfleet.v1.FleetService/SetAgentCordoned", false, Role::kAdmin},
    {"/benchfleet.v1.FleetService/ImportHistory", false, Role::kAdmin},
    {"/benchfleet.v1.FleetService/CreateToken", false, Role::kAdmin},
    {"/benchfleet.v1.FleetService/ListTokens", false, Role::kAdmin},
    {"/benchfleet.v1.FleetService/RevokeToken", false, Role::kAdmin},
};

std::string_view ShortName(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

const MethodRule* FindMethodRule(std::string_view path) {
  for (const MethodRule& rule : kRules) {
    if (rule.path == path) return &rule;
  }
  return nullptr;
}

absl::Status CheckMethodAllowed(const Caller& caller, std::string_view path) {
  const MethodRule* rule = FindMethodRule(path);
  if (rule == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        "method ", std::string(path), " is not served by benchfleet"));
  }
  if (rule->agent) {
    return absl::PermissionDeniedError(
        "only agents, with a client certificate, may open agent streams");
  }
  if (static_cast<int>(caller.role) >= static_cast<int>(rule->role))
    return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "user '", caller.user, "' has role ", RoleName(caller.role), "; ",
      std::string(ShortName(path)), " needs ", RoleName(rule->role),
      rule->role == Role::kAdmin ? "" : " or admin",
      ". Ask an admin for a token with that role (`benchfleet token create "
      "--user ",
      caller.user, " --role ", RoleName(rule->role), "`)"));
}

absl::Status CheckMayCancel(const Caller& caller, const std::string& owner,
                            int64_t experiment_id) {
  if (!caller.authenticated || caller.role == Role::kAdmin ||
      caller.user == owner)
    return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "experiment ", experiment_id, " was submitted by '", owner, "', not by '",
      caller.user, "'; a submitter may cancel only its own experiments. Ask '",
      owner, "' or an admin to cancel it"));
}

std::string NewTokenText() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    // OpenSSL's DRBG only fails when the OS gives it no entropy at all; a
    // token must never be predictable, so give up.
    std::fprintf(stderr, "benchfleet: no random bytes for a token\n");
    std::abort();
  }
  return absl::StrCat("bft_",
                      absl::WebSafeBase64Escape(std::string(
                          reinterpret_cast<const char*>(raw), sizeof(raw))));
}

std::string TokenSha256Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      std::string(reinterpret_cast<const char*>(digest), len));
}

absl::Status CheckUserName(const std::string& user) {
  if (user.empty() || user.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("user name '", user, "' must be 1 to 64 characters long"));
  }
  for (char c : user) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '@' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("user name '", user, "' contains '", std::string(1, c),
                       "'; use letters, digits, '.', '_', '@' and '-'"));
    }
  }
  return absl::OkStatus();
}

std::set<std::string> TrustedLabels::Keys() const {
  std::set<std::string> keys;
  for (const auto& [agent, labels] : per_agent) {
    for (const auto& [key, value] : labels) keys.insert(key);
  }
  return keys;
}

absl::StatusOr<Admission> AdmitAgent(
    const std::string& hello_id,
    const std::map<std::string, std::string>& hello_labels,
    const std::string& certificate_id, const TrustedLabels& trusted) {
  if (!certificate_id.empty() && hello_id != certificate_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "agent certificate is for '", certificate_id,
        "' but the agent says it is '", hello_id, "'; start it with --id ",
        certificate_id,
        " or give it its own certificate (`benchfleet certs agent ", hello_id,
        "`)"));
  }
  Admission out;
  out.labels = hello_labels;
  const std::set<std::string> keys = trusted.Keys();
  auto pins_it = trusted.per_agent.find(hello_id);
  for (const std::string& key : keys) {
    auto own = out.labels.find(key);
    std::optional<std::string> pin;
    if (pins_it != trusted.per_agent.end()) {
      auto p = pins_it->second.find(key);
      if (p != pins_it->second.end()) pin = p->second;
    }
    if (pin.has_value()) {
      if (own == out.labels.end()) {
        out.labels[key] = *pin;
      } else if (own->second != *pin) {
        out.changes.push_back(absl::StrCat(
            key, "=", own->second, " replaced by the pinned ", key, "=", *pin));
        own->second = *pin;
      }
    } else if (own != out.labels.end()) {
      out.changes.push_back(
          absl::StrCat(key, "=", own->second, " dropped: ", key,
                       " is a trusted label and is not pinned for this agent"));
      out.labels.erase(own);
    }
  }
  return out;
}

}  // namespace benchfleet
