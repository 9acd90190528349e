// What every benchfleet command prints the same way: a failed call to the
// controller with its exit code (commands.h: unreachable or not authenticated
// -> 3, with what to do; anything else, such as a refused request or a missing
// role -> 1), and a reply as JSON (--json).
#ifndef BENCHFLEET_CLI_OUTPUT_H_
#define BENCHFLEET_CLI_OUTPUT_H_

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/status.h"

namespace benchfleet {

int ReportRpcError(const absl::Status& st, const std::string& controller);

// The message as JSON with proto field names and every field, zero or not.
std::string ProtoToJson(const google::protobuf::Message& m);

}  // namespace benchfleet

#endif  // BENCHFLEET_CLI_OUTPUT_H_
