// What every benchfleet command prints the same way: a failed call to the
// controller with its exit code (commands.h: unreachable or not authenticated
// -> 3, with what to do; anything else, such as a refused request or a missing
// role -> 1), a reply as JSON (--json), and the end of `show`.
#ifndef BENCHFLEET_CLI_OUTPUT_H_
#define BENCHFLEET_CLI_OUTPUT_H_

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/status.h"
#include "benchfleet/v1/fleet.pb.h"

namespace benchfleet {

int ReportRpcError(const absl::Status& st, const std::string& controller);

// The message as JSON with proto field names and every field, zero or not.
std::string ProtoToJson(const google::protobuf::Message& m);

// The end of `show`: the report after a blank line when there is one (it
// names the commits measured, with source.repo); before it, the commit each
// variant is to be measured at ("Source: REPO" then "  - variant: commit
// (ref)"); "" for neither.
std::string ReportOrSources(const v1::Experiment& e);

}  // namespace benchfleet

#endif  // BENCHFLEET_CLI_OUTPUT_H_
