// Source bundles (common/bundle/bundle.h): packing is deterministic and picks
// the right files (git work trees, plain directories, explicit lists), the
// size cap is enforced with a useful message, and unpacking refuses hostile
// bundles (absolute and ".." paths, escaping symlinks, devices, duplicates,
// truncation, a wrong digest) leaving nothing behind.
#include "common/bundle/bundle.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;
using ::benchfleet::testing::ReadFile;
using ::benchfleet::testing::TempDir;
using ::benchfleet::testing::WriteFile;

void MakeTree(const std::string& dir) {
  fs::create_directories(dir + "/src/deep");
  WriteFile(dir + "/README", "hello\n");
  WriteFile(dir + "/src/main.c", "int main(void) { return 0; }\n");
  WriteFile(dir + "/src/deep/data.bin", std::string(300000, 'x'));
  WriteFile(dir + "/run.sh", "#!/bin/sh\necho hi\n");
  ::chmod((dir + "/run.sh").c_str(), 0755);
  fs::create_symlink("src/main.c", dir + "/main-link.c");
}

// A hand-made bundle, to say exactly what a hostile one holds.
class RawBundle {
 public:
  RawBundle() { out_ = std::string("BFBUNDLE") + U32(1); }
  RawBundle& Entry(char kind, const std::string& path,
                   const std::string& data) {
    out_ += kind;
    out_ += U32(static_cast<uint32_t>(path.size()));
    out_ += path;
    out_ += U64(data.size());
    out_ += data;
    ++count_;
    return *this;
  }
  std::string Finish() const { return out_ + "E" + U64(count_); }

 private:
  static std::string U32(uint32_t v) {
    std::string s;
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
    return s;
  }
  static std::string U64(uint64_t v) {
    std::string s;
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
    return s;
  }
  std::string out_;
  uint64_t count_ = 0;
};

class BundleTest : public ::testing::Test {
 protected:
  // Unpacks `bytes` into a fresh directory; the status, and checks that a
  // refused bundle left nothing beside the destination.
  absl::Status UnpackBytes(const std::string& bytes) {
    WriteFile(tmp_ / "raw.bfb", bytes);
    const std::string dest = tmp_ / "out";
    absl::StatusOr<BundleInfo> info = UnpackBundle(tmp_ / "raw.bfb", dest, {});
    if (!info.ok()) {
      for (const auto& e : fs::directory_iterator(tmp_.path())) {
        EXPECT_EQ(e.path().filename(), "raw.bfb")
            << "a refused bundle left " << e.path();
      }
    }
    return info.status();
  }
  TempDir tmp_;
};

TEST_F(BundleTest, SameTreeGivesSameDigestAndRoundTrips) {
  const std::string a = tmp_ / "a";
  const std::string b = tmp_ / "b";
  MakeTree(a);
  MakeTree(b);
  // Different times and an unrelated permission bit change nothing.
  ::chmod((b + "/README").c_str(), 0600);
  struct timespec times[2] = {{1000, 0}, {1000, 0}};
  ::utimensat(AT_FDCWD, (b + "/src/main.c").c_str(), times, 0);
  absl::StatusOr<BundleInfo> pa = PackDirectory(a, tmp_ / "a.bfb", {});
  absl::StatusOr<BundleInfo> pb = PackDirectory(b, tmp_ / "b.bfb", {});
  ASSERT_TRUE(pa.ok()) << pa.status();
  ASSERT_TRUE(pb.ok()) << pb.status();
  EXPECT_EQ(pa->digest, pb->digest);
  EXPECT_EQ(pa->files, 5);
  EXPECT_EQ(pa->size_bytes,
            static_cast<int64_t>(fs::file_size(tmp_ / "a.bfb")));
  EXPECT_EQ(*Sha256OfFile(tmp_ / "a.bfb"), pa->digest);

  UnpackOptions uo;
  uo.expected_digest = pa->digest;
  absl::StatusOr<BundleInfo> un = UnpackBundle(tmp_ / "a.bfb", tmp_ / "x", uo);
  ASSERT_TRUE(un.ok()) << un.status();
  EXPECT_EQ(un->digest, pa->digest);
  EXPECT_EQ(ReadFile(tmp_ / "x/src/deep/data.bin"), std::string(300000, 'x'));
  EXPECT_EQ(ReadFile(tmp_ / "x/README"), "hello\n");
  EXPECT_EQ(fs::read_symlink(tmp_ / "x/main-link.c"), "src/main.c");
  EXPECT_TRUE((fs::status(tmp_ / "x/run.sh").permissions() &
               fs::perms::owner_exec) != fs::perms::none);
  EXPECT_TRUE((fs::status(tmp_ / "x/README").permissions() &
               fs::perms::owner_exec) == fs::perms::none);

  // One changed byte changes the digest.
  WriteFile(b + "/README", "hellO\n");
  absl::StatusOr<BundleInfo> pc = PackDirectory(b, tmp_ / "c.bfb", {});
  ASSERT_TRUE(pc.ok());
  EXPECT_NE(pc->digest, pa->digest);
}

TEST_F(BundleTest, GitWorkTreePacksTrackedAndUntrackedButNotIgnored) {
  if (std::system("git --version >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no git on this host";
  const std::string repo = tmp_ / "repo";
  MakeTree(repo);
  WriteFile(repo + "/.gitignore", "build/\n*.o\n");
  fs::create_directories(repo + "/build");
  WriteFile(repo + "/build/big.out", "ignored");
  WriteFile(repo + "/x.o", "ignored");
  ASSERT_EQ(std::system(("cd " + repo +
                         " && git init -q && git add README src .gitignore && "
                         "git -c user.email=t@t -c user.name=t commit -qm init")
                            .c_str()),
            0);
  WriteFile(repo + "/untracked.txt", "new");
  fs::remove(repo + "/src/deep/data.bin");  // tracked, deleted: not packed
  absl::StatusOr<std::vector<std::string>> files = ListBundleFiles(repo, {});
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(*files, (std::vector<std::string>{".gitignore", "README",
                                              "main-link.c", "run.sh",
                                              "src/main.c", "untracked.txt"}));
  // A subdirectory of a work tree packs only what is under it.
  files = ListBundleFiles(repo + "/src", {});
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(*files, std::vector<std::string>{"main.c"});
}

TEST_F(BundleTest, ExplicitFileListPacksOnlyThoseAndRefusesEscapes) {
  const std::string dir = tmp_ / "d";
  MakeTree(dir);
  PackOptions po;
  po.files = {"README", "src/deep"};
  absl::StatusOr<std::vector<std::string>> files = ListBundleFiles(dir, po);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(*files, (std::vector<std::string>{"README", "src/deep/data.bin"}));
  po.files = {"../etc/passwd"};
  files = ListBundleFiles(dir, po);
  EXPECT_FALSE(files.ok());
  EXPECT_NE(files.status().message().find("../etc/passwd"), std::string::npos)
      << files.status();
  po.files = {"missing.txt"};
  EXPECT_TRUE(absl::IsNotFound(ListBundleFiles(dir, po).status()));
}

TEST_F(BundleTest, OversizedTreeIsRefusedNamingSizeCapAndTheWayOut) {
  const std::string dir = tmp_ / "d";
  MakeTree(dir);
  PackOptions po;
  po.max_bytes = 100000;
  absl::StatusOr<BundleInfo> p = PackDirectory(dir, tmp_ / "o.bfb", po);
  ASSERT_TRUE(absl::IsFailedPrecondition(p.status())) << p.status();
  const std::string msg(p.status().message());
  EXPECT_NE(msg.find(dir), std::string::npos) << msg;
  EXPECT_NE(msg.find("293.2 KiB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cap of 97.7 KiB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--bundle-max-size"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(tmp_ / "o.bfb"));
}

TEST_F(BundleTest, SymlinkOutOfTheTreeIsNotPacked) {
  const std::string dir = tmp_ / "d";
  MakeTree(dir);
  fs::create_symlink("/etc/passwd", dir + "/abs");
  absl::StatusOr<BundleInfo> p = PackDirectory(dir, tmp_ / "o.bfb", {});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("abs"), std::string::npos);
  fs::remove(dir + "/abs");
  fs::create_symlink("../../outside", dir + "/src/up");
  EXPECT_FALSE(PackDirectory(dir, tmp_ / "o.bfb", {}).ok());
}

TEST_F(BundleTest, UnpackRefusesHostileBundles) {
  struct Case {
    const char* name;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"absolute path", RawBundle().Entry('F', "/tmp/evil", "x").Finish()},
      {"dot-dot path", RawBundle().Entry('F', "../evil", "x").Finish()},
      {"inner dot-dot", RawBundle().Entry('F', "a/../../evil", "x").Finish()},
      {"empty component", RawBundle().Entry('F', "a//b", "x").Finish()},
      {"device", RawBundle().Entry('D', "dev", "").Finish()},
      {"duplicate",
       RawBundle().Entry('F', "a", "1").Entry('F', "a", "2").Finish()},
      {"unsorted",
       RawBundle().Entry('F', "b", "1").Entry('F', "a", "2").Finish()},
      {"absolute symlink", RawBundle().Entry('L', "l", "/etc/passwd").Finish()},
      {"escaping symlink",
       RawBundle().Entry('L', "d/l", "../../etc/passwd").Finish()},
      // x -> y/.. looks like "." but y -> ../.. would make it the parent.
      {"symlink through symlink", RawBundle()
                                      .Entry('L', "a/b/x", "y/../..")
                                      .Entry('L', "a/b/y", "../..")
                                      .Finish()},
      {"file under symlink",
       RawBundle().Entry('L', "l", "d").Entry('F', "l/x", "1").Finish()},
      {"file under file",
       RawBundle().Entry('F', "f", "1").Entry('F', "f/x", "2").Finish()},
      {"bad magic", std::string("NOTABUNDLE_AT_ALL")},
      {"truncated",
       RawBundle().Entry('F', "a", "12345").Finish().substr(0, 30)},
      {"size past end",
       RawBundle().Entry('F', "a", "1").Finish().substr(0, 25) +
           std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8)},
      {"trailing bytes", RawBundle().Entry('F', "a", "1").Finish() + "junk"},
      {"wrong count",
       RawBundle()
               .Entry('F', "a", "1")
               .Finish()
               .substr(0,
                       RawBundle().Entry('F', "a", "1").Finish().size() - 8) +
           std::string("\x02\0\0\0\0\0\0\0", 8)},
  };
  const std::map<std::string, std::string> kWhy = {
      {"absolute path", "absolute path"},
      {"dot-dot path", "'..' component"},
      {"inner dot-dot", "'..' component"},
      {"empty component", "empty"},
      {"device", "no devices"},
      {"duplicate", "sorted and unique"},
      {"unsorted", "sorted and unique"},
      {"absolute symlink", "absolute path '/etc/passwd'"},
      {"escaping symlink", "leaves the bundle's directory"},
      {"symlink through symlink", "through the symlink 'a/b/y'"},
      {"file under symlink", "lies under 'l'"},
      {"file under file", "lies under 'f'"},
      {"bad magic", "not a benchfleet bundle"},
      {"truncated", "more than the bundle has left"},
      {"size past end", "more than the bundle has left"},
      {"trailing bytes", "after its trailer"},
      {"wrong count", "trailer counts 2"},
  };
  for (const Case& c : cases) {
    absl::Status s = UnpackBytes(c.bytes);
    EXPECT_FALSE(s.ok()) << c.name;
    // Refused for the reason the case is about, not another.
    EXPECT_NE(s.message().find(kWhy.at(c.name)), absl::string_view::npos)
        << c.name << ": " << s;
    EXPECT_FALSE(fs::exists(tmp_ / "out")) << c.name;
    EXPECT_FALSE(fs::exists("/tmp/evil")) << c.name;
  }
  // A well-formed one passes through the same helper.
  EXPECT_TRUE(UnpackBytes(RawBundle()
                              .Entry('F', "a/b", "1")
                              .Entry('L', "a/c", "b")
                              .Entry('L', "a/d", "../a/c")
                              .Finish())
                  .ok());
}

TEST_F(BundleTest, WrongDigestLeavesNothingAndSaysSo) {
  const std::string dir = tmp_ / "d";
  MakeTree(dir);
  ASSERT_TRUE(PackDirectory(dir, tmp_ / "o.bfb", {}).ok());
  UnpackOptions uo;
  uo.expected_digest = std::string(64, 'a');
  absl::StatusOr<BundleInfo> u = UnpackBundle(tmp_ / "o.bfb", tmp_ / "x", uo);
  ASSERT_TRUE(absl::IsDataLoss(u.status())) << u.status();
  EXPECT_NE(u.status().message().find("tampered"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp_ / "x"));
  // An existing destination is never written into.
  fs::create_directories(tmp_ / "y");
  EXPECT_TRUE(absl::IsAlreadyExists(
      UnpackBundle(tmp_ / "o.bfb", tmp_ / "y", {}).status()));
  // Nor is a bundle over the reader's cap.
  uo.expected_digest.clear();
  uo.max_bytes = 1000;
  EXPECT_TRUE(absl::IsFailedPrecondition(
      UnpackBundle(tmp_ / "o.bfb", tmp_ / "z", uo).status()));
}

TEST(BundleDigestTest, OnlyLowercaseHexOfSixtyFourIsADigest) {
  EXPECT_TRUE(IsValidBundleDigest(std::string(64, 'f')));
  EXPECT_FALSE(IsValidBundleDigest(std::string(64, 'F')));
  EXPECT_FALSE(IsValidBundleDigest(std::string(63, 'a')));
  EXPECT_FALSE(IsValidBundleDigest("../../etc/passwd"));
  EXPECT_FALSE(CheckBundleDigest("xyz").ok());
}

}  // namespace
}  // namespace benchfleet
