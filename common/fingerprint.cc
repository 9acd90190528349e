#include "common/fingerprint.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "nlohmann/json.hpp"

namespace benchfleet {
namespace {

// Bumped whenever the serialisation below changes, so that old and new
// fingerprints never collide by accident.
constexpr char kFormat[] = "benchfleet-host-fingerprint-v1";

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Hosts report slightly different totals for the same installed memory
// (firmware and kernel reservations), so memory counts in whole GiB.
int64_t RoundToGiB(int64_t bytes) {
  return static_cast<int64_t>(std::llround(static_cast<double>(bytes) / kGiB));
}

}  // namespace

std::string FingerprintCanonicalText(const HostEnvironment& env) {
  // nlohmann::json objects are std::maps: keys come out sorted, so the text
  // depends only on the values.
  std::vector<std::pair<std::string, int64_t>> gpus;
  for (const GpuIdentity& g : env.gpus)
    gpus.emplace_back(g.name, RoundToGiB(g.memory_total_bytes));
  std::sort(gpus.begin(), gpus.end());
  nlohmann::json gpu_list = nlohmann::json::array();
  for (const auto& [name, gib] : gpus)
    gpu_list.push_back({{"name", name}, {"memory_gib", gib}});
  nlohmann::json j = {
      {"format", kFormat},
      {"cpu_model", env.cpu_model},
      {"cpu_cores", env.cpu_cores},
      {"memory_gib", RoundToGiB(env.memory_bytes)},
      {"gpus", gpu_list},
      {"os", env.os},
      {"kernel", env.kernel},
      {"governor", env.governor},
      {"turbo", env.turbo},
      {"toolchain", env.toolchain},
  };
  // Tool output is not guaranteed UTF-8; replace bad bytes instead of failing.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string HostFingerprint(const HostEnvironment& env) {
  const std::string text = FingerprintCanonicalText(env);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr) !=
      1) {
    return "";  // OpenSSL without SHA-256 is a broken installation
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len && hex.size() < 16; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 0xf]);
  }
  return hex;
}

}  // namespace benchfleet
