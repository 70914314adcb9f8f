#include "ferry/text/utf8_stream.hpp"

#include <cstdint>

namespace ferry {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The well-formed UTF-8 byte sequences (The Unicode Standard, table 3-7): a lead byte fixes the length and the range
// of the second byte; every later byte is 80..BF. `lo`/`hi` bound the second byte; len 0: never a lead byte.
struct Lead {
  uint8_t len, lo, hi;
};

Lead lead_of(unsigned char c) {
  if (c < 0x80) return {1, 0, 0};
  if (c >= 0xC2 && c <= 0xDF) return {2, 0x80, 0xBF};
  if (c == 0xE0) return {3, 0xA0, 0xBF};
  if (c == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (c >= 0xE1 && c <= 0xEF) return {3, 0x80, 0xBF};
  if (c == 0xF0) return {4, 0x90, 0xBF};
  if (c >= 0xF1 && c <= 0xF3) return {4, 0x80, 0xBF};
  if (c == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {0, 0, 0};                       // 80..C1 (continuations, overlong leads) and F5..FF
}

}  // namespace

std::string Utf8Stream::push(std::string_view bytes) {
  m_pending.append(bytes);
  const std::string_view s = m_pending;
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const Lead lead = lead_of(c);
    if (lead.len == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    // How many bytes of the character are here and well formed so far.
    size_t good = 1;
    while (good < lead.len && i + good < s.size()) {
      const auto b = static_cast<unsigned char>(s[i + good]);
      const bool ok = good == 1 ? (b >= lead.lo && b <= lead.hi) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
      ++good;
    }
    if (good == lead.len) {
      out.append(s.substr(i, good));
      i += good;
    } else if (i + good == s.size()) {
      break;  // a well-formed start that the next piece may complete: hold it back
    } else {
      out += kReplacement;  // the maximal subpart s[i, i + good) can never complete; the next byte starts afresh
      i += good;
    }
  }
  m_pending.erase(0, i);
  return out;
}

std::string Utf8Stream::flush() {
  // Whatever is held back is one well-formed but incomplete start: one maximal subpart.
  const bool any = !m_pending.empty();
  m_pending.clear();
  return any ? std::string(kReplacement) : std::string();
}

}  // namespace ferry
