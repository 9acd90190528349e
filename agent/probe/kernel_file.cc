#include "agent/probe/kernel_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

namespace benchfleet::probe_internal {

KernelFile KernelFile::Open(const std::string& path) {
  return KernelFile(open(path.c_str(), O_RDONLY | O_CLOEXEC));
}

KernelFile KernelFile::OpenAt(int dir_fd, const char* name) {
  return KernelFile(openat(dir_fd, name, O_RDONLY | O_CLOEXEC));
}

KernelFile::~KernelFile() {
  if (fd_ >= 0) close(fd_);
}

KernelFile::KernelFile(KernelFile&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

KernelFile& KernelFile::operator=(KernelFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

bool KernelFile::ReadAll(ReadBuffer* buf) const {
  buf->size_ = 0;
  if (fd_ < 0) return false;
  if (buf->data_.size() < 4096) buf->data_.resize(4096);
  while (true) {
    if (buf->size_ == buf->data_.size())
      buf->data_.resize(buf->data_.size() * 2);
    const ssize_t n =
        pread(fd_, buf->data_.data() + buf->size_,
              buf->data_.size() - buf->size_, static_cast<off_t>(buf->size_));
    if (n < 0) {
      if (errno == EINTR) continue;
      buf->size_ = 0;
      return false;
    }
    if (n == 0) return true;
    buf->size_ += static_cast<size_t>(n);
  }
}

std::optional<std::string_view> KernelFile::ReadSmall(char* out,
                                                      size_t cap) const {
  if (fd_ < 0) return std::nullopt;
  ssize_t n;
  do {
    n = pread(fd_, out, cap, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::nullopt;
  return Trim(std::string_view(out, static_cast<size_t>(n)));
}

std::optional<int64_t> KernelFile::ReadInt() const {
  char buf[64];
  auto text = ReadSmall(buf, sizeof(buf));
  if (!text) return std::nullopt;
  return ParseInt(*text);
}

// POSIX reads rather than iostreams: with a static libstdc++, iostreams pull in
// code that needs a newer glibc than the benchfleet-probe tool should ask of a
// host.
std::string ReadFileOnce(const std::string& path) {
  KernelFile file = KernelFile::Open(path);
  ReadBuffer buf;
  if (!file.ReadAll(&buf)) return "";
  return std::string(buf.view());
}

std::string ReadFirstLine(const std::string& path) {
  std::string text = ReadFileOnce(path);
  std::string_view rest = text;
  return std::string(Trim(NextLine(&rest)));
}

std::string_view Trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  const size_t end = s.find_last_not_of(kSpace);
  return s.substr(begin, end - begin + 1);
}

std::optional<int64_t> ParseInt(std::string_view s) {
  s = Trim(s);
  if (s.empty()) return std::nullopt;
  int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<double> ParseDouble(std::string_view s) {
  s = Trim(s);
  if (s.empty()) return std::nullopt;
  double value = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

std::string_view NextToken(std::string_view* s) {
  size_t i = 0;
  while (i < s->size() && ((*s)[i] == ' ' || (*s)[i] == '\t')) ++i;
  size_t j = i;
  while (j < s->size() && (*s)[j] != ' ' && (*s)[j] != '\t' && (*s)[j] != '\n')
    ++j;
  std::string_view token = s->substr(i, j - i);
  s->remove_prefix(j);
  return token;
}

std::string_view NextLine(std::string_view* s) {
  const size_t nl = s->find('\n');
  std::string_view line = s->substr(0, nl);
  s->remove_prefix(nl == std::string_view::npos ? s->size() : nl + 1);
  return line;
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return names;
  while (dirent* entry = readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

bool NumberedName(std::string_view name, std::string_view prefix, int* number) {
  if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix)
    return false;
  const std::string_view digits = name.substr(prefix.size());
  int value = 0;
  const auto [ptr, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || ptr != digits.data() + digits.size() ||
      digits[0] == '-' || digits[0] == '+') {
    return false;
  }
  *number = value;
  return true;
}

}  // namespace benchfleet::probe_internal
