// The unprivileged user jobs run as (agent config `job_user`, DESIGN.md §7),
// and the start-up rules that go with it: an agent running as root refuses to
// run jobs as root unless told to, and the job user must not be able to read
// the agent's keys, token or data directory.
//
// Used by benchfleet-agent's main and Agent::Create (the checks) and by
// PosixProcessRunner (the switch in the child before exec).
//
// Thread-safety: all functions are thread-safe.
#ifndef BENCHFLEET_AGENT_RUNNER_JOB_USER_H_
#define BENCHFLEET_AGENT_RUNNER_JOB_USER_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace benchfleet {

struct JobUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, from the group database
};

// Looks `name` (a user name or a numeric uid) up in the user database.
// NotFound with a message naming it when there is no such user.
absl::StatusOr<JobUser> LookUpJobUser(const std::string& name);

// Whether `user` can open each of `paths` for reading (files) or list it
// (directories), asked of the kernel itself: a forked child takes the user's
// identity and tries. Returns FailedPrecondition naming the first path the
// user can read and the chmod that fixes it; OK when none is readable (a
// path that does not exist is skipped). Needs the privilege to switch users
// (root); PermissionDenied otherwise.
absl::Status CheckUnreadableBy(const JobUser& user,
                               const std::vector<std::string>& paths);

// The rule for an agent that runs as root (see RootJobsRule's comment in the
// .cc): what to do when jobs would run as root.
enum class RootJobsVerdict { kOk, kWarn, kRefuse };
struct RootJobsDecision {
  RootJobsVerdict verdict = RootJobsVerdict::kOk;
  std::string message;  // for kWarn and kRefuse: what is wrong, what to set
};
// `agent_is_root`: the agent's effective uid is 0. `controller_is_loopback`:
// the controller it dials is on this host (local mode, the quickstart).
RootJobsDecision DecideRootJobs(bool agent_is_root, bool has_job_user,
                                bool allow_root_jobs,
                                bool controller_is_loopback);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_RUNNER_JOB_USER_H_
