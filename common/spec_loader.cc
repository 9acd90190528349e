// The spec loader's entry points: reading the file (size-bounded) and handing
// the text to the section readers in common/spec/.
#include "common/spec_loader.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/spec/spec_parser.h"

namespace benchfleet {

namespace fs = std::filesystem;

absl::StatusOr<ExperimentSpec> ParseSpec(std::string_view yaml,
                                         const std::string& display_path,
                                         const SpecLoadOptions& options) {
  if (!fs::path(options.base_dir).is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ParseSpec for ", display_path, ": base_dir \"", options.base_dir, "\"",
        " is not absolute; pass the absolute directory of the spec file"));
  }
  return spec_internal::SpecParser(display_path, options)
      .Parse(absl::string_view(yaml.data(), yaml.size()));
}

absl::StatusOr<ExperimentSpec> LoadSpecFile(const std::string& path,
                                            const SpecLoadOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read spec file \"", path,
        "\": it is a directory; pass the path of the spec's .yaml file"));
  }
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read spec file \"", path, "\": ", std::strerror(errno),
        "; check the path and permissions"));
  }
  // Read one byte past the limit so an oversized file is refused without
  // reading it all.
  std::string text(kMaxSpecBytes + 1, '\0');
  size_t size = std::fread(text.data(), 1, text.size(), file);
  bool failed = std::ferror(file) != 0;
  int read_errno = errno;
  std::fclose(file);
  if (failed) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read spec file \"", path, "\": ", std::strerror(read_errno),
        "; check the path and permissions"));
  }
  text.resize(size);

  SpecLoadOptions resolved = options;
  if (resolved.base_dir.empty()) {
    resolved.base_dir = fs::absolute(fs::path(path), ec).parent_path().string();
  } else {
    resolved.base_dir = fs::absolute(fs::path(resolved.base_dir), ec).string();
  }
  if (ec) {
    return absl::NotFoundError(absl::StrCat(
        "cannot resolve the directory of \"", path, "\": ", ec.message()));
  }
  return spec_internal::SpecParser(path, std::move(resolved)).Parse(text);
}
}  // namespace benchfleet
