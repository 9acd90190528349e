// RedactUrl. The state names are in common/model/state_names.cc; OpenStore,
// which picks an implementation, is in open_store.cc so that this library does
// not depend on the implementations.
#include "controller/store/store.h"

#include <algorithm>
#include <string>
#include <string_view>

namespace benchfleet {

std::string RedactUrl(std::string_view text) {
  std::string out(text);
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const size_t start = scheme + 3;
    const size_t end = std::min(out.find_first_of("/?", start), out.size());
    const size_t at = out.rfind('@', end);
    if (at != std::string::npos && at >= start) {
      const size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) {
        out.replace(colon + 1, at - colon - 1, "***");
      }
    }
  }
  constexpr std::string_view kKey = "password=";
  for (size_t pos = out.find(kKey); pos != std::string::npos;
       pos = out.find(kKey, pos + 1)) {
    const size_t value = pos + kKey.size();
    size_t end = value;
    if (end < out.size() && out[end] == '\'') {  // key='quoted value'
      for (++end; end < out.size() && out[end] != '\''; ++end) {
        if (out[end] == '\\') ++end;
      }
      end = std::min(end + 1, out.size());
    } else {
      end = std::min(out.find_first_of("& \t\n", value), out.size());
    }
    out.replace(value, end - value, "***");
  }
  return out;
}

}  // namespace benchfleet
