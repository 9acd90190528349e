// How every benchfleet command reports a failed call to the controller, and
// its exit code (commands.h): unreachable or not authenticated -> 3 (with
// what to do), anything else (a refused request, a missing role) -> 1.
#ifndef BENCHFLEET_CLI_CLI_ERRORS_H_
#define BENCHFLEET_CLI_CLI_ERRORS_H_

#include <string>

#include "absl/status/status.h"

namespace benchfleet {

int ReportRpcError(const absl::Status& st, const std::string& controller);

}  // namespace benchfleet

#endif  // BENCHFLEET_CLI_CLI_ERRORS_H_
