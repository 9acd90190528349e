// Text-to-value conversions shared by every YAML reader in benchfleet (the
// spec loader, the --config files, the history file) and by flags that take
// the same notations: strict decimal numbers, whole numbers, booleans,
// durations ("500ms", "1h30m"), percentages ("10%"), YAML floats (".nan"),
// RFC 3339 times, base64 for !!binary, quoting user text for messages, and
// the edit distance behind "did you mean ...?" suggestions. No yaml-cpp type
// appears here; nothing here reads YAML syntax.
//
// All functions are pure and thread-safe.
#ifndef BENCHFLEET_COMMON_YAML_YAML_VALUES_H_
#define BENCHFLEET_COMMON_YAML_YAML_VALUES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace benchfleet {

// What ParseDuration and ParsePercent say they expect.
inline constexpr absl::string_view kDurationExpected =
    "a number with a unit (ms, s, m, h), e.g. 500ms, 60s, 15m or 1h30m";
inline constexpr absl::string_view kPercentExpected =
    "a number followed by %, e.g. 10%, or a fraction such as 0.1";

// Parses a non-negative duration written as one or more <number><unit> parts,
// units ms, s, m, h: "500ms", "60s", "1.5s", "15m", "1h", "1h30m". Fails with
// InvalidArgument ("what is wrong; what is expected", no location) for a
// missing unit, a negative value or anything else.
absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);

// Parses a percentage into a fraction: "10%" -> 0.10, "2.5%" -> 0.025; a plain
// number is taken as a fraction already ("0.1" -> 0.1). Fails with
// InvalidArgument for negative, non-finite or non-numeric text.
absl::StatusOr<double> ParsePercent(std::string_view text);

namespace yaml {

// Longest user text quoted in a message; longer text ends in "...".
inline constexpr size_t kMaxQuotedLength = 60;

// User text for a message: control characters escaped as \xNN, text longer
// than kMaxQuotedLength shortened with "...".
std::string Escape(absl::string_view text);
// Escape(text) in double quotes.
std::string Quote(absl::string_view text);
// 'c' for a printable character, "byte 0xNN" otherwise.
std::string QuoteChar(char c);

// Strict decimal number: [-+]digits[.digits][e[+-]digits]; no "inf", "nan",
// hex or surrounding spaces.
bool IsDecimalNumber(absl::string_view text);
// The finite value of a strict decimal number, nullopt otherwise.
std::optional<double> ToDouble(absl::string_view text);
// A whole number written in decimal without '.' or exponent, within int64.
std::optional<int64_t> ToWholeNumber(absl::string_view text);
// true/True/TRUE and false/False/FALSE; nullopt for anything else.
std::optional<bool> ToBool(absl::string_view text);

// Lenient integers as absl::SimpleAtoi reads them (surrounding spaces, a '+').
std::optional<int64_t> ToInt64(absl::string_view text);
std::optional<uint64_t> ToUint64(absl::string_view text);
// A YAML float as the history writer emits it: the shortest decimal form, or
// .nan/.NaN/.NAN, .inf/+.inf, -.inf. nullopt for anything else.
std::optional<double> ToYamlFloat(std::string_view text);
// An RFC 3339 time ("2026-03-01T12:00:00.000000Z"); nullopt otherwise.
std::optional<absl::Time> ToRfc3339Time(absl::string_view text);

// Base64 as YAML's !!binary uses it. DecodeBase64 returns an empty string for
// invalid input (callers tell that apart from empty input).
std::string EncodeBase64(std::string_view bytes);
std::string DecodeBase64(std::string_view text);

// Levenshtein distance (insert, delete, substitute one byte).
size_t EditDistance(absl::string_view a, absl::string_view b);
// The candidate closest to `key` ignoring ASCII case, within two edits and
// closer than the candidate's own length; "" when none is that close.
absl::string_view Suggest(absl::string_view key,
                          std::span<const absl::string_view> candidates);

}  // namespace yaml
}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_YAML_YAML_VALUES_H_
