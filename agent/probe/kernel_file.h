// Helpers of the probes for reading /proc and /sys files cheaply: KernelFile
// keeps a file open and re-reads it from offset 0 with pread (procfs and sysfs
// regenerate the content on every read from offset 0), and small
// allocation-free parsers. Internal to agent/probe/.
//
// Thread-safety: a KernelFile may be read from several threads at once (pread
// has no shared offset) as long as each uses its own buffer; the parsers are
// pure.
#ifndef BENCHFLEET_AGENT_PROBE_KERNEL_FILE_H_
#define BENCHFLEET_AGENT_PROBE_KERNEL_FILE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace benchfleet::probe_internal {

// A growable read buffer, reused across reads so steady-state sampling does not
// allocate.
class ReadBuffer {
 public:
  std::string_view view() const { return {data_.data(), size_}; }

 private:
  friend class KernelFile;
  std::vector<char> data_;
  size_t size_ = 0;
};

class KernelFile {
 public:
  KernelFile() = default;
  // Opens `path` read-only (O_CLOEXEC); invalid() when it does not exist or
  // cannot be read.
  static KernelFile Open(const std::string& path);
  // Opens `name` relative to the directory `dir_fd`.
  static KernelFile OpenAt(int dir_fd, const char* name);
  ~KernelFile();
  KernelFile(KernelFile&& other) noexcept;
  KernelFile& operator=(KernelFile&& other) noexcept;
  KernelFile(const KernelFile&) = delete;
  KernelFile& operator=(const KernelFile&) = delete;

  bool valid() const { return fd_ >= 0; }
  // Reads the whole file into `buf`. False on a read error (a CPU gone offline,
  // a process that exited, a sensor that failed) or when not valid.
  bool ReadAll(ReadBuffer* buf) const;
  // Reads at most `cap` bytes into `out`; the content with trailing whitespace
  // removed, or nullopt on error. For the one-value sysfs attributes.
  std::optional<std::string_view> ReadSmall(char* out, size_t cap) const;
  // Convenience for discovery-time reads of one-value files (allocates).
  std::optional<int64_t> ReadInt() const;

 private:
  explicit KernelFile(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Whole content of a small file read once (discovery, host facts); "" when
// missing.
std::string ReadFileOnce(const std::string& path);
// First line of a file with surrounding whitespace removed; "" when missing.
std::string ReadFirstLine(const std::string& path);

std::string_view Trim(std::string_view s);
// Parses a decimal integer (surrounding whitespace allowed); nullopt when not
// one.
std::optional<int64_t> ParseInt(std::string_view s);
std::optional<double> ParseDouble(std::string_view s);
// Splits off the next whitespace-separated token of `*s` (empty when none is
// left).
std::string_view NextToken(std::string_view* s);
// Splits off the next line of `*s` (without the '\n').
std::string_view NextLine(std::string_view* s);

// Names in a directory (without "." and ".."), sorted; empty when it does not
// exist.
std::vector<std::string> ListDir(const std::string& path);
// Whether `name` is "prefix" followed by a non-empty run of digits; sets
// *number.
bool NumberedName(std::string_view name, std::string_view prefix, int* number);

}  // namespace benchfleet::probe_internal

#endif  // BENCHFLEET_AGENT_PROBE_KERNEL_FILE_H_
