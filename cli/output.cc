#include "cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "cli/commands.h"

namespace benchfleet {

int ReportRpcError(const absl::Status& st, const std::string& controller) {
  if (st.ok()) return kExitOk;
  const std::string message(st.message());
  if (absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st)) {
    std::fprintf(stderr,
                 "benchfleet: cannot reach the controller at %s (%s); start "
                 "benchfleet-controller there or point --controller / "
                 "BENCHFLEET_CONTROLLER at it (with TLS, check --ca and "
                 "that the controller's certificate names that host)\n",
                 controller.c_str(), message.c_str());
    return kExitUnreachable;
  }
  if (absl::IsUnauthenticated(st)) {
    std::fprintf(stderr,
                 "benchfleet: the controller at %s did not accept who you "
                 "are: %s\n",
                 controller.c_str(), message.c_str());
    return kExitUnreachable;
  }
  if (absl::IsPermissionDenied(st)) {
    std::fprintf(stderr, "benchfleet: not allowed: %s\n", message.c_str());
    return kExitUserError;
  }
  std::fprintf(stderr, "benchfleet: %s\n", message.c_str());
  return kExitUserError;
}

std::string ProtoToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

std::string ReportOrSources(const v1::Experiment& e) {
  if (!e.report_text().empty()) return "\n" + e.report_text();
  if (!e.bundle_digest().empty())
    return "Source: bundle " + e.bundle_digest() + " (every variant)\n";
  if (e.sources_size() == 0) return "";
  std::string out = "Source: " + e.sources(0).repo() + "\n";
  for (const v1::SourceCommit& s : e.sources()) {
    out += "  - " + s.variant() + ": " + s.commit() + " (" + s.ref() + ")\n";
  }
  return out;
}

}  // namespace benchfleet
