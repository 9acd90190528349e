// libFuzzer target: the history-file reader (controller/history/history_file.h
// ParseHistoryFile) on arbitrary text, as the controller reads the file_text of
// an ImportHistoryRequest. Properties: it fails only with InvalidArgument, and
// what it accepts survives the writer: writing the entries and reading them
// back succeeds and writes the same bytes again (the file's promise of exact,
// deterministic round trips).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "controller/history/history_file.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<benchfleet::HistoryEntry>> entries =
      benchfleet::ParseHistoryFile(text, "fuzz.history.yaml");
  if (!entries.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(entries.status()));
    return 0;
  }
  const std::string written = benchfleet::WriteHistoryFile(*entries);
  absl::StatusOr<std::vector<benchfleet::HistoryEntry>> again =
      benchfleet::ParseHistoryFile(written, "rewritten.history.yaml");
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->size() == entries->size());
  FUZZ_CHECK(benchfleet::WriteHistoryFile(*again) == written);
  return 0;
}
