#include "common/fingerprint.h"

#include <functional>
#include <string>

#include "gtest/gtest.h"

namespace benchfleet {
namespace {

HostEnvironment Sample() {
  HostEnvironment e;
  e.hostname = "bench-01";
  e.cpu_model = "AMD Ryzen 9 7950X 16-Core Processor";
  e.cpu_cores = 32;
  e.memory_bytes = int64_t{64} * 1024 * 1024 * 1024 - 300 * 1024 * 1024;
  e.os = "Debian GNU/Linux 12 (bookworm)";
  e.kernel = "6.1.0-18-amd64";
  e.gpus = {{"NVIDIA GeForce RTX 3090", "GPU-aaaa", int64_t{24} << 30},
            {"NVIDIA GeForce RTX 4090", "GPU-bbbb", int64_t{24} << 30}};
  e.governor = "performance";
  e.turbo = "on";
  e.toolchain = {{"cc", "cc (Debian 12.2.0-14) 12.2.0"},
                 {"rustc", "rustc 1.75.0 (82e1608df 2023-12-21)"}};
  e.commit = "0123456789abcdef0123456789abcdef01234567";
  e.dirty = false;
  return e;
}

TEST(FingerprintTest, IsSixteenLowercaseHexDigits) {
  const std::string fp = HostFingerprint(Sample());
  ASSERT_EQ(fp.size(), 16u);
  for (char c : fp)
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << fp;
}

TEST(FingerprintTest, IsStableForEqualInput) {
  EXPECT_EQ(HostFingerprint(Sample()), HostFingerprint(Sample()));
  // A known value: the serialisation is a format other hosts and releases
  // must reproduce, so an accidental change has to show up here.
  HostEnvironment empty;
  EXPECT_EQ(
      FingerprintCanonicalText(empty),
      R"({"cpu_cores":0,"cpu_model":"","format":"benchfleet-host-fingerprint-v1","governor":"","gpus":[],"kernel":"","memory_gib":0,"os":"","toolchain":{},"turbo":""})");
}

TEST(FingerprintTest, ChangesWithEachComparablePart) {
  const std::string base = HostFingerprint(Sample());
  const std::vector<
      std::pair<std::string, std::function<void(HostEnvironment&)>>>
      changes = {
          {"cpu_model", [](HostEnvironment& e) { e.cpu_model += " v2"; }},
          {"cpu_cores", [](HostEnvironment& e) { e.cpu_cores = 16; }},
          {"memory", [](HostEnvironment& e) { e.memory_bytes *= 2; }},
          {"gpu name",
           [](HostEnvironment& e) { e.gpus[0].name = "NVIDIA A100"; }},
          {"gpu memory",
           [](HostEnvironment& e) {
             e.gpus[1].memory_total_bytes = int64_t{48} << 30;
           }},
          {"gpu count", [](HostEnvironment& e) { e.gpus.pop_back(); }},
          {"os", [](HostEnvironment& e) { e.os = "Ubuntu 24.04 LTS"; }},
          {"kernel", [](HostEnvironment& e) { e.kernel = "6.8.0-31-generic"; }},
          {"governor", [](HostEnvironment& e) { e.governor = "powersave"; }},
          {"turbo", [](HostEnvironment& e) { e.turbo = "off"; }},
          {"toolchain version",
           [](HostEnvironment& e) { e.toolchain["rustc"] = "rustc 1.76.0"; }},
          {"toolchain added",
           [](HostEnvironment& e) {
             e.toolchain["go"] = "go version go1.22.0";
           }},
          {"toolchain removed",
           [](HostEnvironment& e) { e.toolchain.erase("cc"); }},
      };
  for (const auto& [what, change] : changes) {
    HostEnvironment e = Sample();
    change(e);
    EXPECT_NE(HostFingerprint(e), base)
        << what << " did not change the fingerprint";
  }
}

TEST(FingerprintTest, IgnoresIdentityAndWhatRan) {
  const std::string base = HostFingerprint(Sample());
  HostEnvironment e = Sample();
  e.hostname = "bench-02";
  EXPECT_EQ(HostFingerprint(e), base) << "hostname";
  e.gpus[0].uuid = "GPU-cccc";
  e.gpus[1].uuid = "";
  EXPECT_EQ(HostFingerprint(e), base) << "GPU UUIDs";
  e.commit = "ffffffffffffffffffffffffffffffffffffffff";
  e.dirty = true;
  EXPECT_EQ(HostFingerprint(e), base) << "source commit";
  // Memory within the same GiB (kernel and firmware reservations differ).
  e.memory_bytes += 100 * 1024 * 1024;
  EXPECT_EQ(HostFingerprint(e), base) << "memory within a GiB";
}

TEST(FingerprintTest, DoesNotDependOnOrder) {
  HostEnvironment a = Sample();
  HostEnvironment b = Sample();
  std::swap(b.gpus[0], b.gpus[1]);
  EXPECT_EQ(HostFingerprint(a), HostFingerprint(b)) << "GPU order";
  HostEnvironment c = Sample();
  c.toolchain.clear();
  c.toolchain["rustc"] = "rustc 1.75.0 (82e1608df 2023-12-21)";
  c.toolchain["cc"] = "cc (Debian 12.2.0-14) 12.2.0";
  EXPECT_EQ(HostFingerprint(a), HostFingerprint(c))
      << "toolchain insertion order";
}

TEST(FingerprintTest, ValuesCannotBleedIntoEachOther) {
  // A naive concatenation would make these equal.
  HostEnvironment a = Sample(), b = Sample();
  a.os = "Linux 6";
  a.kernel = ".1";
  b.os = "Linux";
  b.kernel = " 6.1";
  EXPECT_NE(HostFingerprint(a), HostFingerprint(b));
  HostEnvironment c = Sample(), d = Sample();
  c.toolchain = {{"a", "b=c"}};
  d.toolchain = {{"a=b", "c"}};
  EXPECT_NE(HostFingerprint(c), HostFingerprint(d));
}

TEST(FingerprintTest, SurvivesOutputThatIsNotUtf8) {
  HostEnvironment e = Sample();
  e.toolchain["odd"] = std::string("version \xff\xfe 1.0");
  const std::string fp = HostFingerprint(e);
  EXPECT_EQ(fp.size(), 16u);
  EXPECT_NE(fp, HostFingerprint(Sample()));
}

}  // namespace
}  // namespace benchfleet
