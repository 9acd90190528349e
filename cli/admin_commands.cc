#include "cli/admin_commands.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "common/certs.h"
#include "common/grpc_status.h"
#include "common/signing.h"

namespace benchfleet {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(15);

int Usage(const std::string& message) {
  std::fprintf(stderr, "benchfleet: %s\n", message.c_str());
  return kExitUsage;
}

int UserError(const absl::Status& st) {
  std::fprintf(stderr, "benchfleet: %s\n", std::string(st.message()).c_str());
  return kExitUserError;
}

// mkdir -p with mode 0700 for the last component (it holds keys).
absl::Status MakePrivateDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create directory ", dir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string Hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

std::string Day(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d", t, absl::UTCTimeZone());
}

int CertsInit(const AdminCommands& cmds) {
  if (cmds.days <= 0) return Usage("--days must be positive");
  if (absl::Status s = MakePrivateDir(cmds.dir); !s.ok()) return UserError(s);
  const absl::Time now = absl::Now();
  auto ca =
      MakeCertificateAuthority("benchfleet CA", now + absl::Hours(24 * 3650));
  if (!ca.ok()) return UserError(ca.status());
  CertificateRequest req;
  req.common_name = "benchfleet-controller";
  req.sans = {"localhost", "127.0.0.1", "::1"};
  if (const std::string host = Hostname(); !host.empty())
    req.sans.push_back(host);
  for (const std::string& san : cmds.sans) req.sans.push_back(san);
  req.server_auth = true;
  req.not_after = now + absl::Hours(24 * cmds.days);
  auto controller = IssueCertificate(*ca, req);
  if (!controller.ok()) return UserError(controller.status());
  if (absl::Status s = WriteKeyAndCert(cmds.dir, "ca", *ca); !s.ok())
    return UserError(s);
  if (absl::Status s = WriteKeyAndCert(cmds.dir, "controller", *controller);
      !s.ok())
    return UserError(s);
  if (absl::Status s = GenerateSigningKeyPair(cmds.dir); !s.ok())
    return UserError(s);
  std::printf(
      "%s/ca.crt          the CA (give it to every agent and user: --ca)\n"
      "%s/ca.key          the CA's key: keep it offline or at least private\n"
      "%s/controller.crt  the controller's certificate, valid until %s, "
      "for %s\n"
      "%s/controller.key\n"
      "%s/signing.key     signs every order the controller sends to agents\n"
      "%s/signing.pub     give it to every agent: --controller-public-key\n\n"
      "Start the controller with\n"
      "  benchfleet-controller --listen 0.0.0.0:7070 --tls-cert "
      "%s/controller.crt --tls-key %s/controller.key --client-ca %s/ca.crt "
      "--signing-key %s/signing.key\n"
      "and make each agent a certificate with `benchfleet certs agent NAME "
      "--dir %s`.\n",
      cmds.dir.c_str(), cmds.dir.c_str(), cmds.dir.c_str(),
      Day(req.not_after).c_str(), absl::StrJoin(req.sans, ", ").c_str(),
      cmds.dir.c_str(), cmds.dir.c_str(), cmds.dir.c_str(), cmds.dir.c_str(),
      cmds.dir.c_str(), cmds.dir.c_str(), cmds.dir.c_str(), cmds.dir.c_str());
  return kExitOk;
}

int CertsAgent(const AdminCommands& cmds) {
  if (cmds.days <= 0) return Usage("--days must be positive");
  if (absl::Status s = CheckAgentName(cmds.name); !s.ok())
    return Usage(std::string(s.message()));
  auto ca = ReadKeyAndCert(cmds.dir, "ca");
  if (!ca.ok()) {
    return UserError(absl::NotFoundError(
        absl::StrCat(ca.status().message(),
                     "; run `benchfleet certs init DIR` first, or point "
                     "--dir at the directory it made")));
  }
  const std::string agents_dir = absl::StrCat(cmds.dir, "/agents");
  if (absl::Status s = MakePrivateDir(agents_dir); !s.ok()) return UserError(s);
  CertificateRequest req;
  req.common_name = cmds.name;
  req.sans = {cmds.name};
  req.client_auth = true;
  req.not_after = absl::Now() + absl::Hours(24 * cmds.days);
  auto agent = IssueCertificate(*ca, req);
  if (!agent.ok()) return UserError(agent.status());
  if (absl::Status s = WriteKeyAndCert(agents_dir, cmds.name, *agent); !s.ok())
    return UserError(s);
  std::printf(
      "%s/%s.crt and %s.key: agent '%s', valid until %s.\n"
      "Copy them, %s/ca.crt and signing.pub to the agent's host (the key "
      "readable by the "
      "agent's user only) and start it with\n"
      "  benchfleet-agent --controller CONTROLLER:7070 --tls-cert %s.crt "
      "--tls-key %s.key --ca ca.crt --controller-public-key signing.pub\n",
      agents_dir.c_str(), cmds.name.c_str(), cmds.name.c_str(),
      cmds.name.c_str(), Day(req.not_after).c_str(), cmds.dir.c_str(),
      cmds.name.c_str(), cmds.name.c_str());
  return kExitOk;
}

template <typename Req, typename Resp, typename Fn>
absl::Status Call(v1::FleetService::Stub* stub, Fn fn, const Req& req,
                  Resp* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
  return FromGrpcStatus((stub->*fn)(&ctx, req, resp));
}

std::string Millis(int64_t ms) {
  return ms == 0 ? "-"
                 : absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixMillis(ms),
                                    absl::UTCTimeZone());
}

}  // namespace

void AddAdminCommands(CLI::App& app, AdminCommands& cmds) {
  auto* certs = app.add_subcommand(
      "certs", "make the certificates of a fleet over mutual TLS");
  certs->require_subcommand(1);
  cmds.certs_init = certs->add_subcommand(
      "init", "make a CA and the controller's certificate in DIR");
  cmds.certs_init->add_option("dir", cmds.dir, "directory (made 0700)")
      ->required();
  cmds.certs_init->add_option(
      "--san", cmds.sans,
      "a name or IP address agents and users dial the controller by "
      "(repeatable; localhost, 127.0.0.1, ::1 and this host's name are "
      "always in)");
  cmds.certs_init->add_option("--days", cmds.days,
                              "how long the controller certificate is valid "
                              "(default 825)");
  cmds.certs_agent = certs->add_subcommand(
      "agent", "make agent NAME's client certificate with the CA in --dir");
  cmds.certs_agent->add_option("name", cmds.name, "the agent's id")->required();
  cmds.certs_agent
      ->add_option("--dir", cmds.dir, "the directory of `certs init`")
      ->required();
  cmds.certs_agent->add_option("--days", cmds.days,
                               "how long it is valid (default 825)");

  auto* token = app.add_subcommand("token", "API tokens (admin)");
  token->require_subcommand(1);
  cmds.token_create =
      token->add_subcommand("create", "create a token; it is printed once");
  cmds.token_create->add_option("--user", cmds.user, "who it is for")
      ->required();
  cmds.token_create
      ->add_option("--role", cmds.role, "viewer, submitter or admin")
      ->required();
  cmds.token_list = token->add_subcommand("list", "every token, without text");
  cmds.token_revoke = token->add_subcommand("revoke", "revoke a token");
  cmds.token_revoke->add_option("id", cmds.id, "token id (`token list`)")
      ->required();
  cmds.whoami =
      app.add_subcommand("whoami", "who the controller takes you for");
}

std::optional<int> RunCertsCommands(const AdminCommands& cmds) {
  if (cmds.certs_init->parsed()) return CertsInit(cmds);
  if (cmds.certs_agent->parsed()) return CertsAgent(cmds);
  return std::nullopt;
}

std::optional<int> RunTokenCommands(const AdminCommands& cmds,
                                    v1::FleetService::Stub* stub,
                                    const std::string& controller, bool json) {
  if (cmds.token_create->parsed()) {
    v1::CreateTokenRequest req;
    req.set_user(cmds.user);
    req.set_role(cmds.role);
    v1::CreateTokenResponse resp;
    absl::Status st =
        Call(stub, &v1::FleetService::Stub::CreateToken, req, &resp);
    if (!st.ok()) return ReportRpcError(st, controller);
    std::fprintf(stderr,
                 "token %lld for '%s' (%s); it is shown only now: put it in a "
                 "file only its user can read (chmod 600) and use "
                 "--token-file\n",
                 static_cast<long long>(resp.token().id()),
                 resp.token().user().c_str(), resp.token().role().c_str());
    std::printf("%s\n", resp.token_text().c_str());
    return kExitOk;
  }
  if (cmds.token_list->parsed()) {
    v1::ListTokensResponse resp;
    absl::Status st = Call(stub, &v1::FleetService::Stub::ListTokens,
                           v1::ListTokensRequest(), &resp);
    if (!st.ok()) return ReportRpcError(st, controller);
    if (json) {
      std::cout << ProtoToJson(resp) << "\n";
      return kExitOk;
    }
    std::printf("%-5s %-20s %-10s %-16s %-16s %s\n", "ID", "USER", "ROLE",
                "CREATED", "REVOKED", "BY");
    for (const v1::Token& t : resp.tokens()) {
      std::printf("%-5lld %-20s %-10s %-16s %-16s %s\n",
                  static_cast<long long>(t.id()), t.user().c_str(),
                  t.role().c_str(), Millis(t.created_at_unix_ms()).c_str(),
                  Millis(t.revoked_at_unix_ms()).c_str(),
                  t.created_by().empty() ? "-" : t.created_by().c_str());
    }
    return kExitOk;
  }
  if (cmds.token_revoke->parsed()) {
    v1::RevokeTokenRequest req;
    req.set_id(cmds.id);
    v1::Token resp;
    absl::Status st =
        Call(stub, &v1::FleetService::Stub::RevokeToken, req, &resp);
    if (!st.ok()) return ReportRpcError(st, controller);
    std::printf("token %lld of '%s' revoked\n",
                static_cast<long long>(resp.id()), resp.user().c_str());
    return kExitOk;
  }
  if (cmds.whoami->parsed()) {
    v1::WhoAmIResponse resp;
    absl::Status st =
        Call(stub, &v1::FleetService::Stub::WhoAmI, v1::WhoAmIRequest(), &resp);
    if (!st.ok()) return ReportRpcError(st, controller);
    if (json) {
      std::cout << ProtoToJson(resp) << "\n";
    } else if (resp.authenticated()) {
      std::printf("%s (%s) at %s\n", resp.user().c_str(), resp.role().c_str(),
                  controller.c_str());
    } else {
      std::printf(
          "not authenticated: the controller at %s runs without TLS and lets "
          "every caller do everything\n",
          controller.c_str());
    }
    return kExitOk;
  }
  return std::nullopt;
}

}  // namespace benchfleet
