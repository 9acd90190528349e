// libFuzzer target: each request the controller accepts from a client
// (fleet.proto). The first input byte picks the method, the rest is the
// serialized request. Each goes through what FleetServiceImpl and FleetApi do
// with it before the store: the method table (controller/auth/auth_policy.h)
// for every role, then the conversion — SubmitRequest's spec through
// ParseSpec as FleetApi::Submit calls it, ImportHistoryRequest's file through
// ParseHistoryFile, CreateTokenRequest's user and role through CheckUserName
// and RoleFromName, CancelExperiment through CheckMayCancel, times through
// absl::FromUnixMillis. (The YAML readers get their own, faster targets on
// plain text: spec_fuzzer.cc, history_file_fuzzer.cc.)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "benchfleet/v1/fleet.pb.h"
#include "common/model/token.h"
#include "common/spec_loader.h"
#include "controller/auth/auth_policy.h"
#include "controller/history/history_file.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"

namespace benchfleet {
namespace {

// Every role may call `method` exactly when it ranks at least the table's.
void CheckMethodTable(const std::string& method) {
  const MethodRule* rule = FindMethodRule(method);
  FUZZ_CHECK(rule != nullptr && !rule->agent);
  for (Role role : {Role::kViewer, Role::kSubmitter, Role::kAdmin}) {
    const Caller caller{"someone", role, true};
    const bool allowed = CheckMethodAllowed(caller, method).ok();
    FUZZ_CHECK(allowed ==
               (static_cast<int>(role) >= static_cast<int>(rule->role)));
  }
  // Plaintext on loopback: nobody is authenticated and all may do all.
  FUZZ_CHECK(
      CheckMethodAllowed(Caller{"local", Role::kAdmin, false}, method).ok());
}

template <typename Request>
bool Parse(std::string_view bytes, Request& request) {
  return request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

// FleetApi::Submit up to the store.
void Submit(const v1::SubmitRequest& req) {
  if (req.workdir().empty() || req.workdir()[0] != '/') return;
  SpecLoadOptions options;
  options.base_dir = req.workdir();
  absl::StatusOr<ExperimentSpec> spec = ParseSpec(
      req.spec_yaml(),
      req.spec_path().empty() ? "<submitted spec>" : req.spec_path(), options);
  FUZZ_CHECK(spec.ok() || absl::IsInvalidArgument(spec.status()));
}

void ImportHistory(const v1::ImportHistoryRequest& req) {
  absl::StatusOr<std::vector<HistoryEntry>> entries = ParseHistoryFile(
      req.file_text(),
      req.file_name().empty() ? "<history file>" : req.file_name());
  FUZZ_CHECK(entries.ok() || absl::IsInvalidArgument(entries.status()));
}

void CreateToken(const v1::CreateTokenRequest& req) {
  const absl::Status user = CheckUserName(req.user());
  FUZZ_CHECK(user.ok() || absl::IsInvalidArgument(user));
  absl::StatusOr<Role> role = RoleFromName(req.role());
  if (role.ok()) FUZZ_CHECK(RoleName(*role) == req.role());
}

void Cancel(const v1::CancelExperimentRequest& req) {
  const Caller submitter{"alice", Role::kSubmitter, true};
  FUZZ_CHECK(CheckMayCancel(submitter, "alice", req.id()).ok());
  FUZZ_CHECK(
      absl::IsPermissionDenied(CheckMayCancel(submitter, "bob", req.id())));
  FUZZ_CHECK(
      CheckMayCancel(Caller{"root", Role::kAdmin, true}, "bob", req.id()).ok());
}

// GetHistory and ExportHistory turn a positive since_unix_ms into a time.
void Since(int64_t since_unix_ms) {
  if (since_unix_ms <= 0) return;
  const absl::Time since = absl::FromUnixMillis(since_unix_ms);
  FUZZ_CHECK(since > absl::UnixEpoch());
}

}  // namespace
}  // namespace benchfleet

// Protobuf logs every string field that is not UTF-8; the fuzzer sends many.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace bf = benchfleet;
  namespace v1 = benchfleet::v1;
  if (size == 0) return -1;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1,
                               size - 1);
  const std::string prefix = "/benchfleet.v1.FleetService/";
  switch (data[0] % 14) {
    case 0: {
      v1::SubmitRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "Submit");
      bf::Submit(req);
      break;
    }
    case 1: {
      v1::GetExperimentRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "GetExperiment");
      break;
    }
    case 2: {
      v1::ListExperimentsRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "ListExperiments");
      break;
    }
    case 3: {
      v1::WatchExperimentRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "WatchExperiment");
      break;
    }
    case 4: {
      v1::CancelExperimentRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "CancelExperiment");
      bf::Cancel(req);
      break;
    }
    case 5: {
      v1::ListAgentsRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "ListAgents");
      break;
    }
    case 6: {
      v1::SetAgentCordonedRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "SetAgentCordoned");
      break;
    }
    case 7: {
      v1::GetHistoryRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "GetHistory");
      bf::Since(req.since_unix_ms());
      break;
    }
    case 8: {
      v1::ExportHistoryRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "ExportHistory");
      bf::Since(req.since_unix_ms());
      break;
    }
    case 9: {
      v1::ImportHistoryRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "ImportHistory");
      bf::ImportHistory(req);
      break;
    }
    case 10: {
      v1::CreateTokenRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "CreateToken");
      bf::CreateToken(req);
      break;
    }
    case 11: {
      v1::ListTokensRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "ListTokens");
      break;
    }
    case 12: {
      v1::RevokeTokenRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "RevokeToken");
      break;
    }
    case 13: {
      v1::WhoAmIRequest req;
      if (!bf::Parse(bytes, req)) return -1;
      bf::CheckMethodTable(prefix + "WhoAmI");
      break;
    }
  }
  return 0;
}
