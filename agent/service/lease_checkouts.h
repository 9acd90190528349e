// LeaseCheckouts: what a lease with sources (agent.proto Lease.sources, the
// spec's source.repo or source.bundle) means on the agent. On acceptance it
// checks every variant out at its commit (agent/source/checkout_manager.h),
// or unpacks the lease's bundle (fetched through the BundleCache,
// agent/bundle/bundle_cache.h) into one directory per variant; before each
// step it turns the order's cwd — relative to its variant's checkout — into a
// directory inside that checkout, making the checkout read-only before the
// variant's first warmup or measured run; when the attempt ends it removes
// the checkouts. A lease without sources changes nothing.
//
// Used by the agent's worker thread only (agent/service/agent.cc). Not
// thread-safe; externally synchronized.
#ifndef BENCHFLEET_AGENT_SERVICE_LEASE_CHECKOUTS_H_
#define BENCHFLEET_AGENT_SERVICE_LEASE_CHECKOUTS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/bundle/bundle_cache.h"
#include "agent/service/step_executor.h"
#include "agent/source/checkout_manager.h"
#include "benchfleet/v1/agent.pb.h"

namespace benchfleet {

class LeaseCheckouts {
 public:
  // `host` names this agent in messages. `bundles` (may be null: bundle
  // leases are then declined) must outlive this.
  LeaseCheckouts(CheckoutOptions options, std::string host,
                 BundleCache* bundles = nullptr);

  // Checks the lease's variants out (nothing without sources). Returns the
  // directory whose commit the attempt's environment records (the baseline's
  // checkout; "" without sources). Errors name the host, repository, commit
  // and git's message; nothing of the attempt is left then.
  absl::StatusOr<std::string> Prepare(const v1::Lease& lease);

  // Points `order` at its variant's checkout (when its lease had sources);
  // seals the checkout before the variant's first run. InvalidArgument when
  // the order's cwd is absolute or leaves the checkout, or its variant has no
  // checkout.
  absl::Status Place(v1::StepOrder* order);

  // Removes the checkouts of `attempt_id` (logged on failure; swept at the
  // next start otherwise).
  void Remove(int64_t attempt_id);
  // Removes every checkout, including those an earlier process left.
  void SweepAll();

 private:
  // The bundle variant of Prepare: one unpacked copy per variant.
  absl::StatusOr<std::map<std::string, std::string>> Unpack(
      const v1::Lease& lease);

  CheckoutManager manager_;
  std::string host_;
  BundleCache* bundles_;
  int64_t attempt_id_ = 0;
  std::map<std::string, std::string> dirs_;  // variant -> checkout
  std::set<std::string> sealed_;             // variants made read-only
};

// The result of a step that was not run because `why` (Place refused it).
StepOutcome UnrunStep(const v1::StepOrder& order, const absl::Status& why);
// The reply declining `lease` because its checkout failed.
v1::AgentMessage DeclinedLease(const v1::Lease& lease,
                               const std::string& reason);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_LEASE_CHECKOUTS_H_
