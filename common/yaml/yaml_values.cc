#include "common/yaml/yaml_values.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "yaml-cpp/binary.h"

namespace benchfleet {
namespace yaml {

std::string Escape(absl::string_view text) {
  std::string out;
  size_t shown = std::min(text.size(), kMaxQuotedLength);
  for (size_t i = 0; i < shown; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (shown < text.size()) out += "...";
  return out;
}

std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", Escape(text), "\"");
}

std::string QuoteChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u < 0x20 || u >= 0x7f)
    return absl::StrCat("byte 0x", absl::Hex(u, absl::kZeroPad2));
  return absl::StrCat("'", std::string(1, c), "'");
}

bool IsDecimalNumber(absl::string_view text) {
  size_t i = 0;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
  size_t digits = 0;
  while (i < text.size() && absl::ascii_isdigit(text[i])) ++i, ++digits;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && absl::ascii_isdigit(text[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    size_t exponent_digits = 0;
    while (i < text.size() && absl::ascii_isdigit(text[i])) {
      ++i, ++exponent_digits;
    }
    if (exponent_digits == 0) return false;
  }
  return i == text.size();
}

std::optional<double> ToDouble(absl::string_view text) {
  double value = 0;
  if (!IsDecimalNumber(text) || !absl::SimpleAtod(text, &value) ||
      !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<int64_t> ToWholeNumber(absl::string_view text) {
  int64_t value = 0;
  if (!IsDecimalNumber(text) ||
      text.find_first_of(".eE") != absl::string_view::npos ||
      !absl::SimpleAtoi(text, &value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ToBool(absl::string_view text) {
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  return std::nullopt;
}

std::optional<int64_t> ToInt64(absl::string_view text) {
  int64_t out = 0;
  if (!absl::SimpleAtoi(text, &out)) return std::nullopt;
  return out;
}

std::optional<uint64_t> ToUint64(absl::string_view text) {
  uint64_t out = 0;
  if (!absl::SimpleAtoi(text, &out)) return std::nullopt;
  return out;
}

std::optional<double> ToYamlFloat(std::string_view text) {
  if (text == ".nan" || text == ".NaN" || text == ".NAN") return std::nan("");
  if (text == ".inf" || text == "+.inf") return HUGE_VAL;
  if (text == "-.inf") return -HUGE_VAL;
  double out = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return out;
}

std::optional<absl::Time> ToRfc3339Time(absl::string_view text) {
  absl::Time out;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &out, &error)) {
    return std::nullopt;
  }
  return out;
}

std::string EncodeBase64(std::string_view bytes) {
  return YAML::EncodeBase64(
      reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

std::string DecodeBase64(std::string_view text) {
  const std::vector<unsigned char> bytes =
      YAML::DecodeBase64(std::string(text));
  return std::string(bytes.begin(), bytes.end());
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

absl::string_view Suggest(absl::string_view key,
                          std::span<const absl::string_view> candidates) {
  std::string lower = absl::AsciiStrToLower(key);
  absl::string_view best;
  size_t best_distance = 3;  // suggest only within two edits
  for (absl::string_view candidate : candidates) {
    size_t d = EditDistance(lower, absl::AsciiStrToLower(candidate));
    if (d < best_distance && d < candidate.size()) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace yaml

absl::StatusOr<absl::Duration> ParseDuration(std::string_view std_text) {
  absl::string_view text(std_text.data(), std_text.size());
  auto not_a_duration = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        yaml::Quote(text), " is not a duration; expected ", kDurationExpected));
  };
  if (text.empty()) return not_a_duration();
  if (text.front() == '-') {
    return absl::InvalidArgumentError(absl::StrCat(
        yaml::Quote(text),
        " is negative; expected a duration of zero or more, e.g. 60s"));
  }
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() &&
           (absl::ascii_isdigit(text[i]) || text[i] == '.')) {
      ++i;
    }
    absl::string_view number = text.substr(start, i - start);
    std::optional<double> value;
    // Nine integer digits are far beyond any sensible duration and safe from
    // overflow.
    if (number.find('e') == absl::string_view::npos &&
        number.substr(0, number.find('.')).size() <= 9) {
      value = yaml::ToDouble(number);
    }
    if (!value) return not_a_duration();
    if (i == text.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          yaml::Quote(text), " has no unit; expected ", kDurationExpected));
    }
    absl::string_view rest = text.substr(i);
    if (absl::StartsWith(rest, "ms")) {
      total += absl::Milliseconds(*value);
      i += 2;
    } else if (absl::StartsWith(rest, "s")) {
      total += absl::Seconds(*value);
      i += 1;
    } else if (absl::StartsWith(rest, "m")) {
      total += absl::Minutes(*value);
      i += 1;
    } else if (absl::StartsWith(rest, "h")) {
      total += absl::Hours(*value);
      i += 1;
    } else {
      return not_a_duration();
    }
  }
  return total;
}

absl::StatusOr<double> ParsePercent(std::string_view std_text) {
  absl::string_view text(std_text.data(), std_text.size());
  bool percent = !text.empty() && text.back() == '%';
  absl::string_view number = percent ? text.substr(0, text.size() - 1) : text;
  std::optional<double> value = yaml::ToDouble(number);
  if (!value) {
    return absl::InvalidArgumentError(
        absl::StrCat(yaml::Quote(text), " is not a percentage; expected ",
                     kPercentExpected));
  }
  if (*value < 0 || std::signbit(*value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(yaml::Quote(text),
                     " is negative; expected a percentage of 0% or more, e.g. "
                     "10%"));
  }
  return percent ? *value / 100 : *value;
}

}  // namespace benchfleet
