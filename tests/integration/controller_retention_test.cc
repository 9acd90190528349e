// The controller applies its sample retention at start-up: a real controller
// over a real SQLite file that already holds old samples.
#include <filesystem>

#include "absl/time/clock.h"
#include "controller/controller.h"
#include "controller/store/sqlite_store.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::TempDir;

constexpr absl::Duration kDay = absl::Hours(24);

std::unique_ptr<SqliteStore> OpenStore(const std::string& path) {
  SqliteOptions o;
  o.path = path;
  auto store = SqliteStore::Open(o);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

size_t CountSamples(const std::string& path) {
  auto store = OpenStore(path);
  if (store == nullptr) return 0;
  auto samples = store->ListSamples(1);
  EXPECT_TRUE(samples.ok()) << samples.status();
  return samples.ok() ? samples->size() : 0;
}

// Waits (checking every 20 ms) until the store holds `n` samples.
bool AwaitSampleCount(const std::string& path, size_t n) {
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (CountSamples(path) != n) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

TEST(ControllerRetentionTest, DeletesSamplesOlderThanTheRetentionAtStartUp) {
  TempDir dir;
  const std::string db = dir / "fleet.db";
  {
    auto store = OpenStore(db);
    ASSERT_NE(store, nullptr);
    const absl::Time now = absl::Now();
    std::vector<SampleRecord> samples;
    int seq = 0;
    for (absl::Duration age : {40 * kDay, 10 * kDay, absl::Hours(1)}) {
      SampleRecord s;
      s.attempt_id = 1;
      s.step_seq = ++seq;
      s.agent_id = "a";
      s.taken_at = now - age;
      samples.push_back(s);
    }
    ASSERT_TRUE(store->RecordSamples(samples).ok());
  }
  ASSERT_EQ(CountSamples(db), 3u);

  ControllerOptions copts;
  copts.listen = "127.0.0.1:0";
  copts.store_url = "sqlite://" + db;  // default retention: 30 days
  {
    auto controller = Controller::Create(copts);
    ASSERT_TRUE(controller.ok()) << controller.status();
    EXPECT_TRUE(AwaitSampleCount(db, 2))
        << "the 40-day-old sample should be gone, the others kept";
  }
  copts.sample_retention = 5 * kDay;
  {
    auto controller = Controller::Create(copts);
    ASSERT_TRUE(controller.ok()) << controller.status();
    EXPECT_TRUE(AwaitSampleCount(db, 1))
        << "with 5 days only the hour-old sample stays";
  }
}

}  // namespace
}  // namespace benchfleet
