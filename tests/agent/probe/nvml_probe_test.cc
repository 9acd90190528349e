// Tests of NvmlProbe against the fake NVML library built by this suite
// (fake_nvml.c): one GPU, several GPUs, GPUs whose calls fail, NVML missing,
// failing to initialise or lacking entry points, and the GPUs reaching
// HostSample through SysfsProbe.
#include "agent/probe/nvml_probe.h"

#include <dlfcn.h>
#include <stdlib.h>

#include <string>

#include "agent/probe/host_sample.h"
#include "agent/probe/sysfs_probe.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/probe/fake_tree.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::FakeTree;
using ::benchfleet::testing::TestTime;
using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

constexpr char kH100[] =
    "gpu;name=NVIDIA H100 80GB "
    "HBM3;uuid=GPU-11111111-2222-3333-4444-555555555555;temp=45;"
    "util=30;mem_util=12;mem_total=85520809984;mem_used=1073741824;power_mw="
    "120500;"
    "sm_clock=1980;mem_clock=2619;throttle=0x44";

// Points the fake library at a config for the lifetime of the object.
class FakeNvmlConfig {
 public:
  explicit FakeNvmlConfig(const std::string& text) {
    benchfleet::testing::WriteFile(dir_ / "nvml.conf", text);
    setenv("FAKE_NVML_CONFIG", (dir_ / "nvml.conf").c_str(), 1);
  }
  ~FakeNvmlConfig() { unsetenv("FAKE_NVML_CONFIG"); }

 private:
  benchfleet::testing::TempDir dir_;
};

std::unique_ptr<NvmlProbe> OpenFake() {
  return NvmlProbe::Open({.library = BF_FAKE_NVML});
}

TEST(NvmlProbeTest, OneGpuHasEveryReading) {
  FakeNvmlConfig config(kH100);
  auto nvml = OpenFake();
  ASSERT_EQ(nvml->state(), NvmlState::kReady) << nvml->error();
  EXPECT_EQ(nvml->error(), "");
  EXPECT_EQ(nvml->gpu_count(), 1);

  const std::vector<GpuSample> gpus = nvml->SampleGpus();
  ASSERT_EQ(gpus.size(), 1u);
  const GpuSample& g = gpus[0];
  EXPECT_EQ(g.index, 0);
  EXPECT_EQ(g.name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(g.uuid, "GPU-11111111-2222-3333-4444-555555555555");
  EXPECT_THAT(g.temp_c, Optional(DoubleEq(45)));
  EXPECT_THAT(g.util_percent, Optional(DoubleEq(30)));
  EXPECT_THAT(g.memory_util_percent, Optional(DoubleEq(12)));
  EXPECT_EQ(g.memory_total_bytes, 85520809984);
  EXPECT_EQ(g.memory_used_bytes, 1073741824);
  EXPECT_THAT(g.power_w, Optional(DoubleEq(120.5)));
  EXPECT_EQ(g.sm_clock_mhz, 1980);
  EXPECT_EQ(g.mem_clock_mhz, 2619);
  EXPECT_EQ(g.throttle_reasons, 0x44u);
  EXPECT_THAT(g.throttle_reason_names,
              ElementsAre("sw_power_cap", "hw_thermal_slowdown"));
  EXPECT_THAT(g.errors, IsEmpty());
}

TEST(NvmlProbeTest, SeveralGpusReachTheHostSample) {
  FakeNvmlConfig config(
      "gpu;name=GPU A;uuid=GPU-a;temp=41\n"
      "gpu;name=GPU B;uuid=GPU-b;temp=67;util=99\n"
      "gpu;name=GPU C;uuid=GPU-c;temp=52\n");
  auto nvml = OpenFake();
  ASSERT_EQ(nvml->gpu_count(), 3);
  FakeTree tree("container");
  SysfsProbe probe({.root = tree.root()}, nvml.get());
  const HostSample s = probe.Sample(TestTime(0));
  ASSERT_EQ(s.gpus.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(s.gpus[i].index, i);
  EXPECT_EQ(s.gpus[1].uuid, "GPU-b");
  EXPECT_THAT(MaxGpuTempC(s), Optional(DoubleEq(67)));
  EXPECT_THAT(MaxGpuUtilPercent(s), Optional(DoubleEq(99)));
}

TEST(NvmlProbeTest, GpuWhoseCallsFailHasNoReadingsAndRecordsTheErrors) {
  FakeNvmlConfig config(std::string(kH100) + "\ngpu;uuid=GPU-lost;error=15\n");
  auto nvml = OpenFake();
  ASSERT_EQ(nvml->state(), NvmlState::kReady);
  const std::vector<GpuSample> gpus = nvml->SampleGpus();
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_THAT(gpus[0].errors, IsEmpty());  // the good GPU is unaffected
  EXPECT_THAT(gpus[0].temp_c, Optional(DoubleEq(45)));

  const GpuSample& lost = gpus[1];
  EXPECT_EQ(lost.index, 1);
  EXPECT_EQ(lost.name, "");
  EXPECT_EQ(lost.uuid, "");
  EXPECT_EQ(lost.temp_c, std::nullopt);
  EXPECT_EQ(lost.util_percent, std::nullopt);
  EXPECT_EQ(lost.memory_total_bytes, std::nullopt);
  EXPECT_EQ(lost.power_w, std::nullopt);
  EXPECT_EQ(lost.sm_clock_mhz, std::nullopt);
  EXPECT_EQ(lost.throttle_reasons, std::nullopt);
  EXPECT_THAT(lost.errors,
              ::testing::Contains("nvmlDeviceGetTemperature: GPU is lost"));
  EXPECT_THAT(lost.errors,
              ::testing::Contains("nvmlDeviceGetName: GPU is lost"));
  EXPECT_THAT(lost.errors,
              ::testing::Contains(
                  "nvmlDeviceGetCurrentClocksThrottleReasons: GPU is lost"));
  EXPECT_EQ(lost.errors.size(),
            9u);  // name, uuid, temp, util, memory, power, 2 clocks, reasons
}

TEST(NvmlProbeTest, NotSupportedLeavesTheFieldUnavailableWithoutAnError) {
  FakeNvmlConfig config("gpu;name=GeForce;temp=50;power_error=3\n");
  auto nvml = OpenFake();
  const std::vector<GpuSample> gpus = nvml->SampleGpus();
  ASSERT_EQ(gpus.size(), 1u);
  EXPECT_EQ(gpus[0].power_w, std::nullopt);
  EXPECT_THAT(gpus[0].temp_c, Optional(DoubleEq(50)));
  EXPECT_THAT(gpus[0].errors, IsEmpty());
}

TEST(NvmlProbeTest, GpuWithoutAHandleIsListedWithItsError) {
  FakeNvmlConfig config("gpu;name=A;temp=40\ngpu;name=B;handle_error=15\n");
  auto nvml = OpenFake();
  const std::vector<GpuSample> gpus = nvml->SampleGpus();
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[1].index, 1);
  EXPECT_EQ(gpus[1].temp_c, std::nullopt);
  EXPECT_THAT(gpus[1].errors,
              ElementsAre("nvmlDeviceGetHandleByIndex_v2: GPU is lost"));
}

TEST(NvmlProbeTest, MissingLibraryMeansNoGpusNotAnError) {
  auto nvml = NvmlProbe::Open({.library = "/nonexistent/libnvidia-ml.so.1"});
  EXPECT_EQ(nvml->state(), NvmlState::kNotInstalled);
  EXPECT_THAT(nvml->error(), HasSubstr("/nonexistent/libnvidia-ml.so.1"));
  EXPECT_EQ(nvml->gpu_count(), 0);
  EXPECT_THAT(nvml->SampleGpus(), IsEmpty());
}

TEST(NvmlProbeTest, InitFailureMeansNoGpusAndSaysWhy) {
  FakeNvmlConfig config("init_error=9\n" + std::string(kH100));
  auto nvml = OpenFake();
  EXPECT_EQ(nvml->state(), NvmlState::kInitFailed);
  EXPECT_EQ(nvml->error(), "nvmlInit_v2: Driver Not Loaded");
  EXPECT_THAT(nvml->SampleGpus(), IsEmpty());
}

TEST(NvmlProbeTest, LibraryWithoutNvmlEntryPointsIsIncompatible) {
  auto nvml = NvmlProbe::Open({.library = BF_FAKE_NVML_WITHOUT_INIT});
  EXPECT_EQ(nvml->state(), NvmlState::kIncompatible);
  EXPECT_THAT(nvml->error(), HasSubstr("nvmlInit_v2"));
  EXPECT_THAT(nvml->SampleGpus(), IsEmpty());
}

TEST(NvmlProbeTest, NoConfiguredGpusIsReadyWithZeroGpus) {
  auto nvml = OpenFake();
  EXPECT_EQ(nvml->state(), NvmlState::kReady);
  EXPECT_EQ(nvml->gpu_count(), 0);
}

TEST(NvmlProbeTest, DestructionShutsNvmlDown) {
  // Keep the fake loaded to read its counters across the probe's own
  // dlopen/dlclose.
  void* lib = dlopen(BF_FAKE_NVML, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto inits = reinterpret_cast<int (*)()>(dlsym(lib, "fake_nvml_init_calls"));
  auto shutdowns =
      reinterpret_cast<int (*)()>(dlsym(lib, "fake_nvml_shutdown_calls"));
  ASSERT_NE(inits, nullptr);
  const int inits_before = inits(), shutdowns_before = shutdowns();
  {
    FakeNvmlConfig config(kH100);
    auto nvml = OpenFake();
    EXPECT_EQ(inits(), inits_before + 1);
    EXPECT_EQ(shutdowns(), shutdowns_before);
  }
  EXPECT_EQ(shutdowns(), shutdowns_before + 1);
  dlclose(lib);
}

TEST(NvmlProbeTest, LibraryPathComesFromTheEnvironmentWhenSet) {
  unsetenv("BENCHFLEET_NVML_LIBRARY");
  EXPECT_EQ(NvmlLibraryFromEnvironment(), "libnvidia-ml.so.1");
  setenv("BENCHFLEET_NVML_LIBRARY", "/opt/nvml/libnvidia-ml.so.1", 1);
  EXPECT_EQ(NvmlLibraryFromEnvironment(), "/opt/nvml/libnvidia-ml.so.1");
  unsetenv("BENCHFLEET_NVML_LIBRARY");
}

TEST(GpuThrottleReasonNamesTest, NamesKnownBitsAndShowsUnknownOnesInHex) {
  EXPECT_THAT(GpuThrottleReasonNames(0), IsEmpty());
  EXPECT_THAT(
      GpuThrottleReasonNames(gpu_throttle::kGpuIdle |
                             gpu_throttle::kHwPowerBrakeSlowdown | 0x400),
      ElementsAre("gpu_idle", "hw_power_brake_slowdown", "0x400"));
}

}  // namespace
}  // namespace benchfleet
