// FleetServiceImpl over real gRPC on loopback: requests reach FleetApi,
// results and errors come back as protos and gRPC status codes, and
// WatchExperiment streams the scheduler's views until the final one.
#include "controller/service/fleet_service.h"

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/executor.h"
#include "controller/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: svc
benchmark:
  argv: [./bench]
  inputs: [{name: one, path: one.txt}]
  runs: 10
  max_runs: 10
variants: [{name: base}, {name: fast}]
)";

// Views from the store; Subscribe keeps the watcher so the test can publish.
class StoreScheduler final : public ExperimentScheduler {
 public:
  explicit StoreScheduler(Store* store) : store_(store) {}
  void OnSubmitted(int64_t) override {}
  absl::StatusOr<ExperimentView> View(int64_t id) override {
    absl::StatusOr<ExperimentRecord> rec = store_->GetExperiment(id);
    if (!rec.ok()) return rec.status();
    ExperimentView v;
    v.record = std::move(*rec);
    return v;
  }
  absl::Status Cancel(int64_t id, const std::string& reason) override {
    return store_->CancelExperiment(id, reason, absl::Now());
  }
  bool IsConnected(const std::string&) override { return false; }
  int64_t CurrentExperimentOf(const std::string&) override { return 0; }
  int64_t Subscribe(int64_t,
                    std::function<void(const ExperimentView&)> fn) override {
    absl::MutexLock lock(&mu_);
    watcher_ = std::move(fn);
    return 1;
  }
  void Unsubscribe(int64_t) override {
    absl::MutexLock lock(&mu_);
    watcher_ = nullptr;
    unsubscribed_ = true;
  }
  // Waits (up to 10 s) for a watcher, then calls it with `view`.
  bool Publish(const ExperimentView& view) {
    std::function<void(const ExperimentView&)> fn;
    {
      absl::MutexLock lock(&mu_);
      auto has = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return watcher_ != nullptr;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&has), absl::Seconds(10)))
        return false;
      fn = watcher_;
    }
    fn(view);
    return true;
  }
  bool WaitUnsubscribed() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&unsubscribed_),
                                absl::Seconds(10));
  }

 private:
  Store* store_;
  absl::Mutex mu_;
  std::function<void(const ExperimentView&)> watcher_ ABSL_GUARDED_BY(mu_);
  bool unsubscribed_ ABSL_GUARDED_BY(mu_) = false;
};

class FleetServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteOptions options;
    options.path = dir_ / "svc.db";
    auto store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    scheduler_ = std::make_unique<StoreScheduler>(store_.get());
    api_ = std::make_unique<FleetApi>(store_.get(), scheduler_.get());
    service_ = std::make_unique<FleetServiceImpl>(api_.get(), scheduler_.get(),
                                                  &executor_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    stub_ = v1::FleetService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                            grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now()));
  }

  std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return ctx;
  }

  testing::TempDir dir_;
  Executor executor_{2};
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<StoreScheduler> scheduler_;
  std::unique_ptr<FleetApi> api_;
  std::unique_ptr<FleetServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::FleetService::Stub> stub_;
};

TEST_F(FleetServiceTest, SubmitThenGetRoundTripsThroughProtos) {
  v1::SubmitRequest req;
  req.set_spec_yaml(kSpec);
  req.set_spec_path("/w/svc.yaml");
  req.set_workdir("/w");
  req.set_submitted_by("ana");
  v1::SubmitResponse resp;
  grpc::Status st = stub_->Submit(Ctx().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_GT(resp.experiment_id(), 0);
  EXPECT_EQ(resp.number(), 1);

  v1::GetExperimentRequest get;
  get.set_id(resp.experiment_id());
  v1::Experiment e;
  st = stub_->GetExperiment(Ctx().get(), get, &e);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(e.id(), resp.experiment_id());
  EXPECT_EQ(e.name(), "svc");
}

TEST_F(FleetServiceTest, ErrorsKeepTheirCodeAndMessage) {
  v1::SubmitRequest req;
  req.set_spec_yaml(kSpec);
  req.set_workdir("relative");
  v1::SubmitResponse resp;
  grpc::Status st = stub_->Submit(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(),
              HasSubstr("submit needs the absolute work directory"));

  v1::GetExperimentRequest get;
  get.set_id(99);
  v1::Experiment e;
  st = stub_->GetExperiment(Ctx().get(), get, &e);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(st.error_message(),
            "no experiment with id 99; `benchfleet list` shows the ids");

  v1::SetAgentCordonedRequest cordon;
  cordon.set_id("nobody");
  v1::Agent agent;
  st = stub_->SetAgentCordoned(Ctx().get(), cordon, &agent);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(FleetServiceTest, WatchStreamsViewsUntilTheFinalOne) {
  v1::SubmitRequest req;
  req.set_spec_yaml(kSpec);
  req.set_workdir("/w");
  v1::SubmitResponse resp;
  ASSERT_TRUE(stub_->Submit(Ctx().get(), req, &resp).ok());

  v1::WatchExperimentRequest watch;
  watch.set_id(resp.experiment_id());
  auto ctx = Ctx();
  std::unique_ptr<grpc::ClientReader<v1::Experiment>> reader =
      stub_->WatchExperiment(ctx.get(), watch);
  v1::Experiment e;
  ASSERT_TRUE(reader->Read(&e));  // the current view, at once
  EXPECT_EQ(e.id(), resp.experiment_id());

  ASSERT_TRUE(
      store_->CancelExperiment(resp.experiment_id(), "stop", absl::Now()).ok());
  auto view = scheduler_->View(resp.experiment_id());
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(scheduler_->Publish(*view));
  // The final view arrives (possibly replacing an unsent one), then the end.
  v1::Experiment last;
  while (reader->Read(&e)) last = e;
  EXPECT_EQ(last.id(), resp.experiment_id());
  EXPECT_EQ(last.state(), "cancelled");
  grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(scheduler_->WaitUnsubscribed());
}

}  // namespace
}  // namespace benchfleet
