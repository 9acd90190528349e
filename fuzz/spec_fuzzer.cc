// libFuzzer target: the spec parser (common/spec_loader.h ParseSpec) on
// arbitrary text, as the controller re-validates every submitted spec.
// Properties: it never crashes, and it fails only with InvalidArgument.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/spec_loader.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  benchfleet::SpecLoadOptions options;
  options.base_dir = "/fuzz/work";
  absl::StatusOr<benchfleet::ExperimentSpec> spec =
      benchfleet::ParseSpec(text, "fuzz.yaml", options);
  if (!spec.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(spec.status()));
    FUZZ_CHECK(!spec.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(!spec->workdir.empty() && spec->workdir[0] == '/');
  return 0;
}
