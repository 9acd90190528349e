// Conversions between the controller's plain structs and benchfleet.v1 protos.
// Only the service adapters include this. Stateless.
#ifndef BENCHFLEET_CONTROLLER_SERVICE_CONVERT_H_
#define BENCHFLEET_CONTROLLER_SERVICE_CONVERT_H_

#include "benchfleet/v1/agent.pb.h"
#include "benchfleet/v1/fleet.pb.h"
#include "common/model/agent.h"
#include "common/model/experiment.h"
#include "common/model/host_facts.h"
#include "common/model/sample.h"
#include "controller/history/history.h"
#include "controller/scheduler/dispatcher.h"

namespace benchfleet {

v1::StepOrder ToProto(int64_t attempt_id, const std::string& token,
                      const PlannedStep& step);
StepOutcome FromProto(const v1::StepResult& result);
AgentHello FromProto(const v1::Hello& hello);
v1::Experiment ToProto(const ExperimentView& view);
v1::Agent ToProto(const AgentRecord& agent, bool connected,
                  int64_t current_experiment_id);
v1::GateSpec ToProto(const GateSpec& gates);
std::vector<SampleRecord> FromProto(const v1::SampleBatch& batch);
// The agent's part of an attempt's environment (host facts are left empty).
HostEnvironment FromProto(const v1::AttemptEnvironment& environment);
// An attempt as GetExperiment lists it.
v1::Attempt ToProto(const AttemptRecord& attempt);
// A row of `benchfleet history`.
v1::HistoryRow ToProto(const HistoryRow& row);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_CONVERT_H_
