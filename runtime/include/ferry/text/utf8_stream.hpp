// Streaming text as whole UTF-8 characters. A token's piece may end inside a character (a byte-level BPE token or a
// <0xE4> byte token holds one to three bytes of a CJK character or an emoji); printing it as it comes would show
// broken characters, or drop them when the terminal gives up. Utf8Stream holds back an incomplete tail until the next
// pieces complete it, and replaces what can never complete with U+FFFD: one replacement character per maximal
// ill-formed subpart (Unicode's recommended practice, U+FFFD substitution of maximal subparts, as Python's
// `errors="replace"` and the WHATWG decoder do). What it returns is always well-formed UTF-8.
#pragma once

#include <string>
#include <string_view>

namespace ferry {

class Utf8Stream {
 public:
  // Appends `bytes`; returns the characters now complete (possibly none), with ill-formed bytes replaced.
  std::string push(std::string_view bytes);
  // The end of the stream: returns the held-back tail, which can no longer complete, as U+FFFD ("" when none).
  // The stream is then empty and can be used again.
  std::string flush();
  // Bytes held back, waiting for the rest of a character (0 to 3).
  size_t pending() const noexcept { return m_pending.size(); }

 private:
  std::string m_pending;
};

}  // namespace ferry
