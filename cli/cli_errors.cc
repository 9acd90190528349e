#include "cli/cli_errors.h"

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

}  // namespace benchfleet
