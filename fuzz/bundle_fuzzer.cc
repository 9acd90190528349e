// Fuzzes the bundle unpacker (common/bundle/bundle.h) with arbitrary bytes: an
// unpack either fails and leaves nothing, or succeeds with the bundle's own
// SHA-256 and writes only inside its destination; nothing ever appears beside
// the destination (an escape through "..", an absolute path or a symlink
// would). Runs in a private temporary directory.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/bundle/bundle.h"
#include "fuzz/fuzz_check.h"

namespace {

namespace fs = std::filesystem;

const std::string& Jail() {
  static const std::string dir = [] {
    std::string tmpl =
        (fs::temp_directory_path() / "bf-bundle-fuzz-XXXXXX").string();
    FUZZ_CHECK(mkdtemp(tmpl.data()) != nullptr);
    return tmpl;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string jail = Jail();
  const std::string in = jail + "/in.bfb";
  const std::string out = jail + "/out";
  {
    std::ofstream f(in, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data),
            static_cast<std::streamsize>(size));
  }
  benchfleet::UnpackOptions options;
  options.max_bytes = 1 << 20;
  absl::StatusOr<benchfleet::BundleInfo> info =
      benchfleet::UnpackBundle(in, out, options);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(jail, ec)) {
    const std::string name = e.path().filename().string();
    FUZZ_CHECK(name == "in.bfb" || (info.ok() && name == "out"));
  }
  if (info.ok()) {
    absl::StatusOr<std::string> digest = benchfleet::Sha256OfFile(in);
    FUZZ_CHECK(digest.ok() && *digest == info->digest);
    FUZZ_CHECK(info->size_bytes == static_cast<int64_t>(size));
    // Every symlink it made resolves inside `out` (or nowhere yet).
    const fs::path root = fs::canonical(out, ec);
    for (const auto& e : fs::recursive_directory_iterator(out, ec)) {
      if (!e.is_symlink(ec)) continue;
      const fs::path to = fs::weakly_canonical(e.path(), ec);
      if (ec) continue;
      const std::string rel = to.lexically_relative(root).string();
      FUZZ_CHECK(!rel.empty() && rel.rfind("..", 0) != 0);
    }
    fs::remove_all(out, ec);
  }
  return 0;
}
